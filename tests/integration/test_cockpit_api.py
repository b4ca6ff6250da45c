"""
The operator's endpoints against a real twistd, with one process and with
``workers: 2``, and the same answers from both: the history moves with the
traffic (and with workers, counts every worker's requests, even a killed
worker's), a drained target gets nothing while the other takes everything
(on every worker, a restarted one too), and the audit trail has each action,
from the API and from SIGHUP.  A key revoked through the host's admin API
stops working on every worker at once, whatever their caches held.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from tests.integration.procs import Gateway, Upstream, free_port, http_get, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
workers: {workers}
listeners: [{{name: public, endpoint: "tcp:{port}:interface=127.0.0.1"}}]
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: s3cret}}
upstreams:
  app: {{targets: [{{url: "http://127.0.0.1:{one}"}}, {{url: "http://127.0.0.1:{two}"}}]}}
routes:
  - {{name: api, path: "/api/*", upstream: app}}
  - {{name: idle, path: "/idle/*", upstream: app}}
"""


def call(port: int, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    status, _, answer = http_get(port, path, headers, method=method, body=data)
    return status, json.loads(answer) if answer else None


class Host:
    def __init__(self, tmp_path: Path, workers: int) -> None:
        self.one, self.two = Upstream(), Upstream()
        self.port, self.admin = free_port(), free_port()
        self.workers = workers
        text = CONFIG.format(workers=workers, port=self.port, admin=self.admin, one=self.one.port, two=self.two.port)
        self.gateway = Gateway(tmp_path, text)
        self.gateway.wait_ready(self.admin)
        self.sent = 0

    def send(self, n: int) -> Dict[str, int]:
        """`n` requests, each on a new connection (so every worker takes some): what each target got."""
        before = (self.one.count, self.two.count)
        for _ in range(n):
            assert http_get(self.port, "/api/x")[0] == 200
        self.sent += n
        return {"one": self.one.count - before[0], "two": self.two.count - before[1]}

    def history_total(self) -> Tuple[int, Dict[str, Any]]:
        status, body = call(self.admin, "GET", "/admin/stats/history")
        assert status == 200
        return sum(p["requests"] for p in body["total"]), body

    def close(self) -> None:
        self.gateway.stop(signal.SIGKILL)
        for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", self.gateway.log()):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        self.one.close()
        self.two.close()


@pytest.fixture(params=[1, 2], ids=["single", "workers"])
def host(request: Any, tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, request.param)
    yield h
    h.close()


def test_history_drain_and_audit_for_the_whole_host(host):
    one = f"http://127.0.0.1:{host.one.port}"
    first = host.send(20)
    assert first["one"] > 0 and first["two"] > 0
    counted, body = host.history_total()
    assert counted == 20 and body["bucket_seconds"] == 10 and set(body["routes"]) == {"api", "idle"}
    assert all(p["requests"] == 0 for p in body["routes"]["idle"])
    # The newest bucket is still filling; the 20 requests may straddle a
    # 10 s boundary, so the latency is checked on the buckets that hold them.
    assert body["total"][-1]["partial"] is True
    assert all(p["p99_ms"] is not None for p in body["total"] if p["requests"])
    if host.workers > 1:
        assert body["workers"] == 2

    status, drained = call(host.admin, "POST", "/admin/upstreams/app/drain", {"target": one})
    assert status == 200 and drained["draining"] is True, drained
    assert host.send(20) == {"one": 0, "two": 20}
    _, upstreams = call(host.admin, "GET", "/admin/upstreams")
    target = next(t for t in upstreams["upstreams"][0]["targets"] if t["url"] == one)
    assert target["draining"] is True
    if host.workers > 1:
        assert sorted(drained["workers"]) == ["1", "2"]
        assert [w["draining"] for w in target["workers"].values()] == [True, True]
        # A worker killed and restarted gets the host's drains again.
        host.history_total()  # the supervisor has every worker's counts so far
        first = host.gateway.log()
        killed = int(re.findall(r"worker 1 started \(pid (\d+)\)", first)[-1])
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: len(re.findall(r"worker 1 started", host.gateway.log())) == 2, what="worker 1 restarted")
        wait_until(lambda: http_get(host.admin, "/readyz")[0] == 200 and all(
            w["ready"] for w in call(host.admin, "GET", "/admin/health")[1]["workers"]), what="both workers ready")
        wait_until(lambda: all(w["draining"] for t in call(host.admin, "GET", "/admin/upstreams")[1]["upstreams"][0]["targets"]
                               if t["url"] == one for w in t["workers"].values()), what="the drain replayed")
        assert host.send(20) == {"one": 0, "two": 20}

    status, refused = call(host.admin, "POST", "/admin/upstreams/app/drain", {"target": "http://127.0.0.1:1"})
    assert status == 404 and refused["error"] == "not_found"
    status, _ = call(host.admin, "POST", "/admin/upstreams/app/undrain", {"target": one})
    assert status == 200
    assert host.send(20)["one"] > 0

    host.gateway.send(signal.SIGHUP)
    wait_until(lambda: call(host.admin, "GET", "/admin/audit?limit=1")[1]["entries"][0]["via"] == "SIGHUP", what="the SIGHUP reload audited")
    _, audit = call(host.admin, "GET", "/admin/audit")
    assert [(e["action"], e["outcome"], e["via"]) for e in audit["entries"]] == [
        ("reload", "ok", "SIGHUP"), ("undrain", "ok", "api"), ("drain", "refused", "api"), ("drain", "ok", "api"),
    ]
    assert all(e["client"] == "127.0.0.1" for e in audit["entries"][1:])
    assert "s3cret" not in json.dumps(audit)

    counted, body = host.history_total()
    assert counted == host.sent  # every request of the host, a killed worker's included
    assert sum(p["requests"] for p in body["routes"]["api"]) == host.sent


KEYS = """
workers: {workers}
listeners: [{{name: public, endpoint: "tcp:{port}:interface=127.0.0.1"}}]
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: s3cret}}
auth:
  keys: {{type: api_key, store: "sqlite:{db}", cache_ttl: 10m}}
upstreams:
  app: {{targets: [{{url: "http://127.0.0.1:{one}"}}]}}
routes:
  - {{name: keyed, path: "/keyed/*", upstream: app, auth: [keys]}}
"""


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers"])
def test_a_key_revoked_from_the_host_admin_stops_working_on_every_worker_at_once(tmp_path, workers):
    """
    With lookups cached for 10 minutes on each worker, a revocation through the host's admin API makes
    every worker forget the key at once; create and revoke are in the host's audit, never the secret.
    """
    one = Upstream()
    port, admin_port = free_port(), free_port()
    text = KEYS.format(workers=workers, port=port, admin=admin_port, one=one.port, db=tmp_path / "keys.db")
    gateway = Gateway(tmp_path, text)
    try:
        gateway.wait_ready(admin_port)
        status, created = call(admin_port, "POST", "/admin/keys", {"consumer": "acme"})
        assert status == 201 and created["key"].startswith("tg_")
        key = {"X-API-Key": created["key"]}
        assert [http_get(port, "/keyed/x", key)[0] for _ in range(30)] == [200] * 30  # cached by every worker
        status, _ = call(admin_port, "DELETE", f"/admin/keys/{created['id']}")
        assert status == 204
        assert [http_get(port, "/keyed/x", key)[0] for _ in range(30)] == [401] * 30  # not from any worker's cache
        _, audit = call(admin_port, "GET", "/admin/audit")
        assert [(e["action"], e["outcome"]) for e in audit["entries"]] == [("key_revoke", "ok"), ("key_create", "ok")]
        assert created["key"] not in json.dumps(audit) and created["key"].rsplit("_", 1)[1] not in json.dumps(audit)
    finally:
        gateway.stop(signal.SIGKILL)
        for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", gateway.log()):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        one.close()
