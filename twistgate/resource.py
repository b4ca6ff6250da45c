"""
The root `Resource` of the gateway: every request enters here.

Engines hand each request to ``render`` as a `twistgate.engine.api.Downstream`
(never twisted.web's `Request`); routing is the gateway's own (host,
method, normalised path, priority, in `twistgate.exchange`), not Twisted's
child traversal, so the root is a leaf.

`generation` is the whole configuration in force.  A reload replaces it
with `swap`: one attribute assignment on the reactor thread, so the change
is atomic.  `render` reads it once per request and the `Exchange` keeps that
generation to the end, so a request never mixes two configurations, and the
generation counts its own requests in flight (the old one is retired only
when they are done).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.exchange import Exchange
from twistgate.generation import Generation
from twistgate.ops.probes import health_path_of
from twistgate.websocket.exchange import UpgradeExchange

_log = Logger()


class GatewayResource(Resource):
    isLeaf = True

    def __init__(self, generation: Generation) -> None:
        super().__init__()
        self.generation = generation
        self.health = health_path_of(generation.config)  # listeners' health_path answers, or None
        self.draining = False
        generation.serve()

    def swap(self, generation: Generation) -> Generation:
        """Serve `generation` from the next request on; returns the one it replaces."""
        old, self.generation = self.generation, generation
        self.health = health_path_of(generation.config)
        generation.serve()
        return old

    def render(self, downstream: Any) -> int:
        generation = self.generation
        if self.draining:
            downstream.keep_alive = False  # answer, then close: we are stopping
        health = self.health
        if health is not None and health.answer(downstream, self.draining):
            return NOT_DONE_YET  # a listener's health_path: before routing, never forwarded
        generation.inflight.add()
        # A request that asks for an upgrade may become a WebSocket (twistgate.websocket).
        kind = UpgradeExchange if b"Upgrade" in downstream.headers.raw else Exchange
        kind(generation, downstream).start()
        return NOT_DONE_YET
