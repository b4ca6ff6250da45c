"""
The ``websocket`` sections: top level (every route's default, the gateway's
caps) and ``routes[].websocket`` (one route's own values).

```yaml
websocket:                  # top level
  idle_timeout: 5m          # no frame either way for this long: closed (1001)
  max_connections: 10000    # open WebSockets, every route together (503 beyond)
  max_message_size: 1MiB    # a bigger message is refused with close 1009 (none by default)
  drain_timeout: 10m        # after a reload, the old configuration's WebSockets may stay this long
routes:
  - name: chat
    path: /chat
    upstream: chat
    websocket: {idle_timeout: 1h, max_connections: 500, max_message_size: 64KiB}
```

A route's ``idle_timeout`` and ``max_message_size`` replace the top-level
ones for that route; its ``max_connections`` is a cap of its own, under the
gateway's.
"""

from __future__ import annotations

from typing import Optional

import attrs

from twistgate.config._node import Node
from twistgate.config.model import Location

__all__ = ["GATEWAY_KEYS", "ROUTE_KEYS", "WebSocketSettings", "WebSocketConfig", "parse_gateway", "parse_route", "settings_for"]

ROUTE_KEYS = ("idle_timeout", "max_connections", "max_message_size")
GATEWAY_KEYS = ROUTE_KEYS + ("drain_timeout",)

DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_DRAIN_TIMEOUT = 600.0


@attrs.frozen(kw_only=True)
class WebSocketConfig:
    """One ``websocket`` section as written (None: not set there)."""

    idle_timeout: Optional[float] = None
    max_connections: Optional[int] = None
    max_message_size: Optional[int] = None
    drain_timeout: Optional[float] = None
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class WebSocketSettings:
    """What applies to one route's WebSockets, the top level and the route's own section resolved."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_message_size: int = 0  # 0: no limit (bytes are relayed without a look at their size)
    route_limit: Optional[int] = None
    gateway_limit: Optional[int] = None


def _read(node: Node, keys: tuple) -> Optional[WebSocketConfig]:
    fields = node.mapping(keys)
    if fields is None:
        return None
    return WebSocketConfig(
        idle_timeout=fields.read("idle_timeout", Node.duration, None),
        max_connections=fields.read("max_connections", lambda n: n.integer(min=1), None),
        max_message_size=fields.read("max_message_size", lambda n: n.size(min=1), None),
        drain_timeout=fields.read("drain_timeout", Node.duration, None) if "drain_timeout" in keys else None,
        location=node.location(at_key=True),
    )


def parse_gateway(node: Node) -> Optional[WebSocketConfig]:
    """The top-level ``websocket`` section."""
    return _read(node, GATEWAY_KEYS)


def parse_route(node: Node) -> Optional[WebSocketConfig]:
    """``routes[].websocket``."""
    return _read(node, ROUTE_KEYS)


def settings_for(gateway: Optional[WebSocketConfig], route: Optional[WebSocketConfig]) -> WebSocketSettings:
    """The route's section over the top level's, over the defaults."""
    top = gateway or WebSocketConfig()
    own = route or WebSocketConfig()
    idle = own.idle_timeout if own.idle_timeout is not None else top.idle_timeout
    size = own.max_message_size if own.max_message_size is not None else top.max_message_size
    return WebSocketSettings(
        idle_timeout=idle if idle is not None else DEFAULT_IDLE_TIMEOUT,
        max_message_size=size or 0,
        route_limit=own.max_connections,
        gateway_limit=top.max_connections,
    )


def drain_timeout(gateway: Optional[WebSocketConfig]) -> float:
    """How long a replaced configuration's WebSockets may stay open after a reload."""
    if gateway is not None and gateway.drain_timeout is not None:
        return gateway.drain_timeout
    return DEFAULT_DRAIN_TIMEOUT
