"""
A JWKS (RFC 7517 key set) fetched from the issuer's URL and kept fresh.

* fetched with the gateway's side client at start, then every ``refresh``
  seconds in the background (a `LoopingCall` on the gateway's clock);
* refetched when a token names a ``kid`` the set does not have (a rotation),
  but at most once per ``min_interval``, and one fetch at a time: a flood of
  made-up kids costs the issuer one request per interval;
* a failed fetch (down, timeout, not 200, not a key set) keeps the last good
  set; a good one replaces the set entirely, so a key removed by the issuer
  stops verifying at the next refresh;
* redirects are not followed, and nothing in a token (``jku``, ``x5u``,
  ``jwk``, ``x5c``) ever makes the gateway fetch or trust another key.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from twistgate._text import plural
from twistgate.policies.auth.jwt_keys import KeyProblem, VerificationKey, jwk_key

_log = Logger()
MAX_JWKS_BYTES = 1024 * 1024


class JwksError(Exception):
    """A fetch that did not give a usable key set."""


class KeySet:
    """The keys of one JWKS URL, by kid."""

    def __init__(
        self,
        url: str,
        http_client: Any,
        clock: Any,
        allowlist: Any,
        *,
        refresh: float,
        min_interval: float,
        timeout: float,
        name: str = "",
    ) -> None:
        self.url = url
        self.http_client = http_client
        self.clock = clock
        self.allowlist = frozenset(allowlist)
        self.refresh_interval = refresh
        self.min_interval = min_interval
        self.timeout = timeout
        self.name = name
        self.by_kid: Dict[str, VerificationKey] = {}
        self.without_kid: List[VerificationKey] = []
        self.loaded = False
        self.fetches = 0  # attempts, for tests and stats
        self._last_attempt: Optional[float] = None
        self._inflight: Optional[List[Deferred]] = None
        self._loop: Optional[LoopingCall] = None

    # -- lookups (synchronous) ---------------------------------------------

    def keys_for(self, kid: Optional[str]) -> Optional[List[VerificationKey]]:
        """The keys to try for a token's kid; None when the kid is unknown (or nothing is loaded)."""
        if not self.loaded:
            return None
        if kid is None:
            return list(self.by_kid.values()) + self.without_kid
        key = self.by_kid.get(kid)
        return [key] if key is not None else None

    # -- fetching --------------------------------------------------------

    def refetch(self) -> Optional["Deferred[None]"]:
        """
        Fetch again because a token named an unknown kid; None when a fetch
        happened less than ``min_interval`` ago (the answer is then "unknown").
        """
        if self._inflight is not None:
            return self._join()
        if self._last_attempt is not None and self.clock.seconds() - self._last_attempt < self.min_interval:
            return None
        return self.fetch()

    def fetch(self) -> "Deferred[None]":
        """Fetch now (or join the fetch in progress); never fails."""
        if self._inflight is not None:
            return self._join()
        self._inflight = []
        joined = self._join()
        self._last_attempt = self.clock.seconds()
        self.fetches += 1
        self._get().addBoth(self._fetched)
        return joined

    def _join(self) -> "Deferred[None]":
        d: Deferred = Deferred()
        assert self._inflight is not None
        self._inflight.append(d)
        return d

    def _get(self) -> "Deferred[bytes]":
        """The body of one GET, bounded in size and (with the clock) in time."""

        def body(response: Any) -> Any:
            if response.code != 200:
                raise JwksError(f"HTTP status {response.code}")
            return _read_limited(response, MAX_JWKS_BYTES)

        d = self.http_client.get(self.url, headers={b"Accept": [b"application/json"]}, allow_redirects=False)
        d.addCallback(body)
        timer = self.clock.callLater(self.timeout, d.cancel)  # cancels the body read too

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            elif isinstance(result, Failure):
                result = Failure(JwksError(f"no answer within {self.timeout:g}s"))
            return result

        return d.addBoth(stop_timer)

    def _fetched(self, outcome: Any) -> None:
        waiters, self._inflight = self._inflight or [], None
        try:
            if isinstance(outcome, Failure):
                raise JwksError(outcome.getErrorMessage() or outcome.type.__name__)
            self._install(outcome)
        except JwksError as error:
            _log.warn(
                "JWKS fetch for authenticator {authenticator} failed ({error}); "
                "keeping the last good key set ({count})",
                authenticator=self.name,
                error=str(error),
                count=plural(len(self.by_kid) + len(self.without_kid), "key"),
            )
        for waiter in waiters:
            waiter.callback(None)

    def _install(self, body: bytes) -> None:
        try:
            document = json.loads(body)
        except ValueError:
            raise JwksError("the response is not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JwksError("the response has no 'keys' list")
        by_kid: Dict[str, VerificationKey] = {}
        without_kid: List[VerificationKey] = []
        for index, entry in enumerate(entries):
            try:
                key = jwk_key(entry, self.allowlist)
            except KeyProblem as problem:
                _log.debug("JWKS key {index} skipped: {problem}", index=index, problem=str(problem))
                continue
            if key.kid is None:
                without_kid.append(key)
            elif key.kid not in by_kid:
                by_kid[key.kid] = key
        if not by_kid and not without_kid:
            raise JwksError("no usable signing key in the set")
        self.by_kid, self.without_kid, self.loaded = by_kid, without_kid, True

    # -- lifetime ----------------------------------------------------------

    def start(self) -> None:
        if self._loop is None:
            self._loop = LoopingCall(self.fetch)
            self._loop.clock = self.clock
            self._loop.start(self.refresh_interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


class _LimitedBody(Protocol):
    def __init__(self, done: Deferred, limit: int) -> None:
        self.done = done
        self.limit = limit
        self.parts: List[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            if not self.done.called:
                self.done.errback(JwksError("the key set is too large"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.done.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(JwksError("the connection broke while reading"))


def _read_limited(response: Any, limit: int) -> "Deferred[bytes]":
    if response.length == 0:
        return succeed(b"")
    holder: Dict[str, Any] = {}

    def cancel(d: Deferred) -> None:
        transport = getattr(holder.get("protocol"), "transport", None)
        if transport is not None:
            transport.stopProducing()

    done: Deferred = Deferred(cancel)
    protocol = _LimitedBody(done, limit)
    holder["protocol"] = protocol
    response.deliverBody(protocol)
    return done

