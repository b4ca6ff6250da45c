"""The hub: both caps, slots given back, the reload drain's timer, counters that include open connections."""

from __future__ import annotations

from typing import Any, List

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from twisted.internet.task import Clock

from twistgate.websocket.hub import WebSocketHub
from twistgate.websocket.tunnel import Tunnel


class InFlight:
    count = 0


class Generation:
    def __init__(self) -> None:
        self.streams: set = set()
        self.inflight = InFlight()


def hub() -> Any:
    clock = Clock()
    return WebSocketHub(CollectorRegistry(), clock), clock


def test_the_gateway_cap_counts_every_route_and_the_route_cap_its_own():
    h, _ = hub()
    assert h.reserve("a", None, 3) and h.reserve("b", None, 3) and h.reserve("a", 2, 3)
    assert not h.reserve("c", None, 3)  # the gateway's cap: 3 in all
    h.release("b")
    assert not h.reserve("a", 2, 3)  # route a holds 2 of its 2
    assert h.reserve("c", None, 3)
    assert h.total_reserved == 3 and h.reserved == {"a": 2, "b": 0, "c": 1}


def test_shut_tunnels_are_counted_and_the_drain_closes_what_is_left():
    registry = CollectorRegistry()
    clock = Clock()
    h = WebSocketHub(registry, clock)
    old, new = Generation(), Generation()
    ended: List[Any] = []
    tunnels = []
    for generation in (old, old, new):
        assert h.reserve("chat", None, None)
        tunnel = Tunnel(clock, 300.0, 0, lambda t: (ended.append(t), h.closed(t)))
        h.opened(tunnel, "chat", generation)
        tunnels.append(tunnel)
    h.drain(old, 60.0)
    clock.advance(59)
    assert ended == []
    clock.advance(1)
    # The drain shut the old generation's two (these in-memory tunnels have no connection
    # to close: abandon() stands for their connections going away).
    for tunnel in tunnels[:2]:
        tunnel.abandon()
    assert [t.closed_by for t in tunnels[:2]] == ["gateway", "gateway"]
    assert [t.close_code for t in tunnels[:2]] == [1001, 1001]
    assert set(ended) == set(tunnels[:2]) and not tunnels[2].over
    text = generate_latest(registry).decode()
    assert 'twistgate_websocket_connections_open{route="chat"} 1.0' in text
    assert 'twistgate_websocket_closes_total{closed_by="gateway",code="1001",route="chat"} 2.0' in text
    assert h.total_reserved == 1


def test_close_all_fires_when_the_last_one_ends():
    h, clock = hub()
    assert h.close_all().called  # nothing open
    h.reserve("r", None, None)
    tunnel = Tunnel(clock, 300.0, 0, h.closed)
    h.opened(tunnel, "r", Generation())
    done = h.close_all()
    assert not done.called
    tunnel.abandon()
    assert done.called and h.open == {}


def test_a_drain_with_nothing_open_arms_no_timer():
    """The timer would hold the retired generation for the whole drain timeout."""
    h, clock = hub()
    h.drain(Generation(), 600.0)
    assert clock.getDelayedCalls() == [] and h._drains == {}


def test_the_drain_timer_goes_with_the_last_websocket_or_stream():
    h, clock = hub()
    old = Generation()
    h.reserve("chat", None, None)
    tunnel = Tunnel(clock, 300.0, 0, h.closed)
    h.opened(tunnel, "chat", old)
    old.streams.add("an event stream")
    h.drain(old, 600.0)
    assert len(clock.getDelayedCalls()) == 1
    tunnel.abandon()  # the WebSocket ends; the stream still needs the timer
    assert len(clock.getDelayedCalls()) == 1
    old.streams.clear()
    h.forget_if_drained(old)  # the generation retired (twistgate.ops.runtime)
    assert clock.getDelayedCalls() == [] and h._drains == {}


def test_a_handshake_in_flight_at_the_reload_keeps_the_timer_for_its_websocket():
    """The upgrade was forwarded on the old generation before the swap; its WebSocket opens after it."""
    h, clock = hub()
    old = Generation()
    old.inflight.count = 1  # the handshake, under way
    h.drain(old, 600.0)
    assert len(clock.getDelayedCalls()) == 1
    h.reserve("chat", None, None)
    tunnel = Tunnel(clock, 300.0, 0, h.closed)
    h.opened(tunnel, "chat", old)
    old.inflight.count = 0  # the handshake's request is done: the generation retires
    h.forget_if_drained(old)
    assert len(clock.getDelayedCalls()) == 1  # its WebSocket still needs the timer
    clock.advance(600)
    tunnel.abandon()
    assert tunnel.closed_by == "gateway" and tunnel.close_code == 1001
