"""
The workers' numbers as the host's: pure functions over what each worker's
private admin socket answered.

Metrics (the Prometheus text of each worker):

* counters, histograms and summaries add up sample by sample (histogram
  buckets have the same bounds everywhere, so merged buckets are exact);
  a worker that ended is carried over at its last scraped values, so a host
  counter never goes down when a worker is restarted;
* ``*_created`` is the earliest;
* gauges of the host's live state add up (requests in flight, open
  connections, in flight per target); a target is healthy only if every
  worker sees it healthy, and its breaker is in the worst state any worker
  has it in (open, then half open, then closed);
* the configuration gauges and reload counters are the supervisor's own;
* any other gauge (a plugin's) gets a ``worker`` label: summing it could
  mean nothing.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

SUMMED_GAUGES = frozenset({
    "twistgate_requests_in_flight", "twistgate_open_connections", "twistgate_upstream_target_in_flight",
})
MIN_GAUGES = frozenset({"twistgate_upstream_target_healthy"})
MAX_GAUGES = frozenset({"twistgate_config_generations_live"})
FIRST_ONLY = frozenset({"twistgate_build_info", "twistgate_build"})
#: Families the supervisor reports itself (one reload history for the host).
HOST_OWNED = frozenset({
    "twistgate_config_generation", "twistgate_config_reloads",
    "twistgate_config_last_reload_successful", "twistgate_config_last_reload_success_timestamp_seconds",
})
def host_owned(name: str) -> bool:
    """A family the supervisor reports (with its ``_created`` companion)."""
    return name in HOST_OWNED or (name.endswith("_created") and name[: -len("_created")] in HOST_OWNED)


BREAKER = "twistgate_upstream_breaker_state"
BREAKER_ORDER = ("open", "half_open", "closed")
ADDED_TYPES = frozenset({"counter", "histogram", "summary"})

Key = Tuple[str, Tuple[Tuple[str, str], ...]]


class Family:
    __slots__ = ("name", "type", "documentation", "values")

    def __init__(self, name: str, type: str, documentation: str) -> None:
        self.name = name
        self.type = type
        self.documentation = documentation
        self.values: Dict[Key, float] = {}


def parse(text: str) -> Dict[str, Family]:
    families: Dict[str, Family] = {}
    for parsed in text_string_to_metric_families(text):
        family = families[parsed.name] = Family(parsed.name, parsed.type, parsed.documentation)
        for sample in parsed.samples:
            family.values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return families


def carried(families: Dict[str, Family]) -> Dict[str, Family]:
    """The part of an ended worker's metrics that the host keeps: its counts."""
    kept = {}
    for name, family in families.items():
        if family.type in ADDED_TYPES and not host_owned(name):
            kept[name] = family
    return kept


def _combine(into: Family, family: Family, how: str, worker: Optional[str]) -> None:
    for (sample, labels), value in family.values.items():
        if worker is not None:
            labels = tuple(sorted(labels + (("worker", worker),)))
        key = (sample, labels)
        if key not in into.values:
            into.values[key] = value
        elif how == "sum":
            into.values[key] += value
        elif how == "min":
            into.values[key] = min(into.values[key], value)
        elif how == "max":
            into.values[key] = max(into.values[key], value)


def _how(family: Family) -> str:
    name = family.name
    if family.type in ADDED_TYPES:
        return "sum"
    if name.endswith("_created"):
        return "min"
    if name in SUMMED_GAUGES:
        return "sum"
    if name in MIN_GAUGES:
        return "min"
    if name in MAX_GAUGES:
        return "max"
    if name in FIRST_ONLY or family.type == "info":
        return "first"
    return "by_worker"


def merge(workers: Iterable[Tuple[str, Dict[str, Family]]]) -> Dict[str, Family]:
    """``(worker label, families)`` of every worker (and of ended ones, carried) as one set."""
    merged: Dict[str, Family] = {}
    breakers: List[Family] = []
    for label, families in workers:
        for name, family in families.items():
            if host_owned(name):
                continue
            if name == BREAKER:
                breakers.append(family)
                continue
            how = _how(family)
            into = merged.get(name)
            if into is None:
                into = merged[name] = Family(name, family.type, family.documentation)
            _combine(into, family, "first" if how == "first" else ("sum" if how == "by_worker" else how),
                     label if how == "by_worker" else None)
    if breakers:
        merged[BREAKER] = _worst_breakers(breakers)
    return merged


def _worst_breakers(families: List[Family]) -> Family:
    worst: Dict[Tuple[Tuple[str, str], ...], int] = {}
    for family in families:
        for (_, labels), value in family.values.items():
            if value != 1:
                continue
            target = tuple(kv for kv in labels if kv[0] != "state")
            state = dict(labels).get("state", "closed")
            rank = BREAKER_ORDER.index(state) if state in BREAKER_ORDER else len(BREAKER_ORDER)
            worst[target] = min(worst.get(target, rank), rank)
    out = Family(BREAKER, families[0].type, families[0].documentation)
    for target, rank in worst.items():
        for i, state in enumerate(BREAKER_ORDER):
            out.values[(BREAKER, tuple(sorted(target + (("state", state),))))] = 1.0 if i == rank else 0.0
    return out


class MergedCollector:
    """Hands merged families to a registry, so `generate_latest` writes valid exposition text."""

    def __init__(self, families: Dict[str, Family]) -> None:
        self.families = families

    def describe(self) -> List[Any]:
        return []

    def collect(self) -> Iterable[Metric]:
        for name in sorted(self.families):
            family = self.families[name]
            metric = Metric(name, family.documentation, family.type)
            for (sample, labels), value in sorted(self.families[name].values.items()):
                metric.add_sample(sample, dict(labels), value)
            yield metric


# -- JSON answers --------------------------------------------------------------


def upstreams(answers: List[Tuple[int, Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """``/admin/upstreams`` of every worker as the host's: one entry per target, with each worker's view."""
    order: List[str] = []
    groups: Dict[str, Dict[str, Any]] = {}
    for index, answer in answers:
        for upstream in answer.get("upstreams", ()):
            name = upstream["name"]
            group = groups.get(name)
            if group is None:
                order.append(name)
                group = groups[name] = {k: v for k, v in upstream.items() if k not in ("targets", "in_flight", "healthy_targets")}
                group["targets"] = {}
                group["in_flight"] = None
            if upstream.get("in_flight") is not None:
                group["in_flight"] = (group["in_flight"] or 0) + upstream["in_flight"]
            for target in upstream.get("targets", ()):
                url = target["url"]
                host = group["targets"].get(url)
                if host is None:
                    host = group["targets"][url] = dict(target, workers={})
                    host["in_flight"] = 0
                host["workers"][str(index)] = {
                    k: target.get(k) for k in ("healthy", "breaker", "in_flight", "ejected", "draining", "ewma_ms", "last_error")
                }
                host["healthy"] = host.get("healthy", True) and target.get("healthy", True) and all(
                    w.get("healthy", True) for w in host["workers"].values()
                )
                host["in_flight"] += target.get("in_flight") or 0
                host["ejected"] = any(w.get("ejected") for w in host["workers"].values())
                host["breaker"] = _worst_state(w.get("breaker") for w in host["workers"].values())
                views = list(host["workers"].values())
                host["draining"] = any(w.get("draining") for w in views)
                latencies = [w["ewma_ms"] for w in views if w.get("ewma_ms") is not None]
                host["ewma_ms"] = round(sum(latencies) / len(latencies), 3) if latencies else None
                host["last_error"] = next((w["last_error"] for w in views if w.get("last_error")), None)
    out = []
    for name in order:
        group = groups[name]
        targets = list(group["targets"].values())
        group["targets"] = targets
        group["healthy_targets"] = sum(1 for t in targets if t.get("healthy", True))
        out.append(group)
    return out


def _worst_state(states: Iterable[Any]) -> Any:
    """The worst breaker state, spelled as the workers spell it."""
    seen = {str(s).replace("-", "_"): s for s in states if s is not None}
    for state in BREAKER_ORDER:
        if state in seen:
            return seen[state]
    return next(iter(seen.values()), "closed")
