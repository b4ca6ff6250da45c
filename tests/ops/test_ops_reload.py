"""Hot reload in memory: atomic swap, in-flight requests on their generation, reuse, rejection."""

from __future__ import annotations

import gc
import os
import weakref
from typing import Any, List

import pytest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.ops.helpers import AdminGateway
from twistgate.plugins import hookimpl
from twistgate.testing import result_of

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: s3cret}
upstreams:
  app: {targets: [{url: "http://app:80"}]}
  other: {targets: [{url: "http://other:80"}]}
routes:
  - {name: api, path: "/*", upstream: app, plugins: {tag: {value: one}}}
"""


class Held(Resource):
    """Answers at once, or holds requests to /slow until released."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: List[Any] = []

    def render(self, request: Any) -> Any:
        if request.path == b"/slow":
            self.held.append(request)
            return NOT_DONE_YET
        return b"fast"


class Tag:
    """Stamps responses with its configured value (shows which generation answered)."""

    started: List[str] = []
    stopped: List[str] = []
    fail_start = False

    def __init__(self, options: Any, context: Any) -> None:
        self.value = options["value"]

    @hookimpl
    def on_startup(self) -> None:
        if Tag.fail_start and self.value == "bad":
            raise RuntimeError("cannot start")
        Tag.started.append(self.value)

    @hookimpl
    def on_shutdown(self) -> None:
        Tag.stopped.append(self.value)

    @hookimpl
    def on_response(self, response: Any) -> None:
        response.headers.setRawHeaders(b"X-Tag", [self.value.encode()])


@pytest.fixture
def gateway(tmp_path):
    Tag.started, Tag.stopped, Tag.fail_start = [], [], False
    return AdminGateway(tmp_path / "gw.yaml", CONFIG, Held(), plugins={"tag": Tag})


def reload(gateway: AdminGateway) -> Any:
    return result_of(gateway.service.reload())


def tag(response: Any) -> bytes:
    return response.headers.getRawHeaders(b"x-tag")[0]


def test_in_flight_request_finishes_on_the_generation_it_started_on(gateway):
    gw = gateway.gw
    old = gateway.service.generation
    pending = gw.send("GET", "http://gw/slow")
    assert old.inflight.count == 1
    gateway.rewrite(CONFIG.replace("value: one", "value: two"))
    outcome = reload(gateway)
    assert outcome["ok"] and gateway.service.generation is not old
    assert tag(gw.request("GET", "http://gw/fast")) == b"two"  # new requests: the new generation
    assert old in gateway.service.ops.generations  # still draining
    assert Tag.stopped == []
    slow = gateway.upstream.held.pop()
    slow.write(b"late")
    slow.finish()
    gw.flush()
    response = result_of(pending)
    assert response.code == 200 and tag(response) == b"one"  # finished on the old generation
    assert gw.content(response) == b"late"
    assert old not in gateway.service.ops.generations  # retired once drained
    assert Tag.stopped == ["one"]


def test_after_retire_hooks_run_once_the_old_generation_is_retired(gateway):
    """twistgate.tap hangs the GC settling here: it must run after a retirement, not at the swap."""
    gw = gateway.gw
    calls: List[str] = []
    gateway.service.reloader.after_retire.append(lambda: calls.append("retired"))
    pending = gw.send("GET", "http://gw/slow")
    gateway.rewrite(CONFIG.replace("value: one", "value: two"))
    assert reload(gateway)["ok"]
    assert calls == []  # the old generation still has a request in flight
    slow = gateway.upstream.held.pop()
    slow.finish()
    gw.flush()
    result_of(pending)
    assert calls == ["retired"]


def test_a_retired_generation_is_freed_at_once(gateway):
    """
    Nothing holds a retired generation (its routes, pools, caches).  Two
    things did: the WebSocket drain's timer, armed for
    ``websocket.drain_timeout`` (10 minutes) even with no WebSocket open, so
    a gateway reloaded every 30 s kept 20 generations and grew by about
    1 MiB a reload (the soak test); and the reloader's list of generations
    retiring, when one was idle at the swap.
    """
    gw = gateway.gw
    gateway.rewrite(CONFIG.replace("value: one", "value: first"))
    assert reload(gateway)["ok"]  # (the harness holds the first generation)
    retired = []
    for value in ("two", "three", "four"):
        retired.append(weakref.ref(gateway.service.generation))
        gateway.rewrite(CONFIG.replace("value: one", f"value: {value}"))
        assert reload(gateway)["ok"]
        assert tag(gw.request("GET", "http://gw/fast")) == value.encode()
    gc.collect()
    assert [r() for r in retired] == [None, None, None]
    assert gateway.service.ops.websockets._drains == {}


def test_a_retired_generation_with_a_stream_is_freed_when_the_stream_ends(gateway):
    gw = gateway.gw
    gateway.rewrite(CONFIG.replace("value: one", "value: first"))
    assert reload(gateway)["ok"]  # (the harness holds the first generation)
    old = gateway.service.generation
    stream = object()
    old.streams.add(stream)  # an event stream relayed from `old`
    pending = gw.send("GET", "http://gw/slow")  # holds `old` in flight, as a stream does
    gateway.rewrite(CONFIG.replace("value: one", "value: two"))
    assert reload(gateway)["ok"]
    hub = gateway.service.ops.websockets
    assert old in hub._drains  # the drain may have to cut the stream
    old.streams.discard(stream)
    slow = gateway.upstream.held.pop()
    slow.finish()
    gw.flush()
    result_of(pending)
    assert hub._drains == {}  # retired: the timer is gone with it
    freed = weakref.ref(old)
    del old
    gc.collect()
    assert freed() is None


def test_unchanged_upstreams_are_reused_with_their_pools(gateway):
    old = gateway.service.generation
    app, other = old.upstreams["app"], old.upstreams["other"]
    closed = []
    app.client.close = lambda: closed.append("app")
    other.client.close = lambda: closed.append("other")
    # `app` moves in the file (its location changes), `other` gets a new timeout.
    gateway.rewrite(
        CONFIG.replace("  app: {targets: [{url: \"http://app:80\"}]}\n", "")
        .replace("  other: {targets: [{url: \"http://other:80\"}]}", "  other: {targets: [{url: \"http://other:80\"}], timeouts: {read: 5s}}\n  app: {targets: [{url: \"http://app:80\"}]}")
    )
    outcome = reload(gateway)
    new = gateway.service.generation
    assert outcome["changes"]["upstreams_reused"] == ["app"]
    assert outcome["changes"]["upstreams_rebuilt"] == ["other"]
    assert new.upstreams["app"] is app and new.upstreams["other"] is not other
    assert closed == ["other"]  # the old generation closed only what nobody uses any more


def test_reused_upstream_survives_two_reloads(gateway):
    app = gateway.service.generation.upstreams["app"]
    closed = []
    app.client.close = lambda: closed.append("app")
    for value in ("two", "three"):
        gateway.rewrite(CONFIG.replace("value: one", f"value: {value}"))
        assert reload(gateway)["ok"]
    assert gateway.service.generation.upstreams["app"] is app and closed == []
    assert gateway.service.ops.number == 3


def test_plugin_startup_failure_rejects_the_reload(gateway):
    Tag.fail_start = True
    old = gateway.service.generation
    gateway.rewrite(CONFIG.replace("value: one", "value: bad"))
    outcome = reload(gateway)
    assert not outcome["ok"] and "failed to start" in outcome["message"]
    assert gateway.service.generation is old
    assert tag(gateway.gw.request("GET", "http://gw/fast")) == b"one"
    assert Tag.stopped == ["bad"]  # what was started was stopped again


def test_unreadable_file_is_rejected(gateway):
    os.unlink(gateway.path)
    outcome = reload(gateway)
    assert not outcome["ok"] and "cannot read" in outcome["issues"][0]["message"]
    assert gateway.gw.request("GET", "http://gw/fast").code == 200


def test_reloads_are_serialised(gateway):
    gateway.rewrite(CONFIG.replace("value: one", "value: two"))
    first, second = gateway.service.reload(), gateway.service.reload()
    assert result_of(first)["generation"] == 2 and result_of(second)["generation"] == 3


def test_metrics_count_reloads_and_survive_them(gateway):
    from prometheus_client import generate_latest

    gw = gateway.gw
    gw.content(gw.request("GET", "http://gw/fast"))
    gateway.rewrite(CONFIG.replace("value: one", "value: two"))
    reload(gateway)
    gateway.rewrite("listeners: [")
    reload(gateway)
    gw.content(gw.request("GET", "http://gw/fast"))
    text = generate_latest(gateway.service.ops.registry).decode()
    assert 'twistgate_requests_total{method="GET",route="api",status_class="2xx"} 2.0' in text
    assert 'twistgate_config_reloads_total{result="success"} 1.0' in text
    assert 'twistgate_config_reloads_total{result="failure"} 1.0' in text
    assert "twistgate_config_last_reload_successful 0.0" in text
    assert "twistgate_config_generation 2.0" in text


def test_tls_listeners_get_their_new_config_after_the_swap(gateway):
    seen = []
    gateway.service.tls_reloaders["public"] = lambda listener, contexts: seen.append(listener)
    gateway.rewrite(CONFIG.replace("value: one", "value: two"))
    assert reload(gateway)["ok"]
    assert [listener.name for listener in seen] == ["public"]


def test_watching_the_file_reloads_when_it_changes(tmp_path):
    Tag.started, Tag.stopped, Tag.fail_start = [], [], False
    text = CONFIG + "reload: {watch: true, interval: 1s}\n"
    gateway = AdminGateway(tmp_path / "gw.yaml", text, Held(), plugins={"tag": Tag})
    gateway.service.startService()
    gateway.clock.advance(1)
    assert gateway.service.ops.number == 1  # unchanged file: no reload
    gateway.rewrite(text.replace("value: one", "value: changed"))
    os.utime(gateway.path, ns=(1, 10**18))
    gateway.clock.advance(1)
    assert gateway.service.ops.number == 2
    assert tag(gateway.gw.request("GET", "http://gw/fast")) == b"changed"
    # The last reload and the audit trail say the file watch started it.
    assert gateway.service.ops.last_reload["reason"] == "file changed"
    _, audit = gateway.admin("GET", "/admin/audit")
    assert [(e["action"], e["outcome"], e["via"]) for e in audit["entries"]] == [("reload", "ok", "file watch")]
    gateway.rewrite("listeners: [")  # broken: rejected once, not retried every second
    os.utime(gateway.path, ns=(1, 2 * 10**18))
    gateway.clock.advance(1)
    gateway.clock.advance(1)
    assert gateway.service.ops.last_reload["ok"] is False and gateway.service.ops.number == 2
    gateway.service.stopService()
    gateway.clock.advance(1)
    assert not gateway.service.triggers.watching
