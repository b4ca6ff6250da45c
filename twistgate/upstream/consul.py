"""
Consul discovery: ``targets_from: {type: consul, url, service, interval,
tag?, datacenter?, token?}``.

The healthy instances come from Consul's health API,
``GET /v1/health/service/<service>?passing=1`` (``tag``, ``dc``), each
entry's ``Service.Address`` (or ``Node.Address`` when that is empty) and
``Service.Port``, weighted by ``Service.Weights.Passing``.  When Consul
answers with ``X-Consul-Index`` the next request is a blocking query
(``index`` + ``wait`` = the interval): it returns as soon as the catalogue
changes, so traffic moves within a moment, and otherwise after ``wait``.
The index rules of Consul's documentation apply: an index that goes
backwards starts over with a plain query, one below 1 counts as 1, and a
short pause between queries keeps a busy catalogue from being polled in a
tight loop.  Without the header, plain queries are made every interval.

Any failure (Consul down, an error status, an ACL refusal, a body that is
not the documented JSON, no answer in time) keeps the last good list and
retries after the interval.  The token goes in ``X-Consul-Token``, never
in the URL or the logs.  Requests use the gateway's side HTTP client, with
redirects off.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit

import treq
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistgate.fields import first_int
from twistgate.plugins.extension_points import ExtensionContext
from twistgate.plugins.options import with_options
from twistgate.upstream.discovery import Resolved
from twistgate.upstream.failures import is_cancellation
from twistgate.upstream.targets_from import DiscoverySupport, resolved_from_urls, urls_of

__all__ = ["ConsulDiscovery", "ConsulError", "ConsulOptions", "consul", "parse_health_entries"]

#: Consul caps a blocking query's wait at 10 minutes.
MAX_WAIT = 600.0
#: The least time between two blocking queries (Consul's advice: rate limit them).
MIN_GAP = 1.0


class ConsulError(Exception):
    """Consul could not be asked, or did not answer as documented."""


@dataclasses.dataclass(frozen=True)
class ConsulOptions:
    """The options of ``targets_from: {type: consul}``."""

    url: str
    service: str
    tag: Optional[str] = None
    datacenter: Optional[str] = None
    token: Optional[str] = dataclasses.field(default=None, repr=False)
    scheme: Literal["http", "https"] = "http"  # of the targets
    blocking: bool = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: expected Consul's address like http://127.0.0.1:8500, got {self.url!r}")
        if parts.query or parts.fragment or parts.username:
            raise ValueError(f"url: no query, fragment or credentials (use 'token'), got {self.url!r}")
        if not self.service.strip() or "/" in self.service:
            raise ValueError(f"service: expected a Consul service name, got {self.service!r}")


def parse_health_entries(entries: Any, scheme: str = "http") -> List[Resolved]:
    """
    The targets in a ``/v1/health/service`` answer: a list of ``{Node,
    Service, Checks}`` entries.  Entries with a failing check are left out
    (as ``passing=1`` does), so are those without an address or port.

    :raises ConsulError: the answer is not such a list.
    """
    if not isinstance(entries, list):
        raise ConsulError(f"expected a JSON list of service entries, got {type(entries).__name__}")
    urls: List[str] = []
    weights: List[int] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Service"), dict):
            raise ConsulError("a service entry without a 'Service' object")
        service = entry["Service"]
        node: Dict[str, Any] = entry["Node"] if isinstance(entry.get("Node"), dict) else {}
        checks = entry.get("Checks") or []
        if any(isinstance(c, dict) and c.get("Status", "passing") != "passing" for c in checks):
            continue
        address = service.get("Address") or node.get("Address")
        port = service.get("Port")
        if not isinstance(address, str) or not address or not isinstance(port, int) or not 0 < port < 65536:
            continue
        shown = f"[{address}]" if ":" in address else address
        urls.append(f"{scheme}://{shown}:{port}")
        passing = (service.get("Weights") or {}).get("Passing", 1)
        weights.append(passing if isinstance(passing, int) and passing > 0 else 1)
    try:
        return resolved_from_urls(urls, weights)
    except Exception as error:
        raise ConsulError(f"unusable address in the answer: {error}") from None


class ConsulDiscovery:
    """One service's healthy instances, by plain or blocking queries."""

    def __init__(self, options: ConsulOptions, client: Any, clock: Any, interval: float, timeout: float) -> None:
        self.options = options
        self.client = client
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.wait = min(interval, MAX_WAIT)
        self.index: Optional[int] = None  # X-Consul-Index of the last answer; None: plain query next
        base = options.url.rstrip("/")
        self.endpoint = f"{base}/v1/health/service/{quote(options.service, safe='')}"

    def query(self) -> Tuple[str, float]:
        """The URL of the next request, and how long it may take."""
        params: List[Tuple[str, str]] = [("passing", "1")]
        if self.options.tag:
            params.append(("tag", self.options.tag))
        if self.options.datacenter:
            params.append(("dc", self.options.datacenter))
        bound = self.timeout
        if self.options.blocking and self.index is not None:
            params += [("index", str(self.index)), ("wait", f"{int(self.wait * 1000)}ms")]
            bound += self.wait + self.wait / 16  # Consul adds up to wait/16 of jitter
        return f"{self.endpoint}?{urlencode(params)}", bound

    def fetch(self) -> "Deferred[List[Resolved]]":
        url, bound = self.query()
        headers: Dict[bytes, List[bytes]] = {b"Accept": [b"application/json"]}
        if self.options.token:
            headers[b"X-Consul-Token"] = [self.options.token.encode("utf-8")]
        d = self.client.get(url, headers=headers, allow_redirects=False)
        d.addCallback(self._answered)
        expired = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self.clock.callLater(bound, expire)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure) and is_cancellation(result):
                return Failure(ConsulError(f"no answer within {bound:g}s"))
            return result

        return d.addBoth(settled)

    def _answered(self, response: Any) -> "Deferred[List[Resolved]]":
        index = first_int(response.headers.getRawHeaders(b"X-Consul-Index"))

        def parse(body: bytes) -> List[Resolved]:
            if response.code != 200:
                self.index = None
                hint = " (check the token's ACL)" if response.code == 403 else ""
                text = body[:200].decode("utf-8", "replace").strip()
                raise ConsulError(f"Consul answered {response.code}{hint}: {text}")
            try:
                entries = json.loads(body)
            except ValueError as error:
                raise ConsulError(f"the answer is not JSON: {error}") from None
            resolved = parse_health_entries(entries, self.options.scheme)
            self._note_index(index)
            return resolved

        return treq.content(response).addCallback(parse)

    def _note_index(self, index: Optional[int]) -> None:
        if index is None:
            self.index = None  # no blocking queries here: poll
        elif self.index is not None and index < self.index:
            self.index = None  # went backwards (a new leader, a snapshot restore): start over
        else:
            self.index = max(1, index)

    def next_delay(self, ok: bool) -> float:
        """Right away (after `MIN_GAP`) in blocking mode; after the interval when polling or failing."""
        if ok and self.options.blocking and self.index is not None:
            return min(MIN_GAP, self.interval)
        return self.interval

    def targets(self) -> "Deferred[List[str]]":
        """``twistgate.discovery``'s method: the instances' URLs."""
        return self.fetch().addCallback(urls_of)


@with_options(ConsulOptions)
def consul(options: Mapping[str, Any], context: ExtensionContext) -> ConsulDiscovery:
    support = context.internal if isinstance(context.internal, DiscoverySupport) else DiscoverySupport(10.0, 10.0)
    if context.http_client is None:
        raise ValueError("consul discovery needs the gateway's HTTP client")
    return ConsulDiscovery(ConsulOptions(**options), context.http_client, context.clock, support.interval, support.timeout)
