"""
What every authenticator shares: the identity it produces, the three ways it
can refuse, and small helpers for header values and challenges.

An authenticator has four methods, all cheap and none parsing config:

* ``credentials(request)``: its kind of credential in the request, or None
  when the client sent none (the next authenticator is tried);
* ``verify(request, credentials)``: an `Identity`, or a Deferred of one, or
  it raises `InvalidCredentials` (401), `NotPermitted` (403),
  `BackendUnavailable` (503) or `Answered` (an external service's answer,
  passed on as it is);
* ``strip(request)``: remove its credentials before forwarding;
* ``challenge(error)``: its ``WWW-Authenticate`` value (None: it has none).

One more is optional: ``recall(request)``, the `Identity` that
``credentials`` and ``verify`` would give at once, from memory (a JWT
verified before), or None to take the long way; the stage of a route with
that one authenticator asks it first (`twistgate.policies.auth.jwt_auth`).
"""

from __future__ import annotations

import re
from typing import Any, FrozenSet, Mapping, Optional, Tuple

import attrs

from twistgate.headers import canonical_name

HeaderPairs = Tuple[Tuple[bytes, bytes], ...]

# RFC 9110 §5.1 field-name: a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# Field values the gateway sets must not carry control characters (no CR/LF
# header injection); tab and visible characters, and UTF-8 above ASCII, pass.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class InvalidCredentials(Exception):
    """Credentials were sent but are not valid: 401."""

    def __init__(self, reason: str = "invalid", *, error: str = "invalid_token", description: str = "") -> None:
        super().__init__(reason)
        self.reason = reason  # for the log, never shown to the client
        self.error = error  # RFC 6750 error code, for Bearer challenges
        self.description = description  # safe to show the client


class NotPermitted(Exception):
    """The credentials are valid but this consumer is not allowed: 403."""

    def __init__(self, identity: "Identity", reason: str = "not allowed") -> None:
        super().__init__(reason)
        self.identity = identity
        self.reason = reason


class BackendUnavailable(Exception):
    """The key store, the key set or the authorization service could not be consulted: 503."""


class Answered(Exception):
    """
    An external authorization service refused and gave the client's answer
    itself (the ``forward`` authenticator): it goes back as it is.
    """

    def __init__(self, response: Any, reason: str = "refused") -> None:
        super().__init__(reason)
        self.response = response  # a twistgate.messages.Response
        self.reason = reason


@attrs.frozen(kw_only=True)
class Identity:
    """
    Who the client is, as decided by one authenticator.  ``details`` is what
    `request.state["auth"]` shows (never secrets); ``headers`` are the
    identity headers to send upstream.
    """

    consumer: str
    authenticator: str
    kind: str  # api_key | jwt | basic | mtls | forward
    scopes: FrozenSet[str] = frozenset()
    roles: FrozenSet[str] = frozenset()
    subject: Optional[str] = None  # certificate subject (mtls)
    sans: Tuple[str, ...] = ()  # certificate SANs (mtls)
    details: Mapping[str, Any] = attrs.field(factory=dict)
    headers: HeaderPairs = ()


def is_token(text: str) -> bool:
    """A valid HTTP field name (or challenge scheme)."""
    return bool(_TOKEN.match(text))


def header_value(value: Any) -> Optional[bytes]:
    """
    A value for an identity header, or None when it cannot be sent safely
    (control characters).  Lists become comma-separated, other non-strings
    JSON, so claims of any shape can be forwarded.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        parts = [header_value(item) for item in value]
        if any(part is None for part in parts):
            return None
        return b", ".join(parts)  # type: ignore[arg-type]
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        import json

        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    if _CONTROL.search(text):
        return None
    return text.encode("utf-8")


def quoted(text: str) -> str:
    """An RFC 9110 quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(scheme: str, **params: str) -> bytes:
    """``Scheme a="b", c="d"`` for ``WWW-Authenticate``."""
    if not params:
        return scheme.encode("ascii")
    rendered = ", ".join(f"{key}={quoted(value)}" for key, value in params.items())
    return f"{scheme} {rendered}".encode("utf-8")


def first_header(request: Any, name: bytes) -> Optional[bytes]:
    values = request.headers.raw.get(canonical_name(name))  # `getRawHeaders` without its str case
    return values[0] if values else None
