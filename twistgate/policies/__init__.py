"""
The gateway's built-in policies: one package or module per concern, each of
the same shape: its typed config section (a frozen attrs class and the
parser that validates it), its stage (the object whose ``on_request`` /
``on_response`` / ``on_error`` run on the route), and a `Policy` that ties
them together.  `twistgate.chain.POLICIES` lists them in the order requests
meet them; none imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

import attrs

from twistgate.http import FORWARDING_FIELDS

if TYPE_CHECKING:
    from twistgate.config._node import Node
    from twistgate.config.model import ConfigIssue, GatewayConfig, RouteConfig
    from twistgate.services import Services

__all__ = ["BLIND", "NOT_FORWARDING", "SEES_ALL", "Policy", "Sight", "keyed_off_forwarding"]


@attrs.frozen
class Sight:
    """
    What a policy's layer may look at beyond what it owns, so the chain can
    prepare work at load for a route whose layers never look
    (`twistgate.chain.blind`).  Each flag is True (it may look) unless the
    policy says otherwise: when in doubt, not blind.

    :ivar forwarding: it reads or edits the request's forwarding fields
        (``X-Forwarded-For/-Proto/-Host``, ``Forwarded``, ``Via``).
    :ivar response_fields: on the way out, it reads or edits response
        fields other layers set (any but a fixed few of its own concern),
        or replaces the response.
    """

    forwarding: bool = True
    response_fields: bool = True


#: A layer that may look at anything (a policy that declares nothing, a plugin).
SEES_ALL = Sight()
#: A layer that looks at neither.
BLIND = Sight(forwarding=False, response_fields=False)
#: A layer that never looks at the forwarding fields (and may at the response's).
NOT_FORWARDING = Sight(forwarding=False)


def keyed_off_forwarding(parts: Iterable[str]) -> bool:
    """A `twistgate.request_keys` key that reads a forwarding field (``header:x-forwarded-for``)."""
    return any(part.startswith("header:") and part[7:].encode("ascii") in FORWARDING_FIELDS for part in parts)


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
    :ivar sight: what its layer may look at (`Sight`), or ``(route,
        services) -> Sight`` when that depends on the route's configuration.
    """

    name: str
    build: "Callable[[RouteConfig, Services], Optional[object]]"
    key: Optional[str] = None
    parse: "Optional[Callable[[Node], Any]]" = None
    every_route: bool = False
    validate: "Optional[Callable[[RouteConfig, GatewayConfig], Iterable[ConfigIssue]]]" = None
    sight: "Union[Sight, Callable[[RouteConfig, Services], Sight]]" = SEES_ALL

    def sight_on(self, route: "RouteConfig", services: "Services") -> Sight:
        """What its layer may look at on `route`."""
        return self.sight if isinstance(self.sight, Sight) else self.sight(route, services)

    def runs_on(self, route: "RouteConfig") -> bool:
        """Whether `route`'s configuration gives it this layer (it may still build none: then it is blind, a safe overstatement)."""
        return self.key is None or self.every_route or self.key in route.policies
