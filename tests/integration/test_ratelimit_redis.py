"""
Rate limits shared through a real Redis (``redis-server`` started on a free
port by the fixture; with the environment variable CI set, a missing
redis-server is a failure, not a skip):

* the Redis backend gives exactly the memory backend's answers for the same
  traffic (replayed on one clock);
* on the Redis server's clock, concurrent decisions never exceed the limit;
* Redis stopped: decisions fail at once (never hang); Redis back: the
  backend recovers by itself;
* two ``twistd`` gateway processes share one limit exactly, apply
  ``on_backend_error`` (allow on one, deny on the other) while Redis is
  down, and limit again once it is back.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import deferLater

from twistgate.policies.ratelimit.algorithms import FIXED_WINDOW, SLIDING_WINDOW, TOKEN_BUCKET, Limit
from twistgate.policies.ratelimit.memory import MemoryBackend
from twistgate.policies.ratelimit.redis_backend import BackendUnavailable, RedisBackend
from twistgate.testing_twistd import free_port
from tests.integration.procs import wait_port

BIN = Path(sys.executable).parent
S = 1_000_000



class RedisServer:
    """A throwaway redis-server: no persistence, loopback only, restartable on the same port."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (tests/run.sh installs it)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(executable)
    server.start()
    yield server
    server.stop()


@inlineCallbacks
def _connected(backend: RedisBackend, reactor, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while backend._connection() is None:
        if time.monotonic() > deadline:
            raise AssertionError("the Redis backend did not connect")
        yield deferLater(reactor, 0.02, lambda: None)


@pytest.fixture
def backend(redis_server, reactor):
    rb = RedisBackend(reactor, host="127.0.0.1", port=redis_server.port, timeout=2.0)
    rb.start()
    pytest_twisted.blockon(_connected(rb, reactor))
    yield rb
    pytest_twisted.blockon(rb.stop())


LIMITS = [
    Limit(TOKEN_BUCKET, 3, 1 * S, 5),  # 3/s, burst 5
    Limit(TOKEN_BUCKET, 7, 3 * S, 2),  # a rate with no round interval
    Limit(FIXED_WINDOW, 4, 2 * S, 4),
    Limit(SLIDING_WINDOW, 4, 2 * S, 4),
]


@pytest_twisted.inlineCallbacks
def test_redis_and_memory_give_the_same_answers_for_the_same_traffic(backend):
    """
    Random traffic (bursts, pauses, exact edges, several limits per request)
    replayed on one clock through both backends: every decision, remaining
    count, reset and retry time is identical.
    """
    rng = random.Random(20240611)
    memory = MemoryBackend(clock=None)
    now = 1_700_000_000 * S  # a realistic epoch in µs, like Redis TIME
    prefix = f"eq{rng.random()}:"
    compared = 0
    for step in range(1500):
        now += rng.choice([0, 0, 1, 999, 1000, 250_000, 333_333, 333_334, 1 * S, 2 * S - 1, 2 * S, 5 * S])
        who = rng.choice("abcd")
        chosen = sorted(rng.sample(range(len(LIMITS)), k=rng.randint(1, 3)))
        limits = [LIMITS[i] for i in chosen]
        keys = [f"{prefix}{who}:{i}" for i in chosen]
        expected = memory.decide(keys, limits, now_us=now)
        got = yield backend.decide(keys, limits, now_us=now)
        assert got == expected, (step, now, keys)
        compared += 1
    assert compared == 1500


@pytest_twisted.inlineCallbacks
def test_on_the_servers_clock_concurrent_requests_never_exceed_the_limit(backend, reactor):
    """60 decisions in flight at once on a 20-per-hour limit: exactly 20 allowed, for each algorithm."""
    for index, limit in enumerate(
        [Limit(TOKEN_BUCKET, 20, 3600 * S, 20), Limit(FIXED_WINDOW, 20, 3600 * S, 20), Limit(SLIDING_WINDOW, 20, 3600 * S, 20)]
    ):
        key = f"conc:{index}:{random.random()}"
        results = yield DeferredList([backend.decide([key], [limit]) for _ in range(60)], fireOnOneErrback=True)
        allowed = [d.allowed for ok, d in results]
        assert allowed.count(True) == 20, limit
        remaining = sorted(d.outcomes[0].remaining for ok, d in results if d.allowed)
        assert remaining == list(range(20))  # each allowed request saw a distinct count


@pytest_twisted.inlineCallbacks
def test_redis_down_fails_fast_and_recovers_by_itself(redis_server, backend, reactor):
    limit = [Limit(FIXED_WINDOW, 100, 60 * S, 100)]
    decision = yield backend.decide(["up"], limit)
    assert decision.allowed and backend.healthy
    redis_server.stop()
    yield deferLater(reactor, 0.2, lambda: None)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        yield backend.decide(["up"], limit)
    assert time.monotonic() - started < 0.5  # never waits for a connection
    assert backend.healthy is False
    redis_server.start()
    deadline = time.monotonic() + 15
    while True:
        try:
            decision = yield backend.decide(["up"], limit)
            break
        except BackendUnavailable:
            assert time.monotonic() < deadline, "the backend did not reconnect"
            yield deferLater(reactor, 0.1, lambda: None)
    assert decision.allowed and backend.healthy
    assert decision.outcomes[0].remaining == 99  # a fresh Redis: the count started again


# -- two gateway processes -------------------------------------------------------


class Twistd:
    def __init__(self, config: Path, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(config)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_listening(self, port: int) -> None:
        wait_port(port, self.proc, timeout=20)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


def _gateway_config(gw: int, demo: int, redis_port: int, on_error: str) -> str:
    return f"""
listeners: [{{name: p, endpoint: "tcp:{gw}:interface=127.0.0.1"}}]
demo: {{endpoint: "tcp:{demo}:interface=127.0.0.1"}}
rate_limiting:
  backend: redis://127.0.0.1:{redis_port}/0
  on_backend_error: {on_error}
  timeout: 500ms
upstreams:
  demo: {{targets: [{{url: "http://127.0.0.1:{demo}"}}]}}
routes:
  - name: shared
    path: /health
    upstream: demo
    rate_limit: {{rate: 10/h, burst: 10, key: route}}
"""


def _status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        body = error.read()
        if error.code == 429:
            assert json.loads(body)["error"] == "rate_limited"
            assert error.headers["Retry-After"] and error.headers["RateLimit"]
        return error.code


@pytest.fixture
def two_gateways(redis_server, tmp_path: Path):
    ports = {"a": free_port(), "b": free_port()}
    started: List[Twistd] = []
    for name, on_error in (("a", "allow"), ("b", "deny")):
        directory = tmp_path / name
        directory.mkdir()
        config = directory / "gw.yaml"
        config.write_text(_gateway_config(ports[name], free_port(), redis_server.port, on_error))
        started.append(Twistd(config, directory))
    try:
        for t, port in zip(started, ports.values()):
            t.wait_listening(port)
        yield ports
    finally:
        outputs = [t.stop() for t in started]
        for out in outputs:
            assert "Traceback" not in out, out


def _burst(ports, n: int) -> List[int]:
    """n requests, alternating between the two gateways, 8 at a time."""
    targets = [ports["a"] if i % 2 == 0 else ports["b"] for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(_status, targets))


def test_two_gateway_processes_share_one_limit_and_survive_a_redis_restart(redis_server, two_gateways):
    ports = two_gateways
    # One limit of 10 for the route, whichever process answers.
    statuses = _burst(ports, 30)
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses

    # Redis down: gateway a (allow) lets requests through, b (deny) answers 503.
    redis_server.stop()
    time.sleep(0.3)
    assert [_status(ports["a"]) for _ in range(3)] == [200, 200, 200]
    assert [_status(ports["b"]) for _ in range(3)] == [503, 503, 503]

    # Redis back (empty: no persistence): both processes limit again, by themselves.
    redis_server.start()
    deadline = time.monotonic() + 20
    while _status(ports["b"]) == 503:
        assert time.monotonic() < deadline, "gateway b did not reconnect to Redis"
        time.sleep(0.2)
    while True:
        status = _status(ports["a"])
        if status == 429:
            break
        assert time.monotonic() < deadline, "gateway a did not reconnect to Redis"
        time.sleep(0.05)
    # Both share the same (new) count: whatever is left is refused by both.
    assert _burst(ports, 6) == [429] * 6
