"""
The gateway's built-in policies: one package or module per concern, each of
the same shape: its typed config section (a frozen attrs class and the
parser that validates it), its stage (the object whose ``on_request`` /
``on_response`` / ``on_error`` run on the route), and a `Policy` that ties
them together.  `twistgate.chain.POLICIES` lists them in the order requests
meet them; none imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import attrs

if TYPE_CHECKING:
    from twistgate.config._node import Node
    from twistgate.config.model import ConfigIssue, GatewayConfig, RouteConfig
    from twistgate.services import Services

__all__ = ["Policy"]


@attrs.frozen
class Policy:
    """
    One layer of the chain.

    :ivar name: the layer's name (logs, ``twistgate explain``, plugin errors).
    :ivar key: the ``routes[]`` key that configures it, or None for a layer
        built for every route (tracing, the identity-header scrub).
    :ivar parse: the parser of ``routes[].<key>``: a `Node` to the typed
        config, or None after recording issues on the node.
    :ivar build: ``(route, services) -> stage or None``, once per route when
        a generation is built; None leaves the route without this layer.
    :ivar every_route: build it on routes without ``key`` too (a top-level
        section gives the default: ``compression``).
    :ivar validate: ``(route, config) -> issues``: the checks that need more
        than the section itself (other sections, the route), run by
        ``twistgate check`` and every load without building anything.
    """

    name: str
    build: "Callable[[RouteConfig, Services], Optional[object]]"
    key: Optional[str] = None
    parse: "Optional[Callable[[Node], Any]]" = None
    every_route: bool = False
    validate: "Optional[Callable[[RouteConfig, GatewayConfig], Iterable[ConfigIssue]]]" = None
