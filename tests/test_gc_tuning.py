"""The gateway process's garbage collector settings (twistgate.tap applies them; the supervisor gives its workers theirs)."""

from __future__ import annotations

import gc
import platform
import sys
import types
from typing import Any, Dict, List

import pytest
from twisted.internet.task import Clock

from twistgate import gc_tuning
from twistgate.gc_tuning import PYPY_GC_SETTINGS, settle, worker_environment
from twistgate.workers.slot import WorkerSlot


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="gc.freeze is CPython's (settle does nothing elsewhere)")
def test_settle_collects_cycles_then_freezes_what_is_alive():
    """Cycles made before are freed by its collection; what is alive is frozen; settling again unfreezes first."""
    try:
        cycle = _Cycle()
        alive = _Cycle()
        del cycle
        settle()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert not any(isinstance(o, _Cycle) and o is not alive for o in gc.get_objects())
        settle()
        assert gc.get_freeze_count() <= frozen + 100  # unfrozen, collected and frozen again: not piled up
    finally:
        gc.unfreeze()


def test_settle_on_pypy_lets_the_jit_trace_a_whole_request_and_freezes_nothing(monkeypatch):
    calls: List[str] = []
    monkeypatch.setattr(gc_tuning, "ON_PYPY", True)
    monkeypatch.setitem(sys.modules, "pypyjit", types.SimpleNamespace(set_param=calls.append))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"), raising=False)
    settle()
    assert calls == ["trace_limit=%d" % gc_tuning.JIT_TRACE_LIMIT]


@pytest.mark.skipif(platform.python_implementation() != "PyPy", reason="PyPy's JIT")
def test_pypy_takes_the_trace_limit():
    import pypyjit

    try:
        settle()  # PyPy raises for a limit above its maximum
    finally:
        pypyjit.set_param("trace_limit=%d" % pypyjit.defaults["trace_limit"])


def test_workers_on_pypy_get_the_collector_settings_the_operator_left_unset(monkeypatch):
    monkeypatch.setattr(gc_tuning, "ON_PYPY", True)
    environ = {"PATH": "/usr/bin", "PYPY_GC_NURSERY": "4MB"}
    env = worker_environment(environ)
    assert env == {**PYPY_GC_SETTINGS, "PATH": "/usr/bin", "PYPY_GC_NURSERY": "4MB"}
    assert environ == {"PATH": "/usr/bin", "PYPY_GC_NURSERY": "4MB"}  # the supervisor's own is left alone


def test_workers_on_cpython_get_the_environment_unchanged(monkeypatch):
    monkeypatch.setattr(gc_tuning, "ON_PYPY", False)
    assert worker_environment({"PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}


def test_pypy_settings_are_sizes_pypy_reads():
    """PyPy takes ``<digits>`` with an optional KB, MB or GB; anything else is ignored without a word."""
    for value in PYPY_GC_SETTINGS.values():
        number, unit = value[:-2], value[-2:]
        assert number.isdigit() and unit in ("KB", "MB", "GB"), value


class _Reactor(Clock):
    """Records the processes a slot spawns; refuses to start them (the slot then schedules a restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Dict[str, Any]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: Any, env: Any = None, **kwargs: Any) -> Any:
        self.spawned.append(env)
        raise OSError("not in a unit test")


class _Supervisor:
    def __init__(self, rundir: str) -> None:
        self.reactor = _Reactor()
        self.rundir = rundir
        self.snapshot = self.source = self.board = "unused"
        self.version = 1
        self.sockets: List[Any] = []

    def write_access_line(self, line: bytes) -> None:
        pass


def test_the_supervisor_starts_workers_with_the_collector_settings(monkeypatch, tmp_path):
    monkeypatch.setattr(gc_tuning, "ON_PYPY", True)
    monkeypatch.delenv("PYPY_GC_NURSERY", raising=False)
    monkeypatch.setenv("PYPY_GC_MIN", "64MB")
    supervisor = _Supervisor(str(tmp_path))
    WorkerSlot(supervisor, 1).start()
    [env] = supervisor.reactor.spawned
    assert env["PYPY_GC_NURSERY"] == PYPY_GC_SETTINGS["PYPY_GC_NURSERY"]
    assert env["PYPY_GC_MIN"] == "64MB"
