"""
Who a request counts as, for the policies that count requests per client
(``rate_limit`` and ``concurrency``).  A key part is ``ip``, ``consumer``
(by address when the request is anonymous, never all anonymous requests
together), ``header:NAME`` (by address when the header is missing, not one
shared count) or ``route`` (every request of the route alike).

Read from the configuration once (`read_key_part`) and resolved once per
route into a function of the request (`key_part`), so a request costs a
call and a string join.  Both policies count alike because they share this
module: policies never import one another.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from twistgate.config._issues import suggest
from twistgate.config._node import Node
from twistgate.messages import ProxyRequest

__all__ = ["KEY_PARTS", "KeyPart", "key_part", "read_key_part"]

#: The key parts named by a word; ``header:NAME`` is the other kind.
KEY_PARTS = ("ip", "consumer", "route")

KeyPart = Callable[[ProxyRequest], str]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def read_key_part(node: Node, written: str) -> Optional[str]:
    """
    The key part `written` names (``header:`` names lower-cased), or None
    after an issue at `node` that quotes `written` as given.
    """
    part = written.strip()
    if part.lower().startswith("header:"):
        header = part[len("header:") :].strip()
        if not _TOKEN.fullmatch(header):
            node.issue(f"expected header:NAME with a header name, like header:X-API-Key, got {written!r}")
            return None
        return "header:" + header.lower()
    if part not in KEY_PARTS:
        choices = KEY_PARTS + ("header:NAME",)
        node.issue(f"unknown key {written!r}; expected one of {', '.join(choices)}{suggest(part, KEY_PARTS)}")
        return None
    return part


def key_part(spec: str) -> KeyPart:
    """One key part (as `read_key_part` gives it) as a function of the request."""
    if spec == "ip":
        return lambda request: "ip=" + request.client_ip
    if spec == "consumer":
        return lambda request: (
            "consumer=" + str(request.consumer) if request.consumer is not None else "ip=" + request.client_ip
        )
    if spec == "route":
        return lambda request: "route"
    name = spec[len("header:") :].encode("ascii")

    def header(request: ProxyRequest) -> str:
        values = request.headers.getRawHeaders(name)
        return "h=" + b",".join(values).decode("latin-1") if values else "ip=" + request.client_ip

    return header
