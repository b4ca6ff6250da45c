"""
The engine's integration tests again, on the pure-Python parser PyPy uses
(`twistgate.engine.pyparse`), forced on CPython: CI runs on CPython, where the
engine otherwise parses with httptools.  One pytest run in a child process,
since the parser is chosen once, at import (TWISTGATE_HTTP1_PARSER).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Framing and smuggling over real sockets, the pool's keep-alive and retry, 1xx, upgrades (101 through the client).
FILES = [
    "tests/integration/test_front_desync.py",
    "tests/integration/test_framing_hardening.py",
    "tests/integration/test_engine_proxy.py",
    "tests/integration/test_pooled_upstream.py",
    "tests/integration/test_interim.py",
    "tests/integration/test_websocket.py",
]


def test_the_engine_integration_tests_pass_on_the_python_parser() -> None:
    env = dict(os.environ, TWISTGATE_HTTP1_PARSER="python")
    check = subprocess.run(
        [sys.executable, "-c", "from twistgate.engine import head, pyparse; assert head.HttpRequestParser is pyparse.HttpRequestParser"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stderr
    run = subprocess.run(
        # --durations and faulthandler_timeout: should this run ever be slow or
        # stall, the failure message shows which test and where it waited.
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-k", "not twisted",
            "--durations=8", "-o", "faulthandler_timeout=60", *FILES,
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
