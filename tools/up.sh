#!/usr/bin/env bash
# The one command to run meshactors on this machine: sets up .venv, then `meshactors up` (embedded etcd + local Ray).
# The setup says nothing unless it fails (then its whole output is shown), so the terminal starts with `up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_log="$(mktemp -t meshactors-setup.XXXXXX)"
trap 'rm -f "$setup_log"' EXIT
if ! bash tools/setup.sh >"$setup_log" 2>&1; then
  cat "$setup_log" >&2
  echo "tools/up.sh: setting up .venv failed (output above)" >&2
  exit 1
fi
rm -f "$setup_log"
trap - EXIT
exec .venv/bin/meshactors up "$@"
