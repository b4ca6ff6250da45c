#!/usr/bin/env bash
# The suite on PyPy (Debian's pypy3: PyPy 7.3 for Python 3.9), in its own venv.
#   bash tests/pypy.sh            the smoke part (about 2 minutes): the gateway under twistd,
#                                 forwarding, JWT, rate limits (memory, Redis), the PostgreSQL
#                                 and SQLite key stores, worker processes, TLS, the HTTP/1.1
#                                 engine and its framing on pyparse (PyPy's parser); a few
#                                 cheap tests of each (whole files took 4.5 minutes: a gateway
#                                 with workers takes ~10 s to start on PyPy)
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
# Debian's venv brings setuptools 66, which cannot build a wheel without the
# separate `wheel` package: the suite's extension packages would then be built
# in an isolated environment, downloaded for every build (tests/extension_packages.py).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 'setuptools>=70.1' >/dev/null \
    || unavailable "upgrading pip and setuptools in the PyPy venv failed"
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
    tests/integration/test_twistd.py::test_first_run_config_serves_the_demo
    tests/integration/test_twistd.py::test_sigterm_lets_requests_in_flight_finish
    tests/integration/test_forwarding.py
    tests/integration/test_auth_tokens.py
    tests/integration/test_auth_keys.py
    tests/integration/test_ratelimit_redis.py::test_redis_and_memory_give_the_same_answers_for_the_same_traffic
    tests/integration/test_ratelimit_redis.py::test_redis_down_fails_fast_and_recovers_by_itself
    tests/integration/test_ratelimit_redis.py::test_two_gateway_processes_share_one_limit_and_survive_a_redis_restart
    tests/integration/test_workers.py::test_workers_share_the_port_and_a_memory_limit_holds_for_the_host
    tests/integration/test_workers.py::test_reload_under_load_fails_no_request
    tests/integration/test_workers.py::test_a_killed_worker_loses_only_its_requests_in_flight_and_comes_back
    tests/ratelimit
    tests/tls                                   # TLS contexts (PyPy's cryptography lacks bindings CPython's has)
    tests/integration/test_tls_hardening.py
    tests/engine                                # the engine on pyparse, PyPy's parser (and on httptools)
    tests/integration/test_front_desync.py      # framing and smuggling over real sockets, on pyparse
    tests/integration/test_framing_hardening.py
    tests/integration/test_tls_upstream.py      # 2 s: Python 3.9 gets Twisted 25 and pyOpenSSL 25.1, whose TLS differs
    tests/test_gc_tuning.py                     # the JIT trace limit and the collector settings, on PyPy itself
)
if [ "${1:-}" = "--all" ]; then
    shift
    set -- tests "$@"
elif [ $# -eq 0 ]; then
    set -- -q "${SMOKE[@]}"
fi
"$VENV/bin/python" --version
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
