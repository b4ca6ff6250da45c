"""
The ``api_key`` authenticator: a key from a header (or a query parameter)
checked against a `KeyStore`.

Lookups go through a small cache on the gateway's clock, positive and
negative, keyed by the key's public id (never the secret): a busy key costs
one SHA-256 and a dict lookup, not a database round trip.  Concurrent misses
for one id share a single store query.  The presented key is always hashed
and compared with the stored hash in constant time, cached or not.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_plus

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.policies.auth.base import (
    BackendUnavailable,
    Identity,
    InvalidCredentials,
    challenge,
    first_header,
    header_value,
)
from twistgate.policies.auth.config import ApiKeyConfig
from twistgate.policies.auth.keys import KeyRecord, parse_key, same_hash

_log = Logger()
_MISSING = object()


class LookupCache:
    """Store answers (a record, or None for "no such key") for ``ttl`` seconds, at most ``size`` of them."""

    def __init__(self, clock: Any, ttl: float, size: int) -> None:
        self.clock = clock
        self.ttl = ttl
        self.size = size
        self._entries: "OrderedDict[str, Tuple[float, Optional[KeyRecord]]]" = OrderedDict()

    def get(self, key_id: str) -> Any:
        """The cached answer, or `_MISSING`."""
        entry = self._entries.get(key_id)
        if entry is None:
            return _MISSING
        if entry[0] <= self.clock.seconds():
            del self._entries[key_id]
            return _MISSING
        return entry[1]

    def put(self, key_id: str, record: Optional[KeyRecord]) -> None:
        if self.ttl <= 0:
            return
        self._entries[key_id] = (self.clock.seconds() + self.ttl, record)
        self._entries.move_to_end(key_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        self._entries.pop(key_id, None)


class ApiKeyAuthenticator:
    kind = "api_key"
    reads_forwarding = False  # its own credential only (`twistgate.policies.auth.policy`'s sight)

    def __init__(self, config: ApiKeyConfig, store: Any, clock: Any, usage: Optional[Dict[str, float]] = None) -> None:
        """:param usage: key id -> when it last authenticated a request (for ``/admin/keys``), kept by the caller."""
        self.config = config
        self.name = config.name
        self.store = store
        self.clock = clock
        self.cache = LookupCache(clock, config.cache_ttl, config.cache_size)
        self.usage: Dict[str, float] = usage if usage is not None else {}
        self._header = config.header.encode("ascii") if config.header else None
        self._query = config.query.encode("ascii") if config.query else None
        self._waiting: Dict[str, List[Deferred]] = {}
        params = {"realm": config.realm}
        if config.header:
            params["header"] = config.header
        if config.query:
            params["query"] = config.query
        self._challenge = challenge("ApiKey", **params)

    # -- the authenticator interface -------------------------------------

    def credentials(self, request: Any) -> Optional[str]:
        raw = first_header(request, self._header) if self._header else None
        if raw is None and self._query is not None and request.query:
            raw = _query_value(request.query, self._query)
        if raw is None:
            return None
        return raw.decode("latin-1").strip()

    def verify(self, request: Any, key: str) -> Any:
        key_id = parse_key(key)
        if key_id is None:
            raise InvalidCredentials("malformed key")
        cached = self.cache.get(key_id)
        if cached is not _MISSING:
            return self._check(cached, key)
        return self._lookup(key_id).addCallback(self._check, key)

    def strip(self, request: Any) -> None:
        if self._header is not None:
            request.headers.removeHeader(self._header)
        if self._query is not None and request.query:
            request.query = _without_param(request.query, self._query)

    def challenge(self, error: Optional[InvalidCredentials]) -> bytes:
        return self._challenge

    # -- management ------------------------------------------------------

    def forget(self, key_id: str) -> None:
        """Drop a cached answer (after a revocation through this gateway)."""
        self.cache.forget(key_id)

    # -- inside ----------------------------------------------------------

    def _lookup(self, key_id: str) -> "Deferred[Optional[KeyRecord]]":
        mine: Deferred = Deferred()
        waiters = self._waiting.get(key_id)
        if waiters is not None:
            waiters.append(mine)
            return mine
        self._waiting[key_id] = [mine]
        self.store.get(self.name, key_id).addBoth(self._looked_up, key_id)
        return mine

    def _looked_up(self, result: Any, key_id: str) -> None:
        waiters = self._waiting.pop(key_id, [])
        if isinstance(result, Failure):
            _log.warn(
                "api key store lookup failed for authenticator {authenticator}: {error}",
                authenticator=self.name,
                error=result.getErrorMessage() or result.type.__name__,
            )
            result = Failure(BackendUnavailable("the API key store is unavailable"))
        else:
            self.cache.put(key_id, result)
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _check(self, record: Optional[KeyRecord], key: str) -> Identity:
        if record is None:
            raise InvalidCredentials("unknown key")
        if not same_hash(record.key_hash, key):
            raise InvalidCredentials("wrong secret")
        if record.revoked_at is not None:
            raise InvalidCredentials("revoked key")
        if record.expires_at is not None and self.clock.seconds() >= record.expires_at:
            raise InvalidCredentials("expired key")
        self.usage[record.id] = self.clock.seconds()  # one entry per valid key: bounded by the store
        headers = ()
        if self.config.forward_consumer:
            value = header_value(record.consumer)
            if value is not None:
                headers = ((self.config.forward_consumer.encode("ascii"), value),)
        return Identity(
            consumer=record.consumer,
            authenticator=self.name,
            kind=self.kind,
            details={"authenticator": self.name, "type": self.kind, "consumer": record.consumer, "key_id": record.id},
            headers=headers,
        )


def _query_value(query: bytes, name: bytes) -> Optional[bytes]:
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name or unquote_plus(key.decode("latin-1")).encode("latin-1") == name:
            return unquote_plus(value.decode("latin-1")).encode("latin-1")
    return None


def _without_param(query: bytes, name: bytes) -> bytes:
    kept = [
        pair
        for pair in query.split(b"&")
        if unquote_plus(pair.partition(b"=")[0].decode("latin-1")).encode("latin-1") != name
    ]
    return b"&".join(kept)
