"""Running engine code on a chosen HTTP/1.1 parser, whatever this interpreter picked at import."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from twistgate.engine import head, http1_client, pyparse

PARSERS = ("llhttp", "python")
_NAMES = {
    head: ("HttpParserError", "HttpParserUpgrade", "HttpRequestParser"),
    http1_client: ("HttpParserError", "HttpParserUpgrade", "HttpResponseParser"),
}


def parser_module(parser: str) -> Any:
    if parser == "python":
        return pyparse
    import httptools

    return httptools


@contextmanager
def use_parser(parser: str) -> Iterator[None]:
    """The engine's server and client parse with ``parser`` ("llhttp" or "python") inside the block."""
    source = parser_module(parser)
    saved = [(module, name, getattr(module, name)) for module, names in _NAMES.items() for name in names]
    for module, names in _NAMES.items():
        for name in names:
            setattr(module, name, getattr(source, name))
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
