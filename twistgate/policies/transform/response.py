"""
Response-side presets of a route: ``security_headers`` and the opt-in
``json_envelope``.

* ``security_headers`` adds, to every response of the route (errors the
  gateway answers included) that does not already carry it:
  ``Strict-Transport-Security`` (only on HTTPS, as RFC 6797 §7.2 requires:
  the client's scheme, or ``X-Forwarded-Proto`` from a trusted proxy),
  ``X-Content-Type-Options: nosniff``, ``X-Frame-Options``,
  ``Content-Security-Policy: frame-ancestors ...`` (what CSP Level 2 uses
  instead of X-Frame-Options; it follows ``frame_options`` unless set) and
  ``Referrer-Policy``.  Each can be changed or turned off.
* ``json_envelope`` wraps an upstream's JSON response body as
  ``{"data": <body>, "meta": {"status": ..., "request_id": ...}}`` while it
  streams (nothing is buffered or parsed): ``Content-Length``, ``ETag`` and
  digests are dropped because the bytes change.  Bodies that are not JSON,
  are content-encoded, partial (206) or empty by status (204, 304, HEAD)
  pass unchanged; an empty JSON body becomes ``"data": null``.  Answers that
  do not come from the upstream are left alone: a cache hit replays a body
  that was wrapped when it was stored.
"""

from __future__ import annotations

import json
import re
from typing import List, Optional, Tuple

import attrs
from twisted.python.failure import Failure

from twistgate.config._node import Node
from twistgate.config.model import Location
from twistgate.errors import GatewayError
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import NOT_FORWARDING, Policy
from twistgate.policies.transform.headers import add_error_headers

SECURITY_KEYS = ("hsts", "content_type_options", "frame_options", "frame_ancestors", "referrer_policy")
DEFAULT_HSTS = "max-age=31536000; includeSubDomains"
DEFAULT_FRAME_OPTIONS = "DENY"
DEFAULT_REFERRER_POLICY = "no-referrer"
FRAME_OPTIONS = ("DENY", "SAMEORIGIN")
#: The frame-ancestors source list that says what each X-Frame-Options value says.
FRAME_ANCESTORS_FOR = {"DENY": "'none'", "SAMEORIGIN": "'self'"}
#: One source of a CSP source list: a keyword, a scheme ("https:") or a host
#: source ("https://*.example.com:8443/path"); never ";" or ",", which would
#: start another directive or policy.
_SOURCE = re.compile(r"'self'|[A-Za-z][A-Za-z0-9+.-]*:|(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:\*\.)?[A-Za-z0-9.-]+(?::(?:\d+|\*))?(?:/[^\s;,']*)?")
REFERRER_POLICIES = (
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
)
_HSTS = re.compile(r"\s*max-age\s*=\s*\d+\s*(;\s*(includeSubDomains|preload)\s*)*", re.IGNORECASE)


# -- security_headers -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class SecurityHeadersConfig:
    hsts: Optional[str] = DEFAULT_HSTS
    content_type_options: bool = True
    frame_options: Optional[str] = DEFAULT_FRAME_OPTIONS
    frame_ancestors: Optional[str] = FRAME_ANCESTORS_FOR[DEFAULT_FRAME_OPTIONS]  # a CSP source list
    referrer_policy: Optional[str] = DEFAULT_REFERRER_POLICY
    location: Location = Location()


def parse_security_headers(node: Node) -> Optional[SecurityHeadersConfig]:
    """``true`` for the preset, ``false`` for none, or a mapping changing some."""
    location = node.location(at_key=True)
    if node.kind != "mapping":
        enabled = node.boolean()
        if enabled is None:
            return None
        if not enabled:
            return SecurityHeadersConfig(
                hsts=None, content_type_options=False, frame_options=None, frame_ancestors=None,
                referrer_policy=None, location=location,
            )
        return SecurityHeadersConfig(location=location)
    fields = node.mapping(SECURITY_KEYS)
    if fields is None:
        return None
    values = {}
    ok = True
    for key, default, check in (
        ("hsts", DEFAULT_HSTS, _hsts),
        ("frame_options", DEFAULT_FRAME_OPTIONS, lambda n: _off_or(n, lambda m: m.choice(FRAME_OPTIONS))),
        ("referrer_policy", DEFAULT_REFERRER_POLICY, lambda n: _off_or(n, lambda m: m.choice(REFERRER_POLICIES))),
    ):
        if key in fields:
            value = check(fields[key])
            if value is None:
                ok = False
            values[key] = value or None  # "" means off
        else:
            values[key] = default
    if "frame_ancestors" in fields:
        ancestors = _off_or(fields["frame_ancestors"], _frame_ancestors)
        ok = ok and ancestors is not None
        values["frame_ancestors"] = ancestors or None
    else:  # say in CSP what X-Frame-Options says
        values["frame_ancestors"] = FRAME_ANCESTORS_FOR.get(values["frame_options"] or "")
    nosniff = fields.read("content_type_options", Node.boolean, True)
    if not ok:
        return None
    return SecurityHeadersConfig(content_type_options=nosniff, location=location, **values)


def _frame_ancestors(node: Node) -> Optional[str]:
    """A CSP source list: 'none', 'self', schemes and hosts (nothing that could start another directive)."""
    text = node.string()
    sources = (text or "").split()
    valid = sources == ["'none'"] or (sources and all(_SOURCE.fullmatch(source) for source in sources))
    if text is not None and not valid:
        node.issue(f"expected a frame_ancestors source list like \"'self' https://app.example\", got {text!r}")
        return None
    return text.strip() if text is not None else None


def _off_or(node: Node, read: object) -> Optional[str]:
    """``false`` turns a header off (returned as ""), anything else is read."""
    if node.kind == "boolean":
        if node.boolean():
            node.issue("write the header's value, or false to leave it out")
            return None
        return ""
    return read(node)  # type: ignore[operator]


def _hsts(node: Node) -> Optional[str]:
    def read(n: Node) -> Optional[str]:
        text = n.string()
        if text is not None and not _HSTS.fullmatch(text):
            n.issue(f"expected a Strict-Transport-Security value like {DEFAULT_HSTS!r}, got {text!r}")
            return None
        return text

    return _off_or(node, read)


class SecurityHeadersStage:
    """Adds the preset's headers a response does not set itself."""

    def __init__(self, config: SecurityHeadersConfig) -> None:
        self.hsts = config.hsts.encode("ascii") if config.hsts else None
        always: List[Tuple[bytes, bytes]] = []
        if config.content_type_options:
            always.append((b"X-Content-Type-Options", b"nosniff"))
        if config.frame_options:
            always.append((b"X-Frame-Options", config.frame_options.encode("ascii")))
        if config.frame_ancestors:
            always.append((b"Content-Security-Policy", b"frame-ancestors " + config.frame_ancestors.encode("ascii")))
        if config.referrer_policy:
            always.append((b"Referrer-Policy", config.referrer_policy.encode("ascii")))
        self.always = tuple(always)

    def headers_for(self, request: ProxyRequest) -> List[Tuple[bytes, bytes]]:
        headers = list(self.always)
        if self.hsts is not None and _secure(request):
            headers.append((b"Strict-Transport-Security", self.hsts))
        return headers

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        raw = response.headers.raw
        for name, value in self.headers_for(request):
            if name not in raw:
                raw[name] = [value]

    @hookimpl
    def on_error(self, request: ProxyRequest, failure: Failure) -> None:
        if isinstance(failure.value, GatewayError):
            add_error_headers(failure, self.headers_for(request))


def _secure(request: ProxyRequest) -> bool:
    """HTTPS as the client used it; X-Forwarded-Proto counts only from trusted proxies
    (the gateway replaced it otherwise)."""
    if request.scheme == "https":
        return True
    proto = request.headers.raw.get(b"X-Forwarded-Proto")
    return bool(proto) and proto[0].split(b",")[0].strip().lower() == b"https"


# -- json_envelope ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JsonEnvelopeConfig:
    key: str = "data"
    meta: bool = True
    location: Location = Location()


def parse_json_envelope(node: Node) -> Optional[JsonEnvelopeConfig]:
    """``true``, or ``{key: data, meta: true}``; ``false`` turns it off (None)."""
    location = node.location(at_key=True)
    if node.kind != "mapping":
        enabled = node.boolean()
        return JsonEnvelopeConfig(location=location) if enabled else None
    fields = node.mapping(("key", "meta"))
    if fields is None:
        return None
    key = fields.read("key", Node.string, "data")
    meta = fields.read("meta", Node.boolean, True)
    if key == "meta" and meta:
        fields["key"].issue("'meta' is the envelope's own key; choose another, or set meta: false")
        return None
    return JsonEnvelopeConfig(key=key, meta=meta, location=location)


_NO_BODY = frozenset({204, 304})
_DROP = (b"Content-Length", b"ETag", b"Content-MD5", b"Digest", b"Content-Digest", b"Repr-Digest")  # canonical


def is_json(content_type: Optional[List[bytes]]) -> bool:
    if not content_type:
        return False
    media = content_type[0].split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class _Envelope:
    """A body filter: prefix before the first byte of JSON, suffix at the end."""

    __slots__ = ("prefix", "suffix", "started")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.started = False

    def write(self, data: bytes) -> bytes:
        if self.started:
            return data
        data = data.lstrip()
        if not data:
            return b""
        self.started = True
        return self.prefix + data

    def finish(self) -> bytes:
        if not self.started:
            self.started = True
            return self.prefix + b"null" + self.suffix
        return self.suffix


class JsonEnvelopeStage:
    def __init__(self, config: JsonEnvelopeConfig) -> None:
        self.prefix = b"{" + json.dumps(config.key).encode("utf-8") + b":"
        self.meta = config.meta

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        raw = response.headers.raw
        if (
            not response.from_upstream  # a cache hit was wrapped when stored; plugin answers are the plugin's
            or request.method == b"HEAD"
            or response.status in _NO_BODY
            or response.status < 200
            or response.status == 206
            or not is_json(raw.get(b"Content-Type"))
        ):
            return
        encoding = raw.get(b"Content-Encoding")
        if encoding and any(v.strip().lower() not in (b"", b"identity") for v in encoding):
            return
        for name in _DROP:
            raw.pop(name, None)
        if self.meta:
            meta = json.dumps({"status": response.status, "request_id": request.request_id}, separators=(",", ":"))
            suffix = b',"meta":' + meta.encode("utf-8") + b"}"
        else:
            suffix = b"}"
        response.body_filters = (response.body_filters or []) + [_Envelope(self.prefix, suffix)]


#: Security response headers (HSTS on HTTPS, nosniff, Referrer-Policy...), filling in what is missing.
SECURITY_HEADERS = Policy(
    name="security_headers", key="security_headers", parse=parse_security_headers,
    build=lambda route, services: SecurityHeadersStage(route.policies["security_headers"]),
)  # fmt: skip
#: JSON bodies wrapped in an envelope.
JSON_ENVELOPE = Policy(
    name="json_envelope", key="json_envelope", parse=parse_json_envelope,
    build=lambda route, services: JsonEnvelopeStage(route.policies["json_envelope"]),
    sight=NOT_FORWARDING,  # the answer, the method, the request id
)  # fmt: skip
