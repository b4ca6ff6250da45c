#!/usr/bin/env bash
# bench/setup.sh - what bench/run.sh and bench/compare.py need (idempotent, Debian):
#   wrk, nginx and curl from apt (nginx is not started as a service);
#   bench/.venv: twisted, aiohttp and uvloop for the reference contenders.
# twistgate itself runs from the project's .venv (bash tests/run.sh makes it).
set -euo pipefail
cd "$(dirname "$0")"
need=()
for tool in wrk nginx curl taskset; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [[ ${#need[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk nginx curl util-linux >/dev/null
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check twisted aiohttp uvloop
echo "bench setup ok: bench/.venv for the reference contenders"
