"""
A route's ``match`` conditions against one request: header fields, cookies
and query parameters, each an exact value, a ``~regex`` or ``*`` (present).

`RequestFacts` wraps the request's headers and raw query and parses cookies
and query parameters only when a route with conditions asks, once per
request; requests that meet no conditioned route pay nothing.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote_plus

from twistgate.config._edge import MatchConfig
from twistgate.headers import Headers

__all__ = ["RequestFacts", "parse_cookies", "parse_query"]


def parse_cookies(lines: List[bytes]) -> Dict[str, List[str]]:
    """Cookie name -> values, from ``Cookie`` field lines (RFC 6265 §4.2.1)."""
    found: Dict[str, List[str]] = {}
    for line in lines:
        for pair in line.split(b";"):
            name, eq, value = pair.strip().partition(b"=")
            if eq and name:
                text = value.strip()
                if len(text) >= 2 and text[:1] == b'"' == text[-1:]:
                    text = text[1:-1]
                found.setdefault(name.decode("latin-1"), []).append(text.decode("latin-1"))
    return found


def parse_query(query: bytes) -> Dict[str, List[str]]:
    """Parameter name -> values, percent- and ``+``-decoded; ``?flag`` is present with an empty value."""
    found: Dict[str, List[str]] = {}
    for pair in query.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        key = unquote_plus(name.decode("latin-1"), errors="replace")
        found.setdefault(key, []).append(unquote_plus(value.decode("latin-1"), errors="replace"))
    return found


class RequestFacts:
    """What ``match`` conditions look at in one request."""

    __slots__ = ("headers", "query", "_cookies", "_params")

    def __init__(self, headers: Headers, query: bytes) -> None:
        self.headers = headers
        self.query = query
        self._cookies: Optional[Dict[str, List[str]]] = None
        self._params: Optional[Dict[str, List[str]]] = None

    def header(self, name: str) -> List[str]:
        values = self.headers.raw.get(name.encode("latin-1"))  # condition names are canonical already
        return [v.decode("latin-1") for v in values] if values else []

    def cookie(self, name: str) -> List[str]:
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.raw.get(b"Cookie") or [])
        return self._cookies.get(name, [])

    def param(self, name: str) -> List[str]:
        if self._params is None:
            self._params = parse_query(self.query)
        return self._params.get(name, [])

    def satisfy(self, config: MatchConfig) -> bool:
        """Whether every condition holds."""
        for condition in config.headers:
            if not condition.test(self.header(condition.name)):
                return False
        for condition in config.cookies:
            if not condition.test(self.cookie(condition.name)):
                return False
        for condition in config.query:
            if not condition.test(self.param(condition.name)):
                return False
        return True

    def explain(self, config: MatchConfig) -> List[Tuple[str, bool, str]]:
        """``(condition, held, what the request had)`` for each condition, for ``twistgate explain``."""
        rows: List[Tuple[str, bool, str]] = []
        for where, conditions, read in (
            ("header", config.headers, self.header),
            ("cookie", config.cookies, self.cookie),
            ("query", config.query, self.param),
        ):
            for condition in conditions:
                values = read(condition.name)
                seen = ", ".join(repr(v) for v in values) if values else "absent"
                rows.append((f"{where} {condition.describe()}", condition.test(values), seen))
        return rows

