"""
Worker processes on one host, for real: twistd with ``workers: 2``, real
sockets, signals and a real upstream.  One listening socket shared by the
workers, a memory rate limit that holds for the host, metrics and stats
that add up over the workers, a two-phase reload, a worker killed (only its
requests in flight fail, it comes back), and SIGTERM draining.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.integration.procs import Gateway, Upstream, admin_json, free_port, http_get, load, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
workers: 2
listeners:
  - {{name: public, endpoint: "tcp:{port}:interface=127.0.0.1"}}
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: s3cret}}
limits: {{drain_timeout: 10s}}
upstreams:
  app: {{targets: [{{url: "http://127.0.0.1:{up}"}}]}}
routes:
  - {{name: limited, path: /limited, upstream: app, rate_limit: {{rate: 10/min, key: route}}}}
  - {{name: all, path: "/*", upstream: app}}
{extra}
"""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


class Host:
    def __init__(self, tmp_path: Path, upstream: Upstream, env: Optional[Dict[str, str]] = None) -> None:
        self.port, self.admin = free_port(), free_port()
        self.up = upstream.port
        self.gateway = Gateway(tmp_path, self.text(), env=env)
        self.gateway.wait_ready(self.admin)

    def text(self, extra: str = "") -> str:
        return CONFIG.format(port=self.port, admin=self.admin, up=self.up, extra=extra)

    def health(self) -> Dict[str, Any]:
        return admin_json(self.admin, "/admin/health")[1]

    def worker_pids(self) -> Dict[int, int]:
        return {w["index"]: w["pid"] for w in self.health()["workers"]}


@pytest.fixture
def host(tmp_path: Path, upstream: Upstream, extension_packages: Path) -> Iterator[Host]:
    # The test extension packages on the path: a reload can name a plugin whose
    # on_startup fails, which only the workers (which start it) can refuse.
    h = Host(tmp_path, upstream, env={"PYTHONPATH": str(extension_packages)})
    yield h
    h.gateway.stop(signal.SIGKILL)
    for pid in h_pids(h):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def h_pids(host: Host) -> List[int]:
    return [int(p) for p in re.findall(r"worker \d+ started \(pid (\d+)\)", host.gateway.log())]


def test_workers_share_the_port_and_a_memory_limit_holds_for_the_host(host):
    """Two workers accept on one port; 10/min on the memory backend allows 10 of 20 for the host, not per worker."""
    health = host.health()
    assert health["status"] == "ok" and [w["ready"] for w in health["workers"]] == [True, True]
    assert len(set(host.worker_pids().values())) == 2
    statuses = [http_get(host.port, "/limited")[0] for _ in range(20)]
    assert statuses.count(200) == 10 and statuses.count(429) == 10
    assert all(http_get(host.port, "/other")[0] == 200 for _ in range(10))


def test_metrics_and_stats_add_up_over_the_workers(host):
    """Every request counted once in /metrics and /admin/stats; the exposition is promtool-clean."""
    for _ in range(12):
        assert http_get(host.port, "/a")[0] == 200
    status, _, body = http_get(host.admin, "/metrics")
    text = body.decode()
    assert status == 200
    counted = sum(
        float(value)
        for value in re.findall(r'^twistgate_requests_total\{[^}]*route="all"[^}]*\} (\S+)$', text, flags=re.M)
    )
    assert counted == 12
    assert re.search(r'^twistgate_request_duration_seconds_count\{route="all"\} 12\.0$', text, flags=re.M)
    assert re.search(r"^twistgate_workers_ready 2\.0$", text, flags=re.M)
    assert re.search(r"^twistgate_config_generation 1\.0$", text, flags=re.M)
    stats = admin_json(host.admin, "/admin/stats")[1]
    assert stats["routes"]["all"]["requests"] == 12 and stats["workers"] == 2
    assert stats["routes"]["all"]["samples"] == 12
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        return
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_upstreams_answer_per_target_for_the_host(host):
    """/admin/upstreams: one entry per target, with each worker's view of it."""
    body = admin_json(host.admin, "/admin/upstreams")[1]
    (app,) = body["upstreams"]
    (target,) = app["targets"]
    assert target["healthy"] is True and target["breaker"] == "closed"
    assert sorted(target["workers"]) == ["1", "2"]


def test_reload_is_all_or_nothing_across_workers(host):
    """A reload every worker accepts serves everywhere; one the workers refuse changes nothing anywhere."""
    host.gateway.rewrite(host.text("  - {name: added, path: /added/*, upstream: app}").replace(
        "{name: all, path: \"/*\", upstream: app}", "{name: all, path: \"/x/*\", upstream: app}"))
    status, body = admin_json(host.admin, "/admin/reload", method="POST")
    assert status == 200 and body["ok"] and body["generation"] == 2 and body["workers"] == 2
    assert body["changes"]["routes_added"] == ["added"]
    assert all(http_get(host.port, "/added/1")[0] == 200 for _ in range(10))  # new connections: both workers
    assert all(http_get(host.port, "/other")[0] == 404 for _ in range(10))
    # An invalid file: the supervisor's own check refuses it, no worker sees it.
    invalid = host.text("  - {name: bad, path: /bad/*, upstream: app}").replace(
        "key: route}}", "key: route}, plugins: {ip_allow: {cidrs: [bogus]}}}")
    host.gateway.rewrite(invalid)
    status, body = admin_json(host.admin, "/admin/reload", method="POST")
    assert status == 400 and not body["ok"] and "invalid configuration" in body["message"]
    assert body["generation"] == 2
    # Valid, but its plugin fails to start: the workers refuse it while preparing, so nobody swaps.
    refused = host.text("  - {name: bad, path: /bad/*, upstream: app}\nplugins:\n  slow_start: {fail: no database}")
    host.gateway.rewrite(refused)
    status, body = admin_json(host.admin, "/admin/reload", method="POST")
    assert status == 400 and not body["ok"] and "refused" in body["message"], body
    assert "no database" in body["message"]
    assert body["generation"] == 2
    assert all(http_get(host.port, "/added/1")[0] == 200 for _ in range(10))
    assert all(http_get(host.port, "/bad/1")[0] == 404 for _ in range(10))
    assert host.health()["generation"] == 2
    text = http_get(host.admin, "/metrics")[2].decode()
    assert 'twistgate_config_reloads_total{result="failure"} 2.0' in text


def test_sighup_reloads_every_worker(host):
    host.gateway.rewrite(host.text("  - {name: added, path: /added/*, upstream: app}").replace(
        "{name: all, path: \"/*\", upstream: app}", "{name: all, path: \"/x/*\", upstream: app}"))
    host.gateway.send(signal.SIGHUP)
    wait_until(lambda: host.health()["generation"] == 2, what="generation 2")
    assert all(http_get(host.port, "/added/1")[0] == 200 for _ in range(10))


def test_a_killed_worker_loses_only_its_requests_in_flight_and_comes_back(host, upstream):
    """SIGKILL one worker with requests held upstream: only its own fail; the port keeps serving; it restarts."""
    results: List[Any] = []

    def one() -> None:
        try:
            results.append(http_get(host.port, "/hold", timeout=20)[0])
        except Exception as error:
            results.append(repr(error))

    clients = [threading.Thread(target=one) for _ in range(8)]
    for t in clients:
        t.start()
    wait_until(lambda: upstream.held == 8, what="8 held requests")
    workers = host.health()["workers"]
    victim = workers[0]
    os.kill(victim["pid"], signal.SIGKILL)
    assert all(http_get(host.port, "/now")[0] == 200 for _ in range(10))  # the other worker takes everything
    upstream.release()
    for t in clients:
        t.join()
    failed = [r for r in results if r != 200]
    assert len(failed) == victim["in_flight"] and len(results) == 8
    wait_until(lambda: all(w["ready"] for w in host.health()["workers"]), what="the worker restarted")
    after = host.worker_pids()
    assert after[victim["index"]] != victim["pid"]
    log = host.gateway.log()
    assert f"worker {victim['index']} (pid {victim['pid']}) was killed by signal 9 (SIGKILL)" in log
    assert re.search(rf"worker {victim['index']} \(pid {victim['pid']}\) .* restarting it (now|in )", log)
    text = http_get(host.admin, "/metrics")[2].decode()
    assert re.search(r"^twistgate_worker_restarts_total 1\.0$", text, flags=re.M)


def test_reload_under_load_fails_no_request(host):
    """Three reloads (admin and SIGHUP) while four clients send requests: not one fails."""
    outcome: Dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=load(host.port, "/a", 3.0, threads=4)))
    runner.start()
    for i in range(3):
        host.gateway.rewrite(host.text(f"  - {{name: r{i}, path: /r{i}, upstream: app}}"))
        if i == 1:
            host.gateway.send(signal.SIGHUP)
            wait_until(lambda: host.health()["generation"] == 3, what="generation 3")
        else:
            assert admin_json(host.admin, "/admin/reload", method="POST")[0] == 200
    runner.join()
    answered, failures = outcome["result"]
    assert failures == [] and answered > 20
    assert host.health()["generation"] == 4


def test_sigterm_drains_workers_and_the_supervisor_exits_last(host):
    """A request in flight at SIGTERM is answered; both workers exit, then the supervisor."""
    results: List[Any] = []
    slow = threading.Thread(target=lambda: results.append(http_get(host.port, "/slow?ms=1500", timeout=20)[0]))
    slow.start()
    wait_until(lambda: host.health()["in_flight"] == 1, what="the slow request in flight")
    host.gateway.send(signal.SIGTERM)
    slow.join()
    assert results == [200]
    assert host.gateway.proc.wait(30) in (0, -signal.SIGTERM)
    log = host.gateway.log()
    ends = [log.index(f"worker {i} (pid") for i in (1, 2) if f"worker {i} (pid" in log]
    assert len(ends) == 2 and max(ends) < log.index("Server Shut Down")
    with pytest.raises(OSError):
        http_get(host.port, "/", timeout=2)
