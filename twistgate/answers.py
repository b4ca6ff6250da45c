"""
Answers the gateway gives itself instead of forwarding: a route's
``redirect`` and ``respond``, and a listener's ``redirect_https``.

A ``redirect`` target is a template compiled once: ``{name}`` takes a
``{param}`` segment or a regex route's named group (still percent-encoded
as in the path, so it stays a valid URL), or ``{host}`` (the request's
Host, port included), ``{scheme}`` or ``{path}`` (the normalised request
path).  The request's query string is appended unless the target has one of
its own.  A relative target (``/new/place``) is sent as written: clients
resolve it against the request's URL (RFC 9110 §10.2.2).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from twistgate.config._edge import RedirectConfig, RespondConfig
from twistgate.errors import BadRequest
from twistgate.headers import Headers
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.placeholders import split_placeholders

__all__ = ["BUILTINS", "Redirect", "Respond", "https_location", "https_redirect", "template_names"]

#: Names a redirect target may use besides the route's parameters.
BUILTINS = ("host", "scheme", "path")


def template_names(text: str) -> Tuple[str, ...]:
    """The ``{name}``s a redirect target uses (ValueError for a malformed one)."""
    return tuple(part[0] for part in split_placeholders(text) if isinstance(part, tuple))


class Redirect:
    """``routes[].redirect``: a 3xx with the rendered ``Location``."""

    def __init__(self, config: RedirectConfig) -> None:
        self.status = config.status
        self.parts = split_placeholders(config.to)
        literal = "".join(p for p in self.parts if isinstance(p, str))
        self.has_query = "?" in literal

    def location(self, request: ProxyRequest, raw_params: Dict[str, str], host: bytes, path: str) -> bytes:
        out: List[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name = part[0]
            value = raw_params.get(name)
            if value is None:
                if name == "host":
                    value = host.decode("latin-1")
                elif name == "scheme":
                    value = request.scheme
                elif name == "path":
                    value = path
                else:
                    value = ""  # an optional regex group that did not take part
            out.append(value)
        target = "".join(out)
        if request.query and not self.has_query:
            target, hash_, fragment = target.partition("#")
            target = target + "?" + request.query.decode("latin-1") + hash_ + fragment
        return target.encode("utf-8")

    def response(self, request: ProxyRequest, raw_params: Dict[str, str], host: bytes, path: str) -> ProxyResponse:
        headers = Headers()
        headers.raw[b"Location"] = [self.location(request, raw_params, host, path)]
        headers.raw[b"Content-Length"] = [b"0"]
        return ProxyResponse(status=self.status, headers=headers, body=b"")


class Respond:
    """``routes[].respond``: the same fixed answer every time."""

    def __init__(self, config: RespondConfig) -> None:
        self.status = config.status
        self.body = config.body
        self.headers = config.headers

    def response(self, request: ProxyRequest, raw_params: Dict[str, str], host: bytes, path: str) -> ProxyResponse:
        return ProxyResponse(status=self.status, headers=Headers.from_pairs(self.headers), body=self.body)


def https_location(host: bytes, port: int, path: bytes, query: bytes) -> Optional[bytes]:
    """
    ``https://<host>[:port]<path>[?query]`` for `redirect_https`: the
    request's host with its port replaced (left out for 443); None without a
    usable host.
    """
    if not host:
        return None
    if host.startswith(b"["):
        end = host.find(b"]")
        if end == -1:
            return None
        name = host[: end + 1]
    else:
        name = host.partition(b":")[0]
    if not name or b"/" in name or b"@" in name:
        return None
    authority = name if port == 443 else name + b":%d" % port
    target = path + (b"?" + query if query else b"")
    return b"https://" + authority + target


def https_redirect(host: bytes, port: int, path: bytes, query: bytes) -> ProxyResponse:
    """The 308 of ``redirect_https``; `BadRequest` without a usable host."""
    location = https_location(host, port, path, query)
    if location is None:
        raise BadRequest("A Host header is needed to redirect to HTTPS.")
    headers = Headers()
    headers.raw[b"Location"] = [location]
    headers.raw[b"Content-Length"] = [b"0"]
    return ProxyResponse(status=308, headers=headers, body=b"")
