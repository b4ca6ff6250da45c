"""
The one `IResource` of the gateway: every request enters here.

It is a leaf: routing is the gateway's own (host, method, normalised path,
priority), not Twisted's child traversal.

`generation` is the whole configuration in force.  A reload replaces it
with `swap`: one attribute assignment on the reactor thread, so the change
is atomic.  `render` reads it once per request and the `Exchange` keeps that
generation to the end, so a request never mixes two configurations, and the
generation counts its own requests in flight (the old one is retired only
when they are done).
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.gateway import Generation
from twistgate.proxy import Exchange


class GatewayResource(Resource):
    isLeaf = True

    def __init__(self, generation: Generation) -> None:
        super().__init__()
        self.generation = generation
        self.draining = False

    def swap(self, generation: Generation) -> Generation:
        """Serve `generation` from the next request on; returns the one it replaces."""
        old, self.generation = self.generation, generation
        return old

    def render(self, request: Any) -> int:
        generation = self.generation
        if self.draining and request.channel is not None:
            request.channel.persistent = False  # answer, then close: we are stopping
        generation.inflight.add()
        Exchange(generation, request).start()
        return NOT_DONE_YET
