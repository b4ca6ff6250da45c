"""The supervisor's pure parts: the ``workers`` key, merging the workers' numbers, host-wide limits, restarts, the two-phase reload."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.config_helpers import config_loader
from twistgate.ops.stats import Stats
from twistgate.policies.ratelimit.algorithms import Limit, TOKEN_BUCKET
from twistgate.policies.ratelimit.redis_backend import BackendUnavailable
from twistgate.testing import result_of
from twistgate.validation import validate
from twistgate.workers import control, merge
from twistgate.workers.limits import HostBackend, HostLimits, decode_decision, encode_decision, encode_limits
from twistgate.workers.settings import worker_count
from twistgate.workers.slot import describe_end, restart_delay

load, _issues = config_loader()


def test_workers_key_defaults_counts_and_auto(monkeypatch):
    assert worker_count(load("listeners: [{name: a, endpoint: 'tcp:0'}]").sections.get("workers")) == 1
    assert worker_count(load("workers: 3\nlisteners: [{name: a, endpoint: 'tcp:0'}]").sections["workers"]) == 3
    monkeypatch.setattr("twistgate.workers.settings.available_cpus", lambda: 6)
    assert worker_count(load("workers: auto\nlisteners: [{name: a, endpoint: 'tcp:0'}]").sections["workers"]) == 6


def test_workers_need_sockets_they_can_share():
    """A listener the supervisor cannot hand over (here a systemd socket) is refused with workers > 1, not ignored."""
    config = load("workers: 2\nlisteners: [{name: a, endpoint: 'tcp:0'}, {name: b, endpoint: 'unix:/tmp/x.sock'}]")
    assert validate(config) == []
    from twistgate.config.model import ListenerConfig
    import attrs

    odd = attrs.evolve(config, listeners=(ListenerConfig(name="c", endpoint="systemd:domain=INET:index=0"),))
    (issue,) = validate(odd)
    assert "tcp:, tcp6: or unix:" in issue.message and issue.location.path == "workers"


def _exposition(requests: int, duration: float, in_flight: int, healthy: int, breaker: str, plugin: float) -> str:
    r = CollectorRegistry()
    Counter("twistgate_requests", "R.", ("route",), registry=r).labels("a").inc(requests)
    Histogram("twistgate_request_duration_seconds", "D.", ("route",), buckets=(0.1, 1.0), registry=r).labels("a").observe(duration)
    Gauge("twistgate_requests_in_flight", "F.", registry=r).set(in_flight)
    Gauge("twistgate_upstream_target_healthy", "H.", ("upstream", "target"), registry=r).labels("u", "t").set(healthy)
    b = Gauge("twistgate_upstream_breaker_state", "B.", ("upstream", "target", "state"), registry=r)
    for state in ("closed", "open", "half_open"):
        b.labels("u", "t", state).set(1 if state == breaker else 0)
    Gauge("plugin_queue", "P.", registry=r).set(plugin)
    Counter("twistgate_config_reloads", "Mine.", registry=r).inc(7)
    return generate_latest(r).decode()


def test_metrics_merge_adds_counts_and_takes_the_host_view_of_state():
    one = merge.parse(_exposition(3, 0.05, 2, 1, "closed", 5))
    two = merge.parse(_exposition(4, 0.5, 1, 0, "open", 7))
    merged = merge.merge([("1", one), ("2", two)])
    values = {(s, l): v for f in merged.values() for (s, l), v in f.values.items()}
    assert values[("twistgate_requests_total", (("route", "a"),))] == 7
    assert values[("twistgate_request_duration_seconds_bucket", (("le", "0.1"), ("route", "a")))] == 1
    assert values[("twistgate_request_duration_seconds_bucket", (("le", "1.0"), ("route", "a")))] == 2
    assert values[("twistgate_request_duration_seconds_count", (("route", "a"),))] == 2
    assert values[("twistgate_requests_in_flight", ())] == 3
    assert values[("twistgate_upstream_target_healthy", (("target", "t"), ("upstream", "u")))] == 0
    state = {dict(l)["state"]: v for (s, l), v in merged[merge.BREAKER].values.items()}
    assert state == {"open": 1.0, "half_open": 0.0, "closed": 0.0}
    assert values[("plugin_queue", (("worker", "1"),))] == 5 and values[("plugin_queue", (("worker", "2"),))] == 7
    assert "twistgate_config_reloads" not in merged and "twistgate_config_reloads_created" not in merged


def test_an_ended_workers_counts_are_carried_so_host_counters_never_go_down():
    one = merge.parse(_exposition(3, 0.05, 2, 1, "closed", 5))
    kept = merge.carried(one)
    assert "twistgate_requests" in kept and "twistgate_requests_in_flight" not in kept and "plugin_queue" not in kept
    fresh = merge.parse(_exposition(1, 0.05, 0, 1, "closed", 0))
    merged = merge.merge([("1", fresh), ("ended", kept)])
    assert merged["twistgate_requests"].values[("twistgate_requests_total", (("route", "a"),))] == 4


def test_upstreams_merge_one_entry_per_target_with_each_workers_view():
    def answer(healthy: bool, breaker: str, in_flight: int) -> Dict[str, Any]:
        target = {"url": "http://t", "healthy": healthy, "breaker": breaker, "in_flight": in_flight, "ejected": False}
        return {"upstreams": [{"name": "u", "balance": "round_robin", "in_flight": in_flight, "targets": [target]}]}

    (upstream,) = merge.upstreams([(1, answer(True, "closed", 2)), (2, answer(False, "half-open", 3))])
    (target,) = upstream["targets"]
    assert target["healthy"] is False and target["breaker"] == "half-open" and target["in_flight"] == 5
    assert upstream["in_flight"] == 5 and upstream["healthy_targets"] == 0
    assert target["workers"]["1"]["healthy"] is True and target["workers"]["2"]["breaker"] == "half-open"


def test_stats_merge_pools_samples_so_percentiles_are_the_hosts():
    class Record:
        def __init__(self, duration: float) -> None:
            self.route, self.status, self.duration, self.finished, self.state = "a", 200, duration, 100.0, None
            self.latency = duration

    clock = Clock()
    clock.advance(100)
    fast, slow = Stats(clock), Stats(clock)
    for _ in range(90):
        fast.observe(Record(0.001))
    for _ in range(10):
        slow.observe(Record(1.0))
    snapshot = Stats.merged(clock, [fast.export(), slow.export()]).snapshot()
    assert snapshot["total"]["requests"] == 100 and snapshot["total"]["samples"] == 100
    assert snapshot["total"]["latency_ms"]["p50"] == 1.0 and snapshot["total"]["latency_ms"]["p95"] == 1000.0


def test_host_limits_decide_once_for_every_worker():
    limits = HostLimits(Clock(), max_keys=100)
    flat = encode_limits([Limit(TOKEN_BUCKET, 3, 60_000_000, 3)])
    answers = [decode_decision(limits.decide(["k"], flat), 1).allowed for _ in range(5)]
    assert answers == [True, True, True, False, False]
    decision = decode_decision(limits.decide(["k"], flat), 1)
    assert decode_decision(encode_decision(decision), 1) == decision


class _Link:
    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol


class _Remote:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: List[Any] = []

    def callRemote(self, command: Any, **arguments: Any) -> Any:
        self.calls.append((command, arguments))
        return self.answer


def test_worker_backend_batches_a_turns_decisions_and_fails_as_unavailable():
    """Decisions asked in one reactor turn go in one message; a lost or failing supervisor is BackendUnavailable."""
    limit = Limit(TOKEN_BUCKET, 3, 60_000_000, 3)
    clock = Clock()
    host = HostLimits(clock, max_keys=100)

    class Supervisor:
        def __init__(self) -> None:
            self.calls: List[Any] = []

        def callRemote(self, command: Any, **arguments: Any) -> Any:
            self.calls.append(arguments)
            return succeed({"values": host.decide_batch(arguments["sizes"], arguments["keys"], arguments["limits"])})

    remote = Supervisor()
    backend = HostBackend(_Link(remote), clock)
    pending = [backend.decide(["k"], [limit]) for _ in range(5)]
    assert remote.calls == []  # sent at the end of the turn
    clock.advance(0)
    assert [result_of(d).allowed for d in pending] == [True, True, True, False, False]
    assert len(remote.calls) == 1 and remote.calls[0]["sizes"] == [1] * 5
    gone = HostBackend(_Link(None), clock).decide(["k"], [limit])
    assert isinstance(_failure(gone).value, BackendUnavailable)
    broken = HostBackend(_Link(_Remote(fail(RuntimeError("lost")))), clock).decide(["k"], [limit])
    clock.advance(0)
    assert isinstance(_failure(broken).value, BackendUnavailable)


def _failure(d: Any) -> Failure:
    seen: List[Failure] = []
    d.addErrback(seen.append)
    assert seen
    return seen[0]


def test_restarts_back_off_while_a_worker_keeps_dying_early():
    assert [restart_delay(n) for n in range(8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert describe_end(Failure(ProcessDone(0))) == "exited with status 0"
    assert describe_end(Failure(ProcessTerminated(3))) == "exited with status 3"
    assert describe_end(Failure(ProcessTerminated(signal=9))) == "was killed by signal 9 (SIGKILL)"


class _Slot:
    """A worker slot that answers Prepare as told and records every command."""

    def __init__(self, index: int, accept: bool) -> None:
        self.index, self.accept, self.ready, self.ever_ready = index, accept, True, True
        self.commands: List[str] = []

    def call(self, command: Any, timeout: float, **arguments: Any) -> Any:
        self.commands.append(command.__name__)
        if command is control.Prepare:
            if self.accept:
                return succeed({"ok": True, "outcome": {"ok": True}})
            return succeed({"ok": False, "outcome": {"ok": False, "message": "plugin refused"}})
        if command is control.Commit:
            return succeed({"outcome": {"ok": True, "changes": {"routes_added": ["b"]}, "warnings": []}})
        return succeed({})


SUPERVISED = """
workers: 2
listeners: [{name: a, endpoint: "tcp:0"}]
upstreams: {u: {targets: [{url: "http://127.0.0.1:9"}]}}
routes:
  - {name: a, path: /a, upstream: u}
"""


@pytest.fixture
def supervisor(tmp_path, monkeypatch):
    from twisted.internet.defer import maybeDeferred

    from twistgate.workers import snapshot
    from twistgate.workers.supervisor import Supervisor

    monkeypatch.setattr("twistgate.workers.supervisor.deferToThread", maybeDeferred)
    path = tmp_path / "gw.yaml"
    path.write_text(SUPERVISED)
    text, config = snapshot.read_checked(str(path))
    s = Supervisor(config, text, Clock(), 2)
    s.rundir = str(tmp_path)
    path.write_text(SUPERVISED + "  - {name: b, path: /b, upstream: u}\n")
    return s


def test_reload_commits_only_when_every_worker_prepared(supervisor):
    supervisor.slots = [_Slot(1, True), _Slot(2, True)]
    outcome = result_of(supervisor.reload(reason="test"))
    assert outcome["ok"] and outcome["generation"] == 2 and outcome["changes"] == {"routes_added": ["b"]}
    assert [s.commands for s in supervisor.slots] == [["Prepare", "Commit"], ["Prepare", "Commit"]]
    assert supervisor.version == 2 and [r.name for r in supervisor.config.routes] == ["a", "b"]


def test_one_refusal_aborts_the_reload_on_every_worker(supervisor):
    supervisor.slots = [_Slot(1, True), _Slot(2, False)]
    outcome = result_of(supervisor.reload(reason="test"))
    assert not outcome["ok"] and "worker 2 refused" in outcome["message"] and "plugin refused" in outcome["message"]
    assert [s.commands for s in supervisor.slots] == [["Prepare", "Abort"], ["Prepare", "Abort"]]
    assert supervisor.version == 1 and [r.name for r in supervisor.config.routes] == ["a"]
    assert supervisor.ops.last_reload["ok"] is False


def test_an_invalid_file_never_reaches_the_workers(supervisor, tmp_path):
    supervisor.slots = [_Slot(1, True), _Slot(2, True)]
    (tmp_path / "gw.yaml").write_text(SUPERVISED + "  - {name: c, path: /c, upstream: nowhere}\n")
    outcome = result_of(supervisor.reload(reason="test"))
    assert not outcome["ok"] and outcome["issues"] and [s.commands for s in supervisor.slots] == [[], []]


def test_worker_log_lines_reach_the_supervisor_at_their_level():
    from twisted.logger import LogLevel, Logger

    from twistgate.workers.logs import LineRelay, format_line, relay_log_line

    line = format_line({"log_level": LogLevel.error, "log_namespace": "twistgate.x", "log_format": "boom {n}", "n": 3})
    assert line == "error twistgate.x boom 3\n"
    seen: List[Any] = []
    log = Logger(observer=seen.append)
    lines: List[str] = []
    relay = LineRelay(lines.append)
    relay.feed(line.encode()[:7])
    relay.feed(line.encode()[7:] + b"plain output\npartial")
    relay.flush()
    assert lines == ["error twistgate.x boom 3", "plain output", "partial"]
    for text in lines[:2]:
        relay_log_line(log, 2, text)
    assert [e["log_level"] for e in seen] == [LogLevel.error, LogLevel.info]
    assert seen[0]["line"] == "[twistgate.x] boom 3" and seen[1]["line"] == "plain output" and seen[0]["index"] == 2


def test_snapshots_are_private_and_old_ones_are_forgotten(tmp_path):
    import stat

    from twistgate.workers import snapshot

    paths = [snapshot.write(str(tmp_path), v, f"# v{v}\nlisteners: [{{name: a, endpoint: 'tcp:0'}}]\n") for v in (1, 2, 3)]
    assert stat.S_IMODE((tmp_path / "config-3.yaml").stat().st_mode) == 0o600
    snapshot.forget_older(str(tmp_path), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config-2.yaml", "config-3.yaml"]
    config, _files = snapshot.load_snapshot(paths[2], "/etc/twistgate/gw.yaml")
    assert config.source == "/etc/twistgate/gw.yaml"


def test_a_worker_well_above_the_average_lets_a_wakeup_pass(tmp_path):
    """Fair share of new connections: compare with the workers that spoke recently; a silent one is left out."""
    from twistgate.workers import fairness

    path = str(tmp_path / "board")
    fairness.create(path, 3)
    clock = Clock()
    clock.advance(100)
    held = {0: 0, 1: 0, 2: 0}
    shares = [fairness.FairShare(fairness.Board(path, i), clock, lambda i=i: held[i]) for i in range(3)]
    assert shares[0].allow()  # nobody else has spoken: no one to leave the connection to
    for share in shares:
        share.heartbeat()
    held[0] = 3
    assert shares[0].allow()  # 3 against an average of 1: within the slack of 2
    held[0] = 10
    assert not shares[0].allow() and shares[0].passed == 1
    clock.advance(fairness.STALE + 1)  # the others went silent (stopped, stalled, dead)
    assert shares[0].allow()
    shares[1].heartbeat()
    assert not shares[0].allow()
    fairness.forget(path, 1)  # the supervisor: worker 2 ended
    assert shares[0].allow()
