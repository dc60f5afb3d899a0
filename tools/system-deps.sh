#!/usr/bin/env bash
# The Debian packages the integration tests drive for real: Prometheus (scrapes the control plane) and Chromium
# with its WebDriver (opens the dashboard). Installed with apt-get when missing; a machine without them and
# without apt-get is an error, never a skip.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "tools/system-deps.sh: apt-get is needed to install ${need[*]}" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
