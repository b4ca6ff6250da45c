#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then runs pytest.
#   bash tests/run.sh                 the full run: the CPython suite (pytest -q), then the
#                                     PyPy smoke part (tests/pypy.sh)
#   bash tests/run.sh [pytest args...] pytest with these arguments (CPython; TWISTGATE_PYPY=1
#                                     adds the PyPy smoke part)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests drive for real: redis-server (shared
# rate limits), postgresql (shared API keys), chromium (the dashboard),
# openssl (test certificates, s_client), promtool (metrics lint), curl, and
# systemd-analyze (docs/production.md's unit file is verified with it).
# apt runs only when one of them is missing.
need=()
for pair in curl:curl redis-server:redis-server chromium:chromium openssl:openssl promtool:prometheus \
            systemd-analyze:systemd; do
    tool="${pair%%:*}"; package="${pair#*:}"
    command -v "$tool" >/dev/null 2>&1 || need+=("$package")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

VENV="${TWISTGATE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
# The README's development install: editable, a path entry for this tree
# (pyproject.toml says why), so twistd finds twisted/plugins/ here.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
# Regenerate twistd's plugin cache so no run complains about it.
"$VENV/bin/python" -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

# A full run (no arguments) prints one line of dots per 72 tests and also runs
# the PyPy smoke part (tests/pypy.sh); .ci/run is exactly this.
full=""
if [ $# -eq 0 ]; then full=1; set -- -q; fi
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
if [ -n "$full" ] || [ -n "${TWISTGATE_PYPY:-}" ]; then
    bash tests/pypy.sh || status=$?
fi
exit "$status"
