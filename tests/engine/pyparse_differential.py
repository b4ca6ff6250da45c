"""
Feeding the same bytes to httptools (llhttp) and `twistgate.engine.pyparse`,
and what each reported, normalised so the two compare: fragments of one
target, reason or body that arrive in pieces are joined, and the fields of a
head that never completed are dropped (llhttp reports them as they come,
pyparse once the head is complete: the one difference, see pyparse).
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import httptools

from twistgate.engine import pyparse

_JOINED = ("url", "status", "body")
_HEAD_PHASE = ("url", "status", "header")


class Recorder:
    """A protocol recording every callback, and what the parser says in on_headers_complete."""

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []
        self.parser: Any = None

    def _add(self, kind: str, *args: Any) -> None:
        events = self.events
        if kind in _JOINED and events and events[-1][0] == kind:
            events[-1] = (kind, events[-1][1] + args[0])
        else:
            events.append((kind,) + args)

    def on_message_begin(self) -> None:
        self._add("begin")

    def on_url(self, url: bytes) -> None:
        self._add("url", url)

    def on_status(self, status: bytes) -> None:
        self._add("status", status)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._add("header", name, value)

    def on_headers_complete(self) -> None:
        p = self.parser
        extra = p.get_method() if hasattr(p, "get_method") else p.get_status_code()
        self._add("headers_complete", p.get_http_version(), p.should_keep_alive(), p.should_upgrade(), extra)

    def on_body(self, body: bytes) -> None:
        self._add("body", body)

    def on_message_complete(self) -> None:
        self._add("message_complete")


def run(module: Any, response: bool, pieces: Sequence[bytes]) -> Tuple[Any, List[Tuple[Any, ...]]]:
    """``(outcome, events)``: outcome is "ok", ("upgrade", absolute offset) or ("error", base class)."""
    recorder = Recorder()
    parser = recorder.parser = (module.HttpResponseParser if response else module.HttpRequestParser)(recorder)
    outcome: Any = "ok"
    fed = 0
    for piece in pieces:
        try:
            parser.feed_data(piece)
        except module.HttpParserUpgrade as upgrade:
            outcome = ("upgrade", fed + upgrade.args[0])
            break
        except module.HttpParserError as error:
            outcome = ("error", isinstance(error, module.HttpParserCallbackError))
            break
        fed += len(piece)
    events = recorder.events
    while events and events[-1][0] in _HEAD_PHASE:
        events.pop()  # an incomplete or refused head's fields
    return outcome, events


def compare(data: bytes, response: bool, cuts: Sequence[int] = ()) -> Tuple[Any, Any]:
    """Both parsers' answers for ``data`` fed in pieces cut at ``cuts``."""
    bounds = [0] + sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])] or [b""]
    return run(httptools, response, pieces), run(pyparse, response, pieces)
