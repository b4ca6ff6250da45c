"""
Every engine test runs on both HTTP/1.1 parsers, whichever one this
interpreter picked at import (twistgate.engine.parsers): httptools (llhttp)
and the pure-Python `pyparse` PyPy uses.  CI runs on CPython, so this is
where the Python parser meets the engine's framing, smuggling and limit tests.

Not parametrised: the differential tests (they compare both themselves) and
property tests (hypothesis under pytest-twisted cannot run one test twice in
a session; tests/engine/test_pyparse_engine.py runs them on `pyparse`).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.engine.parser_choice import PARSERS, use_parser
from twistgate.engine.parsers import PARSER


def pytest_generate_tests(metafunc: Any) -> None:
    if "pyparse" in metafunc.module.__name__ or hasattr(metafunc.function, "hypothesis"):
        return
    metafunc.parametrize("http1_parser", PARSERS, indirect=True)


@pytest.fixture(autouse=True)
def http1_parser(request: Any) -> Iterator[str]:
    """The parser this test runs on (its id says which; unparametrised tests keep the interpreter's own)."""
    parser = getattr(request, "param", None)
    if parser is None:
        yield PARSER
        return
    with use_parser(parser):
        yield parser
