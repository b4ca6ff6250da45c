#!/usr/bin/env bash
# The suite on PyPy (Debian's pypy3: PyPy 7.3 for Python 3.9), in its own venv.
#   bash tests/pypy.sh            the smoke part: the gateway under twistd, forwarding, JWT,
#                                 rate limits (memory, Redis), the PostgreSQL and SQLite key
#                                 stores, worker processes
#   bash tests/pypy.sh --all      the whole suite
#   bash tests/pypy.sh ARGS...    pytest arguments
# tests/run.sh calls it after a full CPython run.  Without CI set, a PyPy that cannot be
# installed is reported and skipped; with CI set it is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

unavailable() {
    if [ -n "${CI:-}" ]; then echo "pypy: $1" >&2; exit 1; fi
    echo "pypy: skipped: $1" >&2; exit 0
}

if ! command -v pypy3 >/dev/null 2>&1 || ! dpkg -s pypy3-dev >/dev/null 2>&1; then
    echo "installing Debian packages: pypy3 pypy3-dev"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pypy3 pypy3-dev >/dev/null; } \
        || unavailable "apt-get install pypy3 pypy3-dev failed"
fi

VENV="${TWISTGATE_PYPY_VENV:-.venv-pypy}"
[ -x "$VENV/bin/python" ] || pypy3 -m venv "$VENV" || unavailable "pypy3 -m venv failed"
# tests/pypy-constraints.txt: the newest releases with wheels for PyPy 3.9 (cryptography).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary \
    -c tests/pypy-constraints.txt -e '.[test]' \
    || unavailable "installing twistgate into the PyPy venv failed"
"$VENV/bin/python" -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

# PyPy's garbage collector lets the heap grow by up to 1/8 of the RAM between
# major collections; a gateway streams large bodies through small buffers,
# so keep that margin small (docs/benchmarks.md, PyPy).
export PYPY_GC_MAX_DELTA="${PYPY_GC_MAX_DELTA:-16MB}"

SMOKE=(
    tests/integration/test_twistd.py
    tests/integration/test_forwarding.py
    tests/integration/test_auth_tokens.py
    tests/integration/test_auth_keys.py
    tests/integration/test_ratelimit_redis.py
    tests/integration/test_workers.py
    tests/ratelimit
)
if [ "${1:-}" = "--all" ]; then
    shift
    set -- tests "$@"
elif [ $# -eq 0 ]; then
    set -- -q "${SMOKE[@]}"
fi
"$VENV/bin/python" --version
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
