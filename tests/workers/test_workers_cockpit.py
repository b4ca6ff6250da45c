"""
The host's cockpit without processes: the supervisor's history over fake
workers (each a real `History` on one Clock), drains sent to every worker
and replayed, the host view of a drained target, and each API key's last use.
"""

from __future__ import annotations

import io
import json
from typing import Any, List

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from tests.auth.helpers import NOW, AuthGateway
from tests.auth.test_auth_admin_resource import Admin
from tests.ops.test_ops_history import record
from twistgate.ops.audit import AuditTrail
from twistgate.ops.history import History, HistorySettings
from twistgate.ops.stats import Stats
from twistgate.testing import result_of
from twistgate.workers import merge
from twistgate.workers.hostcockpit import HostCockpit
from twistgate.workers.hosthistory import HostHistory

SETTINGS = HistorySettings(bucket=10, span=60, sample_every=2)


class FakeWorker:
    """A worker's history answering ``/admin/_history?since=`` as the private admin socket does."""

    def __init__(self, clock: Clock, index: int, pid: int) -> None:
        self.index, self.pid = index, pid
        self.stats = Stats(clock)
        self.history = History(clock, self.stats, SETTINGS)
        self.up = True

    def answer(self, path: bytes) -> Any:
        if not self.up:
            return fail(ConnectionRefusedError("gone"))
        since = float(path.partition(b"since=")[2])
        return succeed(self.history.export(since))


def host_of(clock: Clock, workers: List[FakeWorker]) -> HostHistory:
    return HostHistory(clock, lambda: [w for w in workers], lambda worker, path: worker.answer(path), SETTINGS)


def test_the_host_history_adds_the_workers_buckets_up():
    """Counts add up per bucket; the host's p99 is over every request (histograms pooled), not an average."""
    clock = Clock()
    clock.advance(100.0)
    one, two = FakeWorker(clock, 1, 101), FakeWorker(clock, 2, 102)
    host = host_of(clock, [one, two])
    for _ in range(99):
        one.stats.observe(record(clock, "api", ms=2.0))
    two.stats.observe(record(clock, "api", 502, ms=900.0))
    two.stats.observe(record(clock, "api", ms=2.0))
    clock.advance(10.0)  # the bucket (100, 110] ended
    result_of(host.pull())
    result_of(host.pull())  # asked again: nothing counted twice
    three = [record(clock, "api", ms=5.0) for _ in range(3)]
    clock.advance(2.0)
    for r in three:
        two.stats.observe(r)
    body = result_of(host.answer(["api", "idle"]))
    assert body["workers"] == 2
    closed, current = body["total"]
    assert closed["at"] == 110.0 and closed["requests"] == 101 and closed["errors"] == 1
    assert closed["p50_ms"] == pytest.approx(2.0, rel=0.04) and closed["p99_ms"] == pytest.approx(2.0, rel=0.04)
    assert current["partial"] and current["requests"] == 3  # the open buckets, current on every worker
    assert [p["requests"] for p in body["routes"]["idle"]] == [0, 0]


def test_a_restarted_worker_adds_new_buckets_and_a_dead_one_keeps_what_it_closed():
    clock = Clock()
    one = FakeWorker(clock, 1, 201)
    workers = [one]
    host = host_of(clock, workers)
    one.stats.observe(record(clock, "api"))
    clock.advance(10.0)
    result_of(host.pull())
    one.up = False  # died: the host keeps its closed bucket
    again = FakeWorker(clock, 1, 202)  # restarted: a new pid, a fresh history
    workers[:] = [again]
    again.stats.observe(record(clock, "api"))
    clock.advance(10.0)
    body = result_of(host.answer(["api"]))
    assert [p["requests"] for p in body["total"]] == [1, 1, 0]


def test_what_a_dying_worker_counted_in_its_open_bucket_is_kept():
    """The supervisor asks every 2 s: a worker killed mid-bucket loses at most what came after its last answer."""
    clock = Clock()
    one, two = FakeWorker(clock, 1, 301), FakeWorker(clock, 2, 302)
    workers = [one, two]
    host = host_of(clock, workers)
    clock.advance(2.0)
    for _ in range(4):
        one.stats.observe(record(clock, "api"))
    result_of(host.pull())
    workers[:] = [two]  # killed at 3 s, its bucket open
    two.stats.observe(record(clock, "api"))
    assert [p["requests"] for p in result_of(host.answer(["api"]))["total"]] == [5]  # while the bucket is open
    clock.advance(10.0)
    body = result_of(host.answer(["api"]))
    assert [p["requests"] for p in body["total"]] == [5, 0]


def test_a_worker_answering_across_a_bucket_end_is_not_lost():
    """One worker closed bucket 20, the other not yet: the answer shows both in bucket 20."""
    clock = Clock()
    clock.advance(15.0)
    one, two = FakeWorker(clock, 1, 1), FakeWorker(clock, 2, 2)
    one.stats.observe(record(clock, "api"))
    two.stats.observe(record(clock, "api"))
    stale = two.history.export(0.0)  # asked at 15: its open bucket ends at 20
    clock.advance(6.0)
    two.answer = lambda path: succeed(stale)  # type: ignore[method-assign]
    body = result_of(host_of(clock, [one, two]).answer([]))
    assert [(p["at"], p["requests"]) for p in body["total"]] == [(20.0, 2), (30.0, 0)]


def test_the_host_history_is_pulled_on_a_timer():
    clock = Clock()
    one = FakeWorker(clock, 1, 1)
    host = host_of(clock, [one])
    host.start()
    one.stats.observe(record(clock, "api"))
    clock.advance(10.0)
    clock.advance(10.0)
    host.stop()
    assert clock.getDelayedCalls() == []
    assert sum(b.total.requests for b in host.ring.buckets.values()) == 1


def test_the_host_view_of_a_target_is_draining_if_any_worker_drains_it():
    answers = [
        (1, {"upstreams": [{"name": "app", "targets": [
            {"url": "http://a", "healthy": True, "draining": True, "ewma_ms": 2.0, "last_error": None, "in_flight": 1}]}]}),
        (2, {"upstreams": [{"name": "app", "targets": [
            {"url": "http://a", "healthy": True, "draining": False, "ewma_ms": 4.0, "last_error": "refused", "in_flight": 0}]}]}),
    ]
    (app,) = merge.upstreams(answers)
    (target,) = app["targets"]
    assert target["draining"] is True and target["ewma_ms"] == 3.0 and target["last_error"] == "refused"
    assert target["workers"]["1"]["draining"] is True and target["workers"]["2"]["draining"] is False


def test_keys_show_when_they_were_last_used(tmp_path):
    """``GET /admin/keys`` has each key's last use, kept by the gateway (never its secret)."""
    gateway = AuthGateway(
        f"""
        auth:
          keys: {{type: api_key, store: "sqlite:{tmp_path}/keys.db"}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [keys]}}
        """
    )
    admin = Admin(gateway)
    _, created = admin.call("POST", "/admin/keys", {"consumer": "acme"})
    _, listed = admin.call("GET", "/admin/keys")
    assert listed["keys"][0]["last_used_at"] is None
    gateway.clock.advance(60)
    assert gateway.get(headers={"X-API-Key": created["key"]}).code == 200
    _, listed = admin.call("GET", "/admin/keys")
    assert listed["keys"][0]["last_used_at"] == "2023-11-14T22:14:20Z"  # NOW + 60 s
    assert created["key"] not in json.dumps(listed)
    assert gateway.harness.generation.ops.key_usage == {created["id"]: NOW + 60}


class FakeAdmin:
    """What `HostCockpit` reads of the supervisor's admin resource: workers answering by index."""

    def __init__(self, answers: Any) -> None:
        self.answers = answers  # (slot index, method, path) -> (status, body) or an exception
        self.asked: List[Any] = []
        slots = [SimpleSlot(1), SimpleSlot(2)]
        supervisor = SimpleSupervisor(Clock(), slots)
        self.runtime = SimpleRuntime(supervisor, AuditTrail(supervisor.reactor))

    def ask(self, slot: Any, method: bytes, path: bytes, headers: Any = None, body: Any = None) -> Any:
        self.asked.append((slot.index, method, path))
        answer = self.answers(slot.index, method, path)
        if isinstance(answer, Exception):
            return fail(answer)
        status, data = answer
        return succeed((status, None, json.dumps(data).encode()))


class SimpleSlot:
    def __init__(self, index: int) -> None:
        self.index, self.pid = index, 1000 + index


class SimpleSupervisor:
    def __init__(self, reactor: Any, slots: List[SimpleSlot]) -> None:
        self.reactor, self.slots, self.version = reactor, slots, 7
        self.config = SimpleRuntime(None, None)

    def ready_slots(self) -> List[SimpleSlot]:
        return self.slots


class SimpleRuntime:
    def __init__(self, supervisor: Any, audit: Any) -> None:
        self.supervisor = supervisor
        self.ops = type("Ops", (), {"audit": audit})()
        self.routes: List[Any] = []


def request_for(uri: bytes, body: bytes = b"") -> Any:
    return type("Request", (), {
        "uri": uri, "args": {}, "content": io.BytesIO(body), "requestHeaders": Headers(),
    })()


def test_the_host_keys_list_has_each_keys_latest_use_on_any_worker():
    lists = {
        1: {"keys": [{"id": "a", "last_used_at": "2024-01-01T00:00:05Z"}, {"id": "b", "last_used_at": None}]},
        2: {"keys": [{"id": "a", "last_used_at": "2024-01-01T00:00:09Z"}, {"id": "b", "last_used_at": "2024-01-02T00:00:00Z"}]},
    }
    cockpit = HostCockpit(FakeAdmin(lambda index, method, path: (200, lists[index])))
    body, status = result_of(cockpit.keys_list(request_for(b"/admin/keys")))
    assert status == 200
    assert {k["id"]: k["last_used_at"] for k in body["keys"]} == {"a": "2024-01-01T00:00:09Z", "b": "2024-01-02T00:00:00Z"}


def test_a_host_drain_is_ok_only_when_every_worker_applied_it_and_is_replayed_to_a_new_worker():
    state = {"down": False}

    def answers(index: int, method: bytes, path: bytes) -> Any:
        if index == 2 and state["down"]:
            return ConnectionRefusedError("gone")
        return 200, {"upstream": "app", "target": "http://a", "draining": True, "in_flight": index}

    admin = FakeAdmin(answers)
    cockpit = HostCockpit(admin)
    body = b'{"target": "http://a"}'
    answer, status = result_of(cockpit.drain(request_for(b"/", body), "app", True))
    assert status == 200 and answer["in_flight"] == 3 and sorted(answer["workers"]) == ["1", "2"]
    assert cockpit.drains == {"app": {"http://a"}}
    state["down"] = True
    answer, status = result_of(cockpit.drain(request_for(b"/", body), "app", False))
    assert status == 502 and "worker 2" in answer["message"]
    assert cockpit.drains == {"app": {"http://a"}}  # not undrained on the host: a worker did not confirm
    admin.asked.clear()
    cockpit.worker_ready(SimpleSlot(1))
    assert admin.asked == [(1, b"POST", b"/admin/upstreams/app/drain")]
