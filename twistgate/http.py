"""
HTTP header rules for a proxy hop: hop-by-hop stripping, forwarding headers,
request ids.

A gateway is one hop (RFC 9110 §7.6): connection-specific headers, and every
header a `Connection` field names, belong to one connection and are never
passed on; `Via` records the hop; `X-Forwarded-*` and `Forwarded` say who the
client was, believed from the client only when the peer is a trusted proxy.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from twistgate.fieldnames import FieldNames
from twistgate.headers import Headers, canonical_name
from twistgate.ops.tracecontext import HEX as _HEX
from twistgate.reasons import reason_for

from twistgate.config.model import IPNetwork

# Header names in canonical form, as `Headers.raw` keys them (`te` becomes
# `TE`): the raw dict avoids re-encoding names on every request.
_canonical = canonical_name

# `Proxy-Authorization` is not among them: RFC 9110 §11.7.2 lets a proxy
# that does not consume the credentials pass them on, and nginx, HAProxy and
# Envoy do; an authenticator that reads it (api_key with `header:
# Proxy-Authorization`, a forward authenticator that sends it) removes it
# before forwarding, as with every credential the gateway checked.
HOP_BY_HOP = FieldNames(
    _canonical(name)
    for name in (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)

# `Connection` values that name no other field (the usual ones): nothing to look up.
_PERSISTENCE_ONLY = frozenset({b"keep-alive", b"Keep-Alive", b"close", b"Close"})

_REQUEST_ID_OK = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}\Z").match


def connection_listed(values: Optional[Sequence[bytes]]) -> List[bytes]:
    """The header names a `Connection` field lists, in canonical form."""
    names: List[bytes] = []
    for value in values or ():
        for token in value.split(b","):
            token = token.strip()
            if token and token.lower() not in (b"close", b"keep-alive"):
                names.append(_canonical(token))
    return names


def strip_hop_by_hop(raw: Dict[bytes, List[bytes]], connection: Optional[Sequence[bytes]] = None) -> None:
    """
    Remove hop-by-hop headers (and those named by `Connection`) from a
    `Headers.raw` dict, in place.

    Working on the raw dict avoids re-encoding names per header: this runs on
    every request and every response.
    """
    if connection is None:
        connection = raw.get(b"Connection")
    if connection is not None and (len(connection) != 1 or connection[0] not in _PERSISTENCE_ONLY):
        for name in connection_listed(connection):
            raw.pop(name, None)
    if not HOP_BY_HOP.isdisjoint(raw):
        for name in HOP_BY_HOP.intersection(raw):
            del raw[name]


def new_request_id() -> str:
    """24 random hex digits (from `os.urandom`, fetched in batches)."""
    return _HEX.take(12)


def request_id_from(headers: Headers) -> str:
    """The client's `X-Request-ID` when it is a sane token, else a fresh one."""
    raw = getattr(headers, "raw", None)  # twistgate's Headers; Twisted's (admin pages) have no `raw`
    return request_id_of(raw.get(b"X-Request-Id") if raw is not None else headers.getRawHeaders(b"X-Request-Id"))


def request_id_of(values: Optional[Sequence[bytes]]) -> str:
    """`request_id_from` of the client's `X-Request-ID` values (None: it sent none)."""
    if values and _REQUEST_ID_OK(values[0]):
        return values[0].decode("ascii")
    return _HEX.take(12)


class ForwardingPolicy:
    """
    Decides whom to believe about the client and writes the forwarding
    headers.  Built once from `trusted_proxies`.
    """

    def __init__(self, trusted_proxies: Iterable[IPNetwork] = (), via: bytes = b"twistgate") -> None:
        self._trusted = tuple(trusted_proxies)
        self._via = via
        self._via_10 = b"1.0 " + via
        self._via_11 = b"1.1 " + via
        self._trust_cache: Dict[str, bool] = {}
        # (peer, host, scheme) -> (peer as bytes, the Forwarded element): most
        # requests come from a few clients for a few hosts.
        self._elements: Dict[Tuple[str, bytes, str], Tuple[bytes, bytes]] = {}
        # (peer, host, scheme, version) -> `block`'s ready lines.
        self._blocks: Dict[Tuple[str, bytes, str, bytes], bytes] = {}

    def is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        known = self._trust_cache.get(address)
        if known is None:
            try:
                ip = ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in net for net in self._trusted)
            if len(self._trust_cache) > 4096:
                self._trust_cache.clear()
            self._trust_cache[address] = known
        return known

    def client_address(self, peer: str, xff: Optional[Sequence[bytes]]) -> str:
        """
        The client as far as it can be believed: walk `X-Forwarded-For` from
        the right while the hops are trusted proxies (the NGINX realip
        "recursive" rule); the first untrusted address is the client.
        """
        if not xff or not self.is_trusted(peer):
            return peer
        hops = [h.strip() for v in xff for h in v.decode("latin-1").split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            client = hop
            if not self.is_trusted(hop):
                break
        return client

    def apply(
        self,
        raw: Dict[bytes, List[bytes]],
        peer: str,
        scheme: str,
        host: bytes,
        version: bytes,
    ) -> str:
        """
        Write X-Forwarded-For/-Proto/-Host, Forwarded and Via into the
        outgoing request headers (a `Headers.raw` dict) and return the
        believed client address.  Without a host (HTTP/1.0 without Host)
        there is no ``X-Forwarded-Host`` and no ``host=`` in ``Forwarded``:
        an empty one would read as "the client asked for no host".  A client's own forwarding headers are kept
        only when the peer is trusted; otherwise they are replaced, so a
        client cannot spoof its address to the upstream.
        """
        trusted = self.is_trusted(peer) if self._trusted else False
        if trusted:
            client = self.client_address(peer, raw.get(b"X-Forwarded-For"))
            xff = raw.get(b"X-Forwarded-For")
            raw[b"X-Forwarded-For"] = [b", ".join(xff) + b", " + peer.encode("ascii")] if xff else [peer.encode("ascii")]
            raw.setdefault(b"X-Forwarded-Proto", [scheme.encode("ascii")])
            if host:
                raw.setdefault(b"X-Forwarded-Host", [host])
            fwd = raw.get(b"Forwarded")
            element = _forwarded_element(peer, host, scheme)
            raw[b"Forwarded"] = [b", ".join(fwd) + b", " + element] if fwd else [element]
        else:
            client = peer
            key = (peer, host, scheme)
            known = self._elements.get(key)
            if known is None:
                if len(self._elements) > 4096:
                    self._elements.clear()
                known = self._elements[key] = (peer.encode("ascii"), _forwarded_element(peer, host, scheme))
            raw[b"X-Forwarded-For"] = [known[0]]
            raw[b"X-Forwarded-Proto"] = [b"https" if scheme == "https" else b"http"]
            if host:
                raw[b"X-Forwarded-Host"] = [host]
            else:  # HTTP/1.0 without Host: no host to tell, and none of the client's own
                raw.pop(b"X-Forwarded-Host", None)
            raw[b"Forwarded"] = [known[1]]
        via = self._via_10 if version == b"HTTP/1.0" else self._via_11
        old = raw.get(b"Via")
        raw[b"Via"] = [b", ".join(old) + b", " + via] if old else [via]
        return client

    def block(self, raw: Dict[bytes, List[bytes]], peer: str, scheme: str, host: bytes, version: bytes) -> Optional[bytes]:
        """
        What `apply` writes, as ready header lines for the engine's head
        writer, for a request on which nothing reads them before it goes
        upstream (`twistgate.chain.forwarding_blind`): the same fields and
        values, made once per (peer, host, scheme, version) instead of five
        fields set one by one per request.  The client's own forwarding fields are taken out of
        ``raw`` (they are replaced, as `apply` replaces them), and the
        believed client is the peer.  None when `apply` must run instead: a
        trusted peer (its fields are continued) or a client's own ``Via``
        (continued too).
        """
        if b"Via" in raw or (self._trusted and self.is_trusted(peer)):
            return None
        if not _CLIENT_FORWARDING.isdisjoint(raw):
            for name in _CLIENT_FORWARDING.intersection(raw):
                del raw[name]
        key = (peer, host, scheme, version)
        lines = self._blocks.get(key)
        if lines is None:
            if len(self._blocks) > 4096:
                self._blocks.clear()
            fields = [(b"X-Forwarded-For", peer.encode("ascii")), (b"X-Forwarded-Proto", scheme.encode("ascii"))]
            if host:
                fields.append((b"X-Forwarded-Host", host))
            fields.append((b"Forwarded", _forwarded_element(peer, host, scheme)))
            fields.append((b"Via", self._via_10 if version == b"HTTP/1.0" else self._via_11))
            lines = self._blocks[key] = b"".join(b"%s: %s\r\n" % field for field in fields)
        return lines


#: The forwarding fields `ForwardingPolicy.block` replaces (Via is continued: `apply` then).
_CLIENT_FORWARDING = FieldNames({b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host", b"Forwarded"})

#: Every field `ForwardingPolicy` writes, lower-cased (as configured names are
#: compared): what a layer must not read for a route to send them prepared
#: (`twistgate.chain.forwarding_blind`).
FORWARDING_FIELDS = frozenset(name.lower() for name in _CLIENT_FORWARDING | {b"Via"})


def _forwarded_element(peer: str, host: bytes, scheme: str) -> bytes:
    node = f'"[{peer}]"' if ":" in peer else peer
    if not host:
        return f"for={node};proto={scheme}".encode("latin-1")  # RFC 7239: host= is optional, never empty
    host_s = host.decode("latin-1")
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]*", host_s):
        host_s = '"' + host_s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"for={node};host={host_s};proto={scheme}".encode("latin-1")


def add_via(raw: Dict[bytes, List[bytes]], via: bytes) -> None:
    old = raw.get(b"Via")
    raw[b"Via"] = [b", ".join(old) + b", " + via] if old else [via]


def reason_phrase(status: int) -> bytes:
    """The RFC 9110 reason phrase of `status` (its class's name for unregistered codes): one table, `twistgate.reasons`."""
    return reason_for(status)


#: What Twisted says for a status missing from its table; an upstream on
#: Twisted sends it for 429, 431, 451...: the gateway gives the RFC phrase.
TWISTED_UNKNOWN_PHRASE = b"Unknown Status"


def relayed_reason(phrase: Optional[bytes]) -> Optional[bytes]:
    """An upstream's reason phrase as the gateway relays it: ``None`` (the RFC 9110 phrase) when empty or Twisted's placeholder."""
    if not phrase or phrase == TWISTED_UNKNOWN_PHRASE:
        return None
    return phrase


class RFC9110Phrases:
    """
    For a twisted.web ``Request`` subclass: a status set without a phrase
    gets its RFC 9110 phrase (`reason_phrase`), not Twisted's older table
    (which lacks 429, 431, 451... and says "Unknown Status" for them).
    """

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        super().setResponseCode(code, message or reason_phrase(code))  # type: ignore[misc]

