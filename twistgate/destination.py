"""
Where a route's requests go: one upstream, or a weighted ``split`` between
upstreams (canary, blue/green), and the ``sticky`` cookie that pins a
client to one target.

* ``split`` chooses an arm per request, in proportion to the weights (an
  injected `random.Random`); the arm's name is left in
  ``request.state["split"]`` for the metrics (requests per arm).
* ``sticky``: the first answer sets a cookie naming the target that served
  it.  The value is opaque: a hash of the upstream's name and the target's
  identity (an HMAC when ``secret`` is set), never an address.  While that
  target is available (healthy, not ejected, its breaker letting requests
  through, of the tier serving now) later requests go to it, whatever the
  split says; when it is not, the request is placed afresh and the cookie
  re-pins the client.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from random import Random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twistgate.config._edge import StickyConfig
from twistgate.upstream.balancer import cookie_value

__all__ = ["Destination", "Sticky"]

#: ``request.state`` key: the split arm (upstream name) a request went to.
SPLIT_STATE = "split"
_TOKEN_BYTES = 12


class Sticky:
    """The affinity cookie of one route (see the module docstring)."""

    def __init__(self, config: StickyConfig, upstreams: Sequence[Any]) -> None:
        self.config = config
        self.upstreams = tuple(upstreams)
        self._attributes = b"; Path=/; HttpOnly; SameSite=Lax"
        if config.max_age is not None:
            self._attributes += b"; Max-Age=%d" % max(1, math.ceil(config.max_age))
        self._name = config.cookie.encode("ascii")
        self._seen: Tuple[Any, ...] = ()
        self._by_token: Dict[bytes, Tuple[Any, Any]] = {}
        self._tokens: Dict[Tuple[str, str], bytes] = {}

    def token(self, upstream: str, ident: str) -> bytes:
        """The cookie value naming a target: opaque, the same on every gateway with the same config."""
        key = (upstream, ident)
        found = self._tokens.get(key)
        if found is None:
            message = f"twistgate-sticky\0{upstream}\0{ident}".encode("utf-8")
            secret = self.config.secret
            digest = hmac.new(secret, message, hashlib.sha256).digest() if secret else hashlib.sha256(message).digest()
            found = self._tokens[key] = digest[:_TOKEN_BYTES].hex().encode("ascii")
        return found

    def _table(self) -> Dict[bytes, Tuple[Any, Any]]:
        """Token -> (upstream, target); rebuilt when discovery changed a target set."""
        seen = tuple(upstream.targets for upstream in self.upstreams)
        if len(seen) != len(self._seen) or any(a is not b for a, b in zip(seen, self._seen)):
            self._seen = seen
            self._by_token = {
                self.token(upstream.name, target.ident): (upstream, target)
                for upstream in self.upstreams
                for target in upstream.targets
            }
        return self._by_token

    def find(self, request: Any) -> Optional[Tuple[Any, Any]]:
        """The (upstream, target) the client's cookie pins it to, if that target is available now."""
        value = cookie_value(request.headers.raw.get(b"Cookie") or (), self.config.cookie)
        if not value:
            return None
        found = self._table().get(value)
        if found is None or not found[0].available(found[1]):
            return None
        return found

    def pin(self, request: Any, call: Any, headers: Any) -> None:
        """On the answer: set the cookie when the client is not pinned to the target that served it."""
        target = call.target
        if target is None or call.upstream is None:
            return
        token = self.token(call.upstream, target.ident)
        if cookie_value(request.headers.raw.get(b"Cookie") or (), self.config.cookie) == token:
            return
        value = self._name + b"=" + token + self._attributes
        if request.scheme == "https":
            value += b"; Secure"
        headers.addRawHeader(b"Set-Cookie", value)


class Destination:
    """One upstream, or a weighted split between several, and the route's sticky cookie."""

    def __init__(
        self, arms: Sequence[Tuple[Any, int]], sticky: Optional[StickyConfig] = None, rng: Optional[Random] = None
    ) -> None:
        self.arms = tuple(arms)
        self.upstream = self.arms[0][0]  # the only one, unless split
        self.split = len(self.arms) > 1
        self.rng = rng if rng is not None else Random()
        self._upstreams = [upstream for upstream, weight in self.arms if weight > 0]
        self._weights = [weight for _, weight in self.arms if weight > 0]
        self.sticky = Sticky(sticky, [u for u, _ in self.arms]) if sticky is not None else None

    @property
    def names(self) -> List[str]:
        return [upstream.name for upstream, _ in self.arms]

    def choose(self, request: Any) -> Tuple[Any, Any]:
        """``(upstream, preferred target or None)`` for this request."""
        sticky = self.sticky
        if sticky is not None:
            pinned = sticky.find(request)
            if pinned is not None:
                return pinned
        if not self.split:
            return self.upstream, None
        if len(self._upstreams) == 1:
            return self._upstreams[0], None
        return self.rng.choices(self._upstreams, weights=self._weights)[0], None

    def forward(self, request: Any, body: Any, call: Any, preserve_host: bool, route: Any) -> Any:
        """`Upstream.forward` on the chosen upstream (its Deferred)."""
        if self.sticky is None and not self.split:  # the common case: one upstream, nothing to choose
            return self.upstream.forward(request, body, call, preserve_host, route)
        upstream, prefer = self.choose(request)
        if self.split:
            request.state[SPLIT_STATE] = upstream.name
        return upstream.forward(request, body, call, preserve_host, route, prefer=prefer)

    def start_forward(
        self, request: Any, body: Any, call: Any, preserve_host: bool, route: Any, on_head: Any, on_failed: Any
    ) -> Any:
        """`Upstream.start_forward` on the chosen upstream (callbacks; its `Forwarding` to cancel)."""
        upstream, prefer = self.choose(request)
        if self.split:
            request.state[SPLIT_STATE] = upstream.name
        return upstream.start_forward(request, body, call, preserve_host, route, on_head, on_failed, prefer)

    def answered(self, request: Any, call: Any, headers: Any) -> None:
        """The upstream's response head is here: pin the client (sticky)."""
        if self.sticky is not None:
            self.sticky.pin(request, call, headers)
