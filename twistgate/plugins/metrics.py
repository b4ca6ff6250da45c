"""
``context.metrics``: Prometheus metrics of a plugin, on the gateway's own
``/metrics`` (its private registry), next to ``twistgate_requests``.

Each metric is named ``twistgate_plugin_<plugin>_<name>``, so plugins never
collide with each other or with the gateway.  The objects are
prometheus_client's own (``.labels(...).inc()``, ``.observe(...)``,
``.set(...)``).  Label them as the gateway does: ``route`` with
``request.route.name`` (the same values as the gateway's metrics, so a
query can join or divide them), and never with unbounded values (client
addresses, raw paths, tenant ids from headers) unless you bound them.

Metrics belong to the gateway, not to one configuration: a reload calls the
factory again, and asking again for the same metric (same kind, same
labels) gives the same object, with its counts.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Sequence, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DEFAULT_BUCKETS", "PluginMetrics"]

#: The gateway's latency buckets (seconds), the default for histograms.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def metric_part(text: str) -> str:
    """A plugin name as part of a metric name: ``tenant-quota`` -> ``tenant_quota``."""
    part = re.sub(r"[^a-zA-Z0-9_]", "_", text)
    return part if part[:1].isalpha() or part[:1] == "_" else f"_{part}"


class PluginMetrics:
    """
    The metrics of plugin `plugin` (see the module docstring).

    :ivar registry: the `CollectorRegistry` they are in (the gateway's);
        tests read values with ``registry.get_sample_value(name, labels)``.
    """

    def __init__(
        self, plugin: str, registry: Optional[CollectorRegistry] = None, known: Optional[Dict[str, Any]] = None
    ) -> None:
        self.plugin = plugin
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._known = known if known is not None else {}
        self.prefix = f"twistgate_plugin_{metric_part(plugin)}_"

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter ``twistgate_plugin_<plugin>_<name>_total``: ``.inc()``, or ``.labels(route=...).inc()``."""
        return self._metric("counter", name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge: ``.set(value)``, ``.inc()``, ``.dec()``."""
        return self._metric("gauge", name, documentation, labels)

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        """A histogram (``.observe(seconds)``), by default on the gateway's latency buckets."""
        return self._metric("histogram", name, documentation, labels, tuple(buckets))

    def _metric(self, kind: str, name: str, documentation: str, labels: Sequence[str], buckets: Tuple[float, ...] = ()) -> Any:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: use letters, digits and underscores")
        if not documentation:
            raise ValueError(f"metric {name!r} needs a description (Prometheus shows it as HELP)")
        labels = tuple(labels)
        for label in labels:
            if not _NAME.match(label) or label.startswith("__"):
                raise ValueError(f"metric {name!r}: invalid label name {label!r}")
        full = self.prefix + (name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name)
        shape = (kind, labels, buckets)
        existing = self._known.get(full)
        if existing is not None:
            if existing[0] != shape:
                was_kind, was_labels, _ = existing[0]
                raise ValueError(
                    f"metric {full!r} already exists as a {was_kind} with labels {list(was_labels)}: "
                    f"it cannot become a {kind} with labels {list(labels)} without a restart"
                )
            return existing[1]
        extra = {"buckets": buckets} if kind == "histogram" else {}
        metric = _KINDS[kind](full, documentation, labels, registry=self.registry, **extra)
        self._known[full] = (shape, metric)
        return metric
