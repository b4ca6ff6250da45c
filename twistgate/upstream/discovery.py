"""
DNS discovery: targets given by host name are resolved (A and/or AAAA) by
the gateway and re-resolved every ``interval``; an SRV target
(``{srv: _http._tcp.users.service.consul}``) takes its addresses, ports,
weights and priorities from DNS (RFC 2782).  This is what makes Kubernetes
headless services and Consul DNS work.

Each refresh hands the whole set to the upstream, which keeps the state of
targets that stayed (health, breaker, in-flight requests) and lets requests
in flight on a removed target finish.  A lookup that fails, times out or
comes back empty keeps that name's last good set: DNS trouble never empties
an upstream.  Until a host name's first answer, the target stays as written
and the agent resolves it on connect.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.names import dns

from twistgate.config.model import TargetConfig
from twistgate.upstream.settings import DiscoveryConfig

_log = Logger()

#: SRV weights are scaled into 1..MAX_WEIGHT (hash rings grow with weights).
MAX_WEIGHT = 100


@attrs.frozen
class Resolved:
    """One address of a configured target, as DNS gave it."""

    config: TargetConfig
    address: Optional[str]  # None: unresolved, the agent resolves on connect
    port: int
    host: str  # the name for the Host header
    weight: int
    priority: int = 0


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def needs_dns(config: TargetConfig, discovery: Optional[DiscoveryConfig]) -> bool:
    """SRV targets always; host-name targets when the upstream has a ``discovery`` section."""
    return config.srv or (discovery is not None and not is_address(config.host))


def as_written(config: TargetConfig) -> Resolved:
    return Resolved(config=config, address=None, port=config.port, host=config.host, weight=config.weight)


def system_nameservers(path: str = "/etc/resolv.conf") -> List[Tuple[str, int]]:
    """The ``nameserver`` lines of resolv.conf (127.0.0.1:53 when there are none)."""
    found: List[Tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and is_address(parts[1].split("%")[0]):
                    found.append((parts[1].split("%")[0], 53))
    except OSError:
        pass
    return found or [("127.0.0.1", 53)]


def make_resolver(config: DiscoveryConfig, reactor: Any) -> Any:
    """A twisted.names resolver for the configured (or the system's) nameservers."""
    from twisted.names import client

    servers = list(config.nameservers) or system_nameservers()
    return client.Resolver(servers=servers, reactor=reactor)


class Discovery:
    """Resolves the DNS-backed targets of one upstream on a loop."""

    def __init__(
        self,
        config: DiscoveryConfig,
        targets: Sequence[TargetConfig],
        resolver: Any,
        clock: Any,
        on_update: Callable[[List[Resolved]], None],
        upstream: str = "",
    ) -> None:
        self.config = config
        self.targets = tuple(targets)
        self.resolver = resolver
        self.clock = clock
        self.on_update = on_update
        self.upstream = upstream
        # The last good answer per configured target (absent: none yet).
        self.known: Dict[TargetConfig, List[Resolved]] = {}
        self._loop: Optional[LoopingCall] = None
        self._refreshing: Optional[Deferred] = None

    def current(self) -> List[Resolved]:
        """The whole set as of the last answers: static targets, resolved ones, and host names not yet answered."""
        found: List[Resolved] = []
        for target in self.targets:
            if target in self.known:
                found.extend(self.known[target])
            elif not target.srv:
                found.append(as_written(target))
        return found

    def start(self) -> None:
        if self._loop is None:
            self._loop = LoopingCall(self.refresh)
            self._loop.clock = self.clock
            self._loop.start(self.config.interval, now=True).addErrback(
                lambda f: _log.failure("DNS discovery loop of {upstream} failed", f, upstream=self.upstream)
            )

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._refreshing is not None:
            self._refreshing.cancel()

    def refresh(self) -> "Deferred[None]":
        """Look every DNS-backed target up once; then hand the whole set over."""
        lookups = []
        for target in self.targets:
            if target.srv or not is_address(target.host):
                lookups.append(self._lookup_target(target))
        d = DeferredList(lookups, consumeErrors=True)
        self._refreshing = d

        def done(_: Any) -> None:
            self._refreshing = None
            self.on_update(self.current())

        return d.addCallback(done)

    def _lookup_target(self, target: TargetConfig) -> "Deferred[None]":
        d = self._service(target) if target.srv else self._host(target)

        def found(answer: List[Resolved]) -> None:
            if not answer:
                raise LookupError("no addresses in the answer")
            if sorted(map(_key, answer)) != sorted(map(_key, self.known.get(target, []))):
                _log.info(
                    "upstream {upstream}: {name} resolves to {addresses}",
                    upstream=self.upstream,
                    name=target.host,
                    addresses=", ".join(f"{r.address}:{r.port}" for r in answer),
                )
            self.known[target] = answer

        def failed(failure: Any) -> None:
            if failure.check(CancelledError):
                return  # stopped (shutdown): not a DNS problem
            _log.warn(
                "upstream {upstream}: DNS lookup of {name} failed ({reason}); keeping the last good set",
                upstream=self.upstream,
                name=target.host,
                reason=failure.getErrorMessage() or type(failure.value).__name__,
            )

        return d.addCallback(found).addErrback(failed)

    # -- lookups -----------------------------------------------------------

    def _addresses(self, name: str) -> "Deferred[List[str]]":
        """A and/or AAAA addresses of `name`; fails only when every lookup failed."""
        timeout = (self.config.timeout,)
        wanted = []
        if self.config.family in ("any", "ipv4"):
            wanted.append(self.resolver.lookupAddress(name, timeout=timeout))
        if self.config.family in ("any", "ipv6"):
            wanted.append(self.resolver.lookupIPV6Address(name, timeout=timeout))

        def combine(results: List[Tuple[bool, Any]]) -> List[str]:
            addresses: List[str] = []
            for ok, value in results:
                if ok:
                    addresses.extend(addresses_in(value[0]))
            if not addresses and not any(ok for ok, _ in results):
                results[0][1].raiseException()
            return sorted(set(addresses), key=addresses.index)

        return DeferredList(wanted, consumeErrors=True).addCallback(combine)

    def _host(self, target: TargetConfig) -> "Deferred[List[Resolved]]":
        def build(addresses: List[str]) -> List[Resolved]:
            return [
                Resolved(config=target, address=a, port=target.port, host=target.host, weight=target.weight)
                for a in addresses
            ]

        return self._addresses(target.host).addCallback(build)

    def _service(self, target: TargetConfig) -> "Deferred[List[Resolved]]":
        service_host = target.host.split(".", 2)[-1]  # _http._tcp.users.svc -> users.svc

        def got(result: Any) -> "Deferred[List[Resolved]]":
            answers, _, additional = result
            records = [r.payload for r in answers if r.type == dns.SRV]
            records = [r for r in records if str(r.target) not in ("", ".")]  # "." means: no service
            glue: Dict[str, List[str]] = {}
            for record in additional:
                if record.type in (dns.A, dns.AAAA) and self._family_ok(record.type):
                    glue.setdefault(str(record.name).lower(), []).extend(addresses_in([record]))
            ranks = {p: i for i, p in enumerate(sorted({r.priority for r in records}))}
            top = max((r.weight for r in records), default=0)
            lookups = []
            for record in records:
                name = str(record.target).lower()
                weight = srv_weight(record.weight, top)
                addresses = succeed(glue[name]) if name in glue else self._addresses(name)
                lookups.append(
                    addresses.addCallback(
                        lambda found, r=record, w=weight: [
                            Resolved(
                                config=target, address=a, port=r.port, host=service_host,
                                weight=w, priority=ranks[r.priority],
                            )  # fmt: skip
                            for a in found
                        ]
                    )
                )
            # A target name that does not resolve is left out; the others stand.
            return DeferredList(lookups, consumeErrors=True).addCallback(
                lambda parts: [x for ok, part in parts if ok for x in part]
            )

        return self.resolver.lookupService(target.host, timeout=(self.config.timeout,)).addCallback(got)

    def _family_ok(self, record_type: int) -> bool:
        family = self.config.family
        return family == "any" or (family == "ipv4") == (record_type == dns.A)


def _key(resolved: Resolved) -> Tuple[Any, ...]:
    return (resolved.address or "", resolved.port, resolved.weight, resolved.priority)


def addresses_in(records: Sequence[Any]) -> List[str]:
    """The addresses of the A and AAAA records among `records` (CNAMEs and others skipped)."""
    found = []
    for record in records:
        if record.type == dns.A:
            found.append(record.payload.dottedQuad())
        elif record.type == dns.AAAA:
            found.append(socket.inet_ntop(socket.AF_INET6, record.payload.address))
    return found


def srv_weight(weight: int, top: int) -> int:
    """RFC 2782 weights (0-65535) as balancer weights from 1 to MAX_WEIGHT."""
    if top <= MAX_WEIGHT:
        return max(1, weight)
    return max(1, round(weight * MAX_WEIGHT / top))
