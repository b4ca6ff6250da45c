"""
One worker slot in the supervisor: starting its process, the control
connection, noticing its end, and restarting it.

A worker that dies is restarted at once if it had run for a while, and
with a growing delay (0.5 s doubling up to 30 s) while it keeps dying
early (a bad plugin, a missing file), so a crash loop does not eat the CPU.
Each end is logged with why: the exit status or the signal.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.protocols import amp

from twistgate.gc_tuning import worker_environment
from twistgate.workers import control
from twistgate.workers.logs import LineRelay, relay_log_line
from twistgate.workers.sockets import family_name

_log = Logger()

#: A worker that ran at least this long before it ended is restarted at once.
STABLE_AFTER = 10.0
FIRST_DELAY = 0.5
MAX_DELAY = 30.0


def describe_end(reason: Any) -> str:
    """``exited with status 1`` / ``was killed by signal 9 (SIGKILL)``."""
    value = getattr(reason, "value", reason)
    if isinstance(value, ProcessDone):
        return "exited with status 0"
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            try:
                name = signal.Signals(value.signal).name
            except ValueError:
                name = "?"
            return f"was killed by signal {value.signal} ({name})"
        return f"exited with status {value.exitCode}"
    return f"ended ({value})"


def restart_delay(quick_failures: int) -> float:
    if quick_failures <= 0:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * 2 ** (quick_failures - 1))


class SupervisorControl(amp.AMP):
    """The supervisor's end of one worker's control connection."""

    def __init__(self, slot: "WorkerSlot") -> None:
        super().__init__()
        self.slot = slot

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if self.slot.control is self:
            self.slot.control = None

    @control.Ready.responder
    def ready(self, index: int, pid: int, version: int) -> Dict[str, Any]:
        self.slot.became_ready(version)
        return {}

    @control.Decide.responder
    def decide(self, sizes: List[int], keys: List[str], limits: List[int]) -> Dict[str, Any]:
        return {"values": self.slot.supervisor.limits.decide_batch(sizes, keys, limits)}


class _ControlFactory(Factory):
    """Builds the one control connection of a slot's process and hands it to the slot."""

    noisy = False

    def __init__(self, slot: "WorkerSlot") -> None:
        self.slot = slot

    def buildProtocol(self, addr: Any) -> SupervisorControl:
        protocol = SupervisorControl(self.slot)
        protocol.factory = self
        self.slot.control = protocol
        return protocol


class WorkerProcess(ProcessProtocol):
    """The worker's pipes (standard output and error) and its end."""

    def __init__(self, slot: "WorkerSlot") -> None:
        self.slot = slot
        self.err = LineRelay(lambda line: relay_log_line(_log, slot.index, line))
        self.out = LineRelay(slot.supervisor.write_access_line)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        (self.err if fd == 2 else self.out).feed(data)

    def processEnded(self, reason: Any) -> None:
        self.err.flush()
        self.out.flush()
        self.slot.ended(reason)


class WorkerSlot:
    """Worker number ``index``: at most one process at a time."""

    def __init__(self, supervisor: Any, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.clock = supervisor.reactor
        self.process: Any = None
        self.control: Optional[SupervisorControl] = None
        self.pid: Optional[int] = None
        self.version = 0
        self.ready = False
        self.ever_ready = False
        self.started_at = 0.0
        self.restarts = 0
        self.quick_failures = 0
        self.last_end: Optional[str] = None
        self.stopping = False
        self._restart: Any = None
        self._exited: List[Deferred[None]] = []
        self._kill: Any = None

    @property
    def admin_socket(self) -> str:
        return os.path.join(self.supervisor.rundir, f"worker-{self.index}.sock")

    # -- start -------------------------------------------------------------

    def start(self) -> None:
        self._restart = None
        supervisor = self.supervisor
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_fds: Dict[int, Any] = {1: "r", 2: "r", control.CONTROL_FD: child.fileno()}
        args = [
            sys.executable, "-m", "twistgate.workers.worker",
            "--index", str(self.index),
            "--config", supervisor.snapshot, "--source", supervisor.source,
            "--version", str(supervisor.version), "--admin-socket", self.admin_socket,
            "--board", supervisor.board,
        ]
        for offset, bound in enumerate(supervisor.sockets):
            fd = control.FIRST_LISTENER_FD + offset
            child_fds[fd] = bound.fd
            args += ["--listener", f"{bound.name}={fd}:{family_name(bound.family)}"]
        try:
            os.unlink(self.admin_socket)
        except FileNotFoundError:
            pass
        try:
            self.process = self.clock.spawnProcess(
                WorkerProcess(self), sys.executable, args, env=worker_environment(os.environ), path=os.getcwd(), childFDs=child_fds
            )
        except Exception:
            parent.close()
            child.close()
            _log.failure("worker {index}: could not start a process", index=self.index)
            self._schedule_restart()
            return
        child.close()
        self.pid = self.process.pid
        self.version = supervisor.version
        self.ready = False
        self.started_at = self.clock.seconds()
        self.control = None
        self.clock.adoptStreamConnection(parent.fileno(), socket.AF_UNIX, _ControlFactory(self))
        parent.close()  # adopted as a duplicate
        _log.info("worker {index} started (pid {pid})", index=self.index, pid=self.pid)

    def became_ready(self, version: int) -> None:
        self.ready = True
        self.ever_ready = True
        self.version = version
        _log.info("worker {index} (pid {pid}) is serving", index=self.index, pid=self.pid)
        self.supervisor.worker_ready(self)

    # -- calls ---------------------------------------------------------------

    def call(self, command: Any, timeout: float, **arguments: Any) -> "Deferred[Any]":
        if self.control is None or not self.ready:
            return fail(RuntimeError(f"worker {self.index} is not running"))
        d = self.control.callRemote(command, **arguments)
        return d.addTimeout(timeout, self.clock)

    # -- end and restart -----------------------------------------------------------

    def ended(self, reason: Any) -> None:
        ran = self.clock.seconds() - self.started_at
        why = describe_end(reason)
        self.last_end = why
        pid, self.pid, self.process = self.pid, None, None
        self.ready = False
        if self.control is not None and self.control.transport is not None:
            self.control.transport.loseConnection()
        self.control = None
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        self.supervisor.worker_ended(self, pid)
        if self.stopping or self.supervisor.stopping:
            _log.info("worker {index} (pid {pid}) {why}", index=self.index, pid=pid, why=why)
            waiters, self._exited = self._exited, []
            for d in waiters:
                d.callback(None)
            return
        self.quick_failures = self.quick_failures + 1 if ran < STABLE_AFTER or not self.ever_ready else 0
        delay = restart_delay(self.quick_failures)
        _log.error(
            "worker {index} (pid {pid}) {why} after {ran:.1f}s; restarting it {when}",
            index=self.index, pid=pid, why=why, ran=ran,
            when=f"in {delay:g}s ({self.quick_failures} early ends in a row)" if delay else "now",
        )
        self.restarts += 1
        self._schedule_restart(delay)

    def _schedule_restart(self, delay: Optional[float] = None) -> None:
        if delay is None:
            self.quick_failures += 1
            delay = restart_delay(self.quick_failures)
        self._restart = self.clock.callLater(delay, self.start)

    # -- stop ----------------------------------------------------------------

    def signal(self, name: Any) -> None:
        if self.process is not None:
            try:
                self.process.signalProcess(name)
            except ProcessExitedAlready:
                pass

    def stop(self, grace: float) -> "Deferred[None]":
        """SIGTERM (the worker drains), SIGKILL after ``grace`` seconds; fires when it is gone."""
        self.stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        if self.process is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._exited.append(d)
        self.signal("TERM")
        self._kill = self.clock.callLater(grace, self._force)
        return d

    def _force(self) -> None:
        _log.warn("worker {index} (pid {pid}) did not exit in time: SIGKILL", index=self.index, pid=self.pid)
        self.signal("KILL")

    def describe(self) -> Dict[str, Any]:
        return {
            "index": self.index, "pid": self.pid, "ready": self.ready, "version": self.version,
            "uptime_seconds": round(self.clock.seconds() - self.started_at, 3) if self.pid else None,
            "restarts": self.restarts, "last_end": self.last_end,
        }


