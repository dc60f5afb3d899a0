#!/usr/bin/env bash
# The one command to run meshactors on this machine: sets up .venv, then `meshactors up` (embedded etcd + local Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/meshactors up "$@"
