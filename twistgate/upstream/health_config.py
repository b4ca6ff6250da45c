"""
``upstreams.X.health_check``: its frozen config and parser.  The keys in
`HEALTH_CHECK_COMMON_KEYS` are the gateway's (schedule and thresholds); the
others belong to the check named by ``type``: ``http`` (the default:
``path``, ``expected_statuses``), ``tcp``, or a ``twistgate.health_checks``
entry point with the options it declares (twistgate.plugins.options).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import attrs

from twistgate.config._node import Fields, Node
from twistgate.config.model import Location
from twistgate.plugins.extension_points import HEALTH_CHECKS, ExtensionChoice, current_registry, resolve
from twistgate.plugins.options import peek, read_options

#: The keys of ``health_check`` the gateway reads itself, whatever the type;
#: the rest are the check's own options (``http``: path, expected_statuses).
HEALTH_CHECK_COMMON_KEYS = ("type", "interval", "timeout", "jitter", "healthy_threshold", "unhealthy_threshold")
HTTP_CHECK_KEYS = ("path", "expected_statuses")
HEALTH_CHECK_KEYS = HEALTH_CHECK_COMMON_KEYS + HTTP_CHECK_KEYS
_STATUS_RANGE = re.compile(r"\s*([1-5]\d\d)\s*-\s*([1-5]\d\d)\s*")


@attrs.frozen(kw_only=True)
class HealthCheckConfig:
    """
    ``upstreams.X.health_check``: active probes of every target.  ``type``
    names the check (``http``, ``tcp`` or a ``twistgate.health_checks``
    entry point); `check` is it with its options (None for ``http``: it is
    made from `path` and `expected_statuses`).
    """

    path: str = "/"
    interval: float = 10.0
    timeout: float = 2.0
    jitter: Optional[float] = None  # None: a tenth of the interval
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected_statuses: Tuple[Tuple[int, int], ...] = ((200, 399),)  # inclusive ranges
    type: str = "http"
    check: Optional[ExtensionChoice] = None
    location: Location = attrs.field(default=Location(), eq=False)

    @property
    def effective_jitter(self) -> float:
        return self.interval / 10 if self.jitter is None else self.jitter

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expected_statuses)


def parse_health_check(node: Node) -> Optional[HealthCheckConfig]:
    if node.kind != "mapping":
        node.mapping(HEALTH_CHECK_KEYS)  # reports what was written instead
        return None
    count = len(node.issues.found)
    type_node = peek(node, "type")
    if type_node is not None:
        extension = resolve(type_node, HEALTH_CHECKS)
        if extension is None:
            return None
    else:
        extension = current_registry().lookup(HEALTH_CHECKS, "http")
    read = read_options(node, extension.options, HEALTH_CHECK_COMMON_KEYS)
    if read is None:
        return None
    fields, options = read
    default = HealthCheckConfig()
    interval = fields.read("interval", Node.duration, default.interval)
    timeout = fields.read("timeout", Node.duration, min(default.timeout, interval / 2))
    if timeout >= interval:
        fields["timeout"].issue(f"must be shorter than the interval ({interval:g}s)")
    location = node.location(at_key=True)
    config = HealthCheckConfig(
        interval=interval,
        timeout=timeout,
        jitter=fields.read("jitter", lambda n: n.duration(positive=False), None),
        healthy_threshold=fields.read("healthy_threshold", lambda n: n.integer(min=1), default.healthy_threshold),
        unhealthy_threshold=fields.read(
            "unhealthy_threshold", lambda n: n.integer(min=1), default.unhealthy_threshold
        ),
        type=extension.name,
        path=(options or {}).get("path", default.path),
        expected_statuses=(options or {}).get("expected_statuses", default.expected_statuses),
        # The http check is rebuilt from path and expected_statuses (as for a config made in code).
        check=None if extension.builtin and extension.name == "http" else ExtensionChoice(
            extension=extension, options=options or {}, location=location
        ),
        location=location,
    )
    return config if options is not None and len(node.issues.found) == count else None


def read_http_check(fields: Fields) -> Optional[Dict[str, Any]]:
    """The options of the built-in ``http`` check: ``path`` (required) and ``expected_statuses``."""
    path = fields.read("path", Node.string, None)
    if path is not None and not path.startswith("/"):
        fields["path"].issue(f"must start with '/', got {path!r}")
        path = None
    expected = fields.read("expected_statuses", status_ranges, HealthCheckConfig().expected_statuses)
    return {"path": path, "expected_statuses": expected} if path is not None else None


def status(node: Node) -> Optional[int]:
    value = node.integer(min=100)
    if value is not None and value > 599:
        node.issue(f"expected an HTTP status from 100 to 599, got {value}")
        return None
    return value


def status_ranges(node: Node) -> Optional[Tuple[Tuple[int, int], ...]]:
    """Statuses (``200``) and inclusive ranges (``"200-299"``)."""
    ranges: List[Tuple[int, int]] = []
    for item in node.sequence(non_empty=True) or ():
        if item.kind == "integer":
            value = status(item)
            if value is not None:
                ranges.append((value, value))
            continue
        text = item.string()
        match = _STATUS_RANGE.fullmatch(text or "")
        if text is not None and match is None:
            item.issue(f"expected a status like 200 or a range like 200-299, got {text!r}")
        elif match is not None:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                item.issue(f"the range {text!r} is empty")
            else:
                ranges.append((low, high))
    return tuple(ranges) or None
