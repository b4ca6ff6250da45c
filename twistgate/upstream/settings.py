"""
The resilience sections of an upstream and a route, as frozen values, and
their parsers (listed in `twistgate.config.sections`).

Everything is validated here, once: the request path only reads these
values (through `twistgate.upstream.policy`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import FrozenSet, List, Optional, Tuple

import attrs

from twistgate.config._node import Node
from twistgate.config.model import KiB, Location
from twistgate.upstream.health_config import (  # noqa: F401  (re-exported: the health-check config lives there)
    HEALTH_CHECK_COMMON_KEYS,
    HEALTH_CHECK_KEYS,
    HTTP_CHECK_KEYS,
    HealthCheckConfig,
    parse_health_check,
    read_http_check,
    status,
    status_ranges,
)

#: Failure kinds a retry may be made on, besides response statuses.
RETRY_CONDITIONS = ("connect_failure", "reset", "timeout")
DEFAULT_FAILURE_STATUSES: FrozenSet[int] = frozenset({502, 503, 504})
FAMILIES = ("any", "ipv4", "ipv6")

OUTLIER_KEYS = ("consecutive_failures", "statuses", "base_ejection_time", "max_ejection_time", "max_ejected")
BREAKER_KEYS = ("failure_threshold", "recovery_timeout", "half_open_requests", "success_threshold", "statuses")
RETRY_KEYS = (
    "attempts", "backoff", "max_backoff", "on", "budget", "budget_window", "budget_min_per_second", "replay_buffer",
)  # fmt: skip
ROUTE_RETRY_KEYS = ("attempts", "backoff", "max_backoff", "on", "replay_buffer", "non_idempotent")
ROUTE_TIMEOUT_KEYS = ("connect", "read", "total", "write")
DISCOVERY_KEYS = ("interval", "timeout", "nameservers", "family")



@attrs.frozen(kw_only=True)
class OutlierConfig:
    """``upstreams.X.outlier_detection``: passive ejection on consecutive failures."""

    consecutive_failures: int = 5
    statuses: FrozenSet[int] = DEFAULT_FAILURE_STATUSES
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejected: float = 0.5  # share of the upstream's targets
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class BreakerConfig:
    """``upstreams.X.circuit_breaker``: one breaker per target."""

    failure_threshold: int = 5
    recovery_timeout: float = 30.0
    half_open_requests: int = 1
    success_threshold: int = 1
    statuses: FrozenSet[int] = DEFAULT_FAILURE_STATUSES
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class RetryConfig:
    """``upstreams.X.retry``: how a failed attempt is tried again."""

    attempts: int = 3  # tries in all, the first included
    backoff: float = 0.05
    max_backoff: float = 1.0
    on: FrozenSet[str] = frozenset(RETRY_CONDITIONS)
    statuses: FrozenSet[int] = DEFAULT_FAILURE_STATUSES
    budget: float = 0.2
    budget_window: float = 10.0
    budget_min_per_second: int = 3
    replay_buffer: int = 64 * KiB
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class RouteRetryConfig:
    """``routes[].retry``: overrides of the upstream's retry for one route, and the opt-in for unsafe methods."""

    attempts: Optional[int] = None
    backoff: Optional[float] = None
    max_backoff: Optional[float] = None
    on: Optional[FrozenSet[str]] = None
    statuses: Optional[FrozenSet[int]] = None
    replay_buffer: Optional[int] = None
    non_idempotent: bool = False
    location: Location = attrs.field(default=Location(), eq=False)

    def applied_to(self, base: Optional[RetryConfig]) -> RetryConfig:
        """The upstream's retry (or the defaults) with this route's values on top."""
        base = base if base is not None else RetryConfig()
        changes = {
            key: value
            for key in ("attempts", "backoff", "max_backoff", "on", "statuses", "replay_buffer")
            if (value := getattr(self, key)) is not None
        }
        return attrs.evolve(base, **changes)


@attrs.frozen(kw_only=True)
class RouteTimeoutsConfig:
    """``routes[].timeouts``: the upstream's timeouts overridden for one route."""

    connect: Optional[float] = None
    read: Optional[float] = None
    total: Optional[float] = None
    write: Optional[float] = None
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class DiscoveryConfig:
    """``upstreams.X.discovery``: re-resolve host-name and SRV targets through DNS."""

    interval: float = 30.0
    timeout: float = 5.0
    nameservers: Tuple[Tuple[str, int], ...] = ()  # empty: the system's (/etc/resolv.conf)
    family: str = "any"  # any | ipv4 | ipv6
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class HashKeyConfig:
    """``upstreams.X.hash_key``: what consistent_hash hashes (``ip``, ``header:NAME``, ``cookie:NAME``)."""

    source: str = "ip"  # ip | header | cookie
    name: str = ""
    location: Location = attrs.field(default=Location(), eq=False)


# -- parsers -------------------------------------------------------------------


def parse_outlier_detection(node: Node) -> Optional[OutlierConfig]:
    fields = node.mapping(OUTLIER_KEYS)
    if fields is None:
        return None
    default = OutlierConfig()
    base = fields.read("base_ejection_time", Node.duration, default.base_ejection_time)
    longest = fields.read("max_ejection_time", Node.duration, max(default.max_ejection_time, base))
    if longest < base:
        fields["max_ejection_time"].issue(f"must be at least base_ejection_time ({base:g}s)")
    return OutlierConfig(
        consecutive_failures=fields.read(
            "consecutive_failures", lambda n: n.integer(min=1), default.consecutive_failures
        ),
        statuses=fields.read("statuses", statuses, default.statuses),
        base_ejection_time=base,
        max_ejection_time=longest,
        max_ejected=fields.read("max_ejected", percentage, default.max_ejected),
        location=node.location(at_key=True),
    )


def parse_circuit_breaker(node: Node) -> Optional[BreakerConfig]:
    fields = node.mapping(BREAKER_KEYS)
    if fields is None:
        return None
    default = BreakerConfig()
    return BreakerConfig(
        failure_threshold=fields.read("failure_threshold", lambda n: n.integer(min=1), default.failure_threshold),
        recovery_timeout=fields.read("recovery_timeout", Node.duration, default.recovery_timeout),
        half_open_requests=fields.read(
            "half_open_requests", lambda n: n.integer(min=1), default.half_open_requests
        ),
        success_threshold=fields.read("success_threshold", lambda n: n.integer(min=1), default.success_threshold),
        statuses=fields.read("statuses", statuses, default.statuses),
        location=node.location(at_key=True),
    )


def parse_retry(node: Node) -> Optional[RetryConfig]:
    fields = node.mapping(RETRY_KEYS)
    if fields is None:
        return None
    default = RetryConfig()
    on = fields.read("on", retry_on, None)
    backoff = fields.read("backoff", Node.duration, default.backoff)
    longest = fields.read("max_backoff", Node.duration, max(default.max_backoff, backoff))
    if longest < backoff:
        fields["max_backoff"].issue(f"must be at least backoff ({backoff:g}s)")
    return RetryConfig(
        attempts=fields.read("attempts", lambda n: n.integer(min=1), default.attempts),
        backoff=backoff,
        max_backoff=longest,
        on=on[0] if on is not None else default.on,
        statuses=on[1] if on is not None else default.statuses,
        budget=fields.read("budget", percentage, default.budget),
        budget_window=fields.read("budget_window", Node.duration, default.budget_window),
        budget_min_per_second=fields.read(
            "budget_min_per_second", lambda n: n.integer(min=0), default.budget_min_per_second
        ),
        replay_buffer=fields.read("replay_buffer", Node.size, default.replay_buffer),
        location=node.location(at_key=True),
    )


def parse_route_retry(node: Node) -> Optional[RouteRetryConfig]:
    fields = node.mapping(ROUTE_RETRY_KEYS)
    if fields is None:
        return None
    on = fields.read("on", retry_on, None)
    return RouteRetryConfig(
        attempts=fields.read("attempts", lambda n: n.integer(min=1), None),
        backoff=fields.read("backoff", Node.duration, None),
        max_backoff=fields.read("max_backoff", Node.duration, None),
        on=on[0] if on is not None else None,
        statuses=on[1] if on is not None else None,
        replay_buffer=fields.read("replay_buffer", Node.size, None),
        non_idempotent=fields.read("non_idempotent", Node.boolean, False),
        location=node.location(at_key=True),
    )


def parse_route_timeouts(node: Node) -> Optional[RouteTimeoutsConfig]:
    fields = node.mapping(ROUTE_TIMEOUT_KEYS)
    if fields is None:
        return None
    return RouteTimeoutsConfig(
        connect=fields.read("connect", Node.duration, None),
        read=fields.read("read", Node.duration, None),
        total=fields.read("total", Node.duration, None),
        write=fields.read("write", Node.duration, None),
        location=node.location(at_key=True),
    )


def parse_discovery(node: Node) -> Optional[DiscoveryConfig]:
    fields = node.mapping(DISCOVERY_KEYS)
    if fields is None:
        return None
    default = DiscoveryConfig()
    return DiscoveryConfig(
        interval=fields.read("interval", Node.duration, default.interval),
        timeout=fields.read("timeout", Node.duration, default.timeout),
        nameservers=fields.read("nameservers", nameservers, default.nameservers),
        family=fields.read("family", lambda n: n.choice(FAMILIES), default.family),
        location=node.location(at_key=True),
    )


def parse_hash_key(node: Node) -> Optional[HashKeyConfig]:
    text = node.string()
    if text is None:
        return None
    try:
        key = hash_key_from_text(text)
    except ValueError as error:
        node.issue(str(error))
        return None
    return attrs.evolve(key, location=node.location())


def hash_key_from_text(text: str) -> HashKeyConfig:
    """``ip``, ``header:NAME`` or ``cookie:NAME`` as a `HashKeyConfig`; `ValueError` otherwise."""
    source, _, name = text.partition(":")
    source = source.strip().lower()
    if source == "ip" and not name:
        return HashKeyConfig()
    if source in ("header", "cookie") and name.strip():
        return HashKeyConfig(source=source, name=name.strip())
    raise ValueError(f"expected ip, header:NAME or cookie:NAME, got {text!r}")


# -- value readers ---------------------------------------------------------------


def percentage(node: Node) -> Optional[float]:
    """``20%`` as 0.2 (0% to 100%)."""
    text = node.string() if node.kind == "string" else None
    if text is None:
        if node.kind != "string":
            node.issue(f"expected a percentage like 20%, got {node.describe()}")
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
    if match is None or float(match.group(1)) > 100:
        node.issue(f"expected a percentage from 0% to 100% like 20%, got {text!r}")
        return None
    return float(match.group(1)) / 100


def statuses(node: Node) -> Optional[FrozenSet[int]]:
    found = [status(item) for item in node.sequence() or ()]
    return frozenset(s for s in found if s is not None)


def retry_on(node: Node) -> Optional[Tuple[FrozenSet[str], FrozenSet[int]]]:
    """The conditions (connect_failure, reset, timeout) and statuses a retry is made on."""
    conditions: List[str] = []
    codes: List[int] = []
    for item in node.sequence() or ():
        if item.kind == "integer":
            code = status(item)
            if code is not None:
                codes.append(code)
        else:
            condition = item.choice(RETRY_CONDITIONS + ("5xx",))
            if condition == "5xx":
                codes.extend(range(500, 600))
            elif condition is not None:
                conditions.append(condition)
    return frozenset(conditions), frozenset(codes)


def nameservers(node: Node) -> Optional[Tuple[Tuple[str, int], ...]]:
    """``10.0.0.2``, ``127.0.0.1:8600``, ``[::1]:53``: DNS servers by address."""
    found: List[Tuple[str, int]] = []
    for item in node.sequence(non_empty=True) or ():
        text = item.string()
        if text is None:
            continue
        try:
            found.append(split_nameserver(text))
        except ValueError as e:
            item.issue(str(e))
    return tuple(found)


def split_nameserver(text: str) -> Tuple[str, int]:
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected an address like 10.0.0.2:53 or [::1]:53, got {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"a nameserver is an IP address with an optional port (like 127.0.0.1:8600), got {text!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"a nameserver port must be from 1 to 65535, got {text!r}")
    return host, number
