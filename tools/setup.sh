#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv with everything the project needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "meshactors needs Python 3.11 (python3.11 or python3 on PATH)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"

# The Node proxyless-gRPC test client (tests/node: @grpc/grpc-js + @grpc/grpc-js-xds, pinned by its
# package-lock.json) lives outside the Python package. Installed with `npm ci`; skipped only when the installed
# tree is from the same lock file. No npm is an error, never a skip: the proxyless tests need it.
command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 || {
  echo "tools/setup.sh: node and npm (Node.js >= 18) are required for the grpc-js tests in tests/node" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' || {
  echo "tools/setup.sh: Node.js >= 18 is required, found $(node --version)" >&2; exit 1; }
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.meshactors-lock; then
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
  cp tests/node/package-lock.json tests/node/node_modules/.meshactors-lock
fi
