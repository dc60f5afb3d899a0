#!/usr/bin/env bash
# The one test command: sets up .venv, then runs lint, the import-layer contracts, the generated-code check and
# every test (unit first, then integration against a real etcd, a real Ray and a real Envoy). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/system-deps.sh
# The Node proxyless-gRPC test client (tests/node: @grpc/grpc-js + @grpc/grpc-js-xds, pinned by its
# package-lock.json) lives outside the Python package. Installed with `npm ci`; skipped only when the installed
# tree is from the same lock file. No npm is an error, never a skip: the proxyless tests need it.
command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 || {
  echo "tools/test.sh: node and npm (Node.js >= 18) are required for the grpc-js tests in tests/node" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' || {
  echo "tools/test.sh: Node.js >= 18 is required, found $(node --version)" >&2; exit 1; }
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.meshactors-lock; then
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
  cp tests/node/package-lock.json tests/node/node_modules/.meshactors-lock
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/python tools/genproto.py --check
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
