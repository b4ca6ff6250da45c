"""
One upstream server and its live state: health, breaker, ejection, load and
latency.  The state lives here, on the target, so an `Upstream` reused
across configuration generations keeps it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.web.client import URI

from twistgate.config.model import TargetConfig
from twistgate.upstream.balancer import LatencyAverage
from twistgate.upstream.breaker import CLOSED, CircuitBreaker
from twistgate.upstream.outlier import OutlierState

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Added to a backup target's priority: after every DNS SRV priority (0-65535).
BACKUP_TIER = 1 << 16


def authority(host: str, port: int, scheme: str) -> str:
    """``host[:port]`` as in a URL or Host header (IPv6 in brackets; default port left out)."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"


class Target:
    """
    One server to send requests to.

    :ivar url: the target as configured (``http://users.internal:8080``).
    :ivar address: the IP address it was resolved to by discovery, or None
        when the agent resolves (or the URL holds an address already).
    :ivar host_header: what goes in ``Host``: always the configured name.
    :ivar ident: a stable name (url, plus the address and port when
        discovered), for hash rings and for matching re-resolved sets.
    """

    __slots__ = (
        "config", "name", "url", "base", "host_header", "uri", "key", "endpoint", "address", "port", "ident", "label",
        "weight", "priority", "healthy", "probe_successes", "probe_failures", "breaker", "outlier",
        "in_flight", "latency", "last_error", "cw", "endpoints",
    )  # fmt: skip

    def __init__(
        self,
        config: TargetConfig,
        *,
        address: Optional[str] = None,
        port: Optional[int] = None,
        host: Optional[str] = None,
        weight: Optional[int] = None,
        priority: int = 0,
    ) -> None:
        self.config = config
        self.address = address
        self.port = port if port is not None else config.port
        self.name = name = host if host is not None else config.host
        named = authority(name, self.port, config.scheme)
        self.url = f"{config.scheme}://{named}"
        self.host_header = named.encode("idna" if not name.isascii() else "ascii")
        connect_to = authority(address, self.port, config.scheme) if address is not None else named
        self.base = f"{config.scheme}://{connect_to}".encode("ascii")
        self.uri = URI.fromBytes(self.base + b"/")
        self.key: Any = (self.uri.scheme, self.uri.host, self.uri.port)
        self.endpoint: Any = None  # set by the Upstream that owns the agent
        self.endpoints: Dict[float, Any] = {}  # copies for other connect timeouts (route overrides)
        self.ident = self.url if address is None else f"{self.url}@{connect_to}"
        self.label = self.url if address is None else f"{self.url} ({address})"
        self.weight = weight if weight is not None else config.weight
        # Lower is preferred: a backup only serves while no target of a
        # better tier is available (twistgate.upstream.group).
        self.priority = priority + (BACKUP_TIER if config.backup else 0)
        # active health (health.py): healthy until probes say otherwise
        self.healthy = True
        self.probe_successes = 0
        self.probe_failures = 0
        self.breaker: Optional[CircuitBreaker] = None
        self.outlier = OutlierState()
        self.in_flight = 0
        self.latency = LatencyAverage()
        self.last_error: Optional[str] = None
        self.cw = 0  # smooth round robin's current weight

    def __repr__(self) -> str:
        return f"<Target {self.label}>"

    @property
    def available(self) -> bool:
        """Healthy, not ejected, and the breaker would let a request through."""
        breaker = self.breaker
        return (
            self.healthy
            and self.outlier.ejected_until is None
            and (breaker is None or breaker.allows())
        )

    def snapshot(self, now: float) -> Dict[str, Any]:
        """The target's state as plain JSON values (admin API, metrics, dashboard)."""
        until = self.outlier.ejected_until
        return {
            "url": self.url,
            "address": self.address,
            "weight": self.weight,
            "backup": self.config.backup,
            "healthy": self.healthy,
            "breaker": self.breaker.state if self.breaker is not None else CLOSED,
            "in_flight": self.in_flight,
            "ejected": until is not None,
            "ejected_until": until,
            "ewma_ms": round(self.latency.current(now) * 1000, 3) if self.latency.samples else None,
            "last_error": self.last_error,
        }
