"""
Which HTTP/1.1 parser the engine uses, chosen once at import: httptools
(llhttp, C) on CPython, `pyparse` (pure Python, as strict) on PyPy, where
llhttp's callbacks through cpyext cost more than Python the JIT compiles.
``TWISTGATE_HTTP1_PARSER=python|llhttp`` overrides it (the CPython suite
runs the engine's tests on both; see docs/engine.md, "The parser").
"""

from __future__ import annotations

import os
import platform

__all__ = ["PARSER", "HttpParserError", "HttpParserUpgrade", "HttpRequestParser", "HttpResponseParser"]

_CHOICES = ("python", "llhttp")


def _choice() -> str:
    chosen = os.environ.get("TWISTGATE_HTTP1_PARSER", "").strip().lower()
    if not chosen:
        return "python" if platform.python_implementation() == "PyPy" else "llhttp"
    if chosen not in _CHOICES:
        raise ImportError(f"TWISTGATE_HTTP1_PARSER must be one of {', '.join(_CHOICES)}, not {chosen!r}")
    return chosen


PARSER = _choice()

if PARSER == "python":
    from twistgate.engine.pyparse import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser
else:
    from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser  # type: ignore[assignment]
