#!/usr/bin/env bash
# The one test command: sets up .venv, then runs lint, the import-layer contracts, the generated-code check and
# every test (unit first, then integration against a real etcd, a real Ray and a real Envoy). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/python tools/genproto.py --check
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
