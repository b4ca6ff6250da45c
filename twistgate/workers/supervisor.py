"""
The supervisor: the process twistd runs when ``workers`` is more than one.

It binds every listener once (`sockets`), starts the workers (`slot`),
serves the admin listener for the whole set (`hostadmin`) and the demo
backends, keeps the host's memory rate limits (`limits`), and:

* reloads in two phases (SIGHUP, the file watch, ``POST /admin/reload``):
  it reads and checks the file itself, writes the text it checked as a
  snapshot, asks every worker to `Prepare` it (build and start the new
  generation, not serve it), then tells all to `Commit` if every one
  succeeded, or all to `Abort` if any refused: the old configuration then
  stays everywhere.  A worker that starts meanwhile is brought to the
  committed version when it is ready.
* stops (SIGTERM, SIGINT): ``/readyz`` turns 503, every worker gets
  SIGTERM and drains like a single process (stop accepting, finish what is
  in flight up to ``limits.drain_timeout``), a worker still running 10 s
  after that is killed, and the supervisor exits last.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, DeferredLock, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web.server import Site

from twistgate._text import plural
from twistgate._twisted_compat import fail_start_loudly
from twistgate.config import ConfigError
from twistgate.config.model import GatewayConfig
from twistgate.ops.accesslog import standard_output
from twistgate.ops.logreopen import LogReopen
from twistgate.ops.audit import audited_reload
from twistgate.ops.reload import issue_dicts
from twistgate.ops.triggers import ReloadTriggers
from twistgate.workers import control, fairness, snapshot
from twistgate.workers.hostadmin import HostAdmin, HostOps
from twistgate.workers.limits import HostLimits
from twistgate.workers.slot import WorkerSlot
from twistgate.workers.sockets import BoundSocket, bind
from twistgate.startup import listening

_log = Logger()

#: How long a worker has to answer Prepare (it builds and starts a generation).
PREPARE_TIMEOUT = 60.0
#: Added to limits.drain_timeout before a worker that is still stopping is killed.
KILL_GRACE = 10.0


class Supervisor(MultiService):
    """N workers serving every listener, and the admin listener answering for them all."""

    def __init__(self, config: GatewayConfig, text: str, reactor: Any, count: int) -> None:
        """:param text: the configuration file's text that `config` was read from (the first snapshot)."""
        super().__init__()
        if config.source is None:
            raise ValueError("workers need a configuration file (reloads and restarts read it)")
        self.config = config
        self.source = config.source
        self.text = text
        self.reactor = reactor
        self.count = count
        self.version = 1
        self.snapshot = ""
        self.rundir = ""
        self.board = ""
        self.sockets: List[BoundSocket] = []
        self.slots = [WorkerSlot(self, index) for index in range(1, count + 1)]
        rate_limiting = config.sections.get("rate_limiting")
        self.limits = HostLimits(reactor, rate_limiting.max_keys if rate_limiting is not None else 100_000)
        self.ops = HostOps(reactor)
        self.stopping = False
        self.triggers = ReloadTriggers(reactor, lambda reason: audited_reload(self.ops.audit, self.reload, reason))
        self._lock = DeferredLock()
        self.log_reopen = LogReopen(reactor, self._reopen_logs)
        self._endpoints: Dict[str, str] = {}  # admin, demo -> endpoint string (startup errors)
        self.admin: Optional[StreamServerEndpointService] = None
        self.host_admin: Optional[HostAdmin] = None
        admin = config.sections.get("admin")
        if admin is not None:
            self.host_admin = HostAdmin(self)
            site = Site(self.host_admin, reactor=reactor)
            site.displayTracebacks = False
            site.log = lambda request: None  # type: ignore[method-assign]
            self.admin = self._serve("admin", admin.endpoint, site)
        if config.demo is not None:
            from twistgate.demo import demo_resource

            demo = Site(demo_resource(reactor), reactor=reactor)
            demo.log = lambda request: None  # type: ignore[method-assign]
            self._serve("demo", config.demo.endpoint, demo)

    def _serve(self, name: str, endpoint: str, site: Any) -> StreamServerEndpointService:
        service = StreamServerEndpointService(serverFromString(self.reactor, endpoint), site)
        self._endpoints[name] = endpoint
        service.setName(name)
        fail_start_loudly(service)
        service.setServiceParent(self)
        return service

    # -- what the admin listener reads ----------------------------------------

    def admin_settings(self) -> Any:
        return self.config.sections.get("admin")

    @property
    def draining(self) -> bool:
        return self.stopping

    def readiness(self) -> Tuple[bool, str]:
        if self.stopping:
            return False, "draining"
        if not all(slot.ever_ready for slot in self.slots):
            return False, "starting"
        if not any(slot.ready for slot in self.slots):
            return False, "no worker is serving"
        return True, "ready"

    def ready_slots(self) -> List[WorkerSlot]:
        return [slot for slot in self.slots if slot.ready]

    def write_access_line(self, line: str) -> None:
        """A worker's standard output (the access log on ``-``), to ours: the real one, not twistd's log."""
        out = standard_output()
        out.write(line + "\n")
        out.flush()

    # -- start ---------------------------------------------------------------

    def privilegedStartService(self) -> None:
        # Bound before twistd drops privileges, as a single process binds its ports;
        # a port that cannot be opened is one line (twistgate.startup), as there.
        self._bind_listeners()
        Service.privilegedStartService(self)
        for svc in self:
            what = {"admin": "the admin listener", "demo": "the demo backends"}.get(svc.name, svc.name)
            listening(what, self._endpoints.get(svc.name, "?"), svc.privilegedStartService)

    def _bind_listeners(self) -> None:
        for listener in self.config.listeners:
            bound = listening(
                f"listener {listener.name!r}", listener.endpoint,
                lambda listener=listener: bind(self.reactor, listener.name, listener.endpoint),
            )  # fmt: skip
            self.sockets.append(bound)

    def startService(self) -> None:
        if not self.sockets:  # started without privilegedStartService (tests, embedding)
            self._bind_listeners()
        self.rundir = tempfile.mkdtemp(prefix="twistgate-workers-")  # 0700
        self.snapshot = snapshot.write(self.rundir, self.version, self.text)
        self.board = os.path.join(self.rundir, "connections")
        fairness.create(self.board, self.count)
        super().startService()
        for slot in self.slots:
            slot.start()
        if self.host_admin is not None:
            self.host_admin.cockpit.start()  # the host's history
        self.triggers.install()
        self.triggers.watch(self.config)
        self.log_reopen.install()
        _log.info(
            "twistgate supervisor (pid {pid}): {count} on {listeners}{admin}",
            pid=os.getpid(), count=plural(self.count, "worker"),
            listeners=", ".join(l.endpoint for l in self.config.listeners),
            admin=f"; admin API on {self.admin_settings().endpoint}" if self.admin_settings() is not None else "",
        )

    def _reopen_logs(self) -> None:
        """SIGUSR1 (logrotate): each serving worker reopens its own access log file."""
        for slot in self.ready_slots():
            slot.signal(signal.SIGUSR1)  # Twisted translates only HUP, STOP, INT, KILL and TERM by name

    def worker_ready(self, slot: WorkerSlot) -> None:
        if self.host_admin is not None:
            self.host_admin.cockpit.worker_ready(slot)  # the host's drains
        if slot.version != self.version and not self.stopping:
            # Started from an older snapshot while a reload committed: catch up.
            self._lock.run(self._catch_up, slot)

    @inlineCallbacks
    def _catch_up(self, slot: WorkerSlot) -> Any:
        if slot.version == self.version or not slot.ready:
            return
        try:
            answer = yield slot.call(control.Prepare, PREPARE_TIMEOUT, version=self.version, path=self.snapshot, reason="catch up")
            if not answer["ok"]:
                raise RuntimeError(answer["outcome"].get("message"))
            yield slot.call(control.Commit, PREPARE_TIMEOUT, version=self.version)
            slot.version = self.version
        except Exception as error:
            _log.error("worker {index} could not load version {version} ({error}); restarting it",
                       index=slot.index, version=self.version, error=error)
            slot.signal("TERM")

    def worker_ended(self, slot: WorkerSlot, pid: Optional[int]) -> None:
        self.ops.worker_ended(slot.index, pid, stopping=self.stopping)
        if self.board:
            fairness.forget(self.board, slot.index - 1)  # its connections are gone with it

    # -- reload --------------------------------------------------------------

    def reload(self, path: Optional[str] = None, *, reason: str = "admin") -> Any:
        """Fires with ``{"ok": bool, ...}`` (as a single process's reload); never fails."""
        return self._lock.run(self._reload, reason)

    @inlineCallbacks
    def _reload(self, reason: str) -> Any:
        try:
            text, config = yield deferToThread(snapshot.read_checked, self.source)
        except ConfigError as error:
            return self._rejected(reason, f"{self.source}: invalid configuration; the old one keeps serving.", issue_dicts(error))
        version = self.version + 1
        path = snapshot.write(self.rundir, version, text)
        slots = self.ready_slots()
        if not slots:
            return self._rejected(reason, "no worker is running to take the new configuration")
        answers = yield DeferredList(
            [s.call(control.Prepare, PREPARE_TIMEOUT, version=version, path=path, reason=reason) for s in slots],
            consumeErrors=True,
        )
        refusals = []
        for slot, (ok, answer) in zip(slots, answers):
            if not ok:
                refusals.append({"worker": slot.index, "message": answer.getErrorMessage() or answer.type.__name__})
            elif not answer["ok"]:
                refusals.append({"worker": slot.index, **answer["outcome"]})
        if refusals:
            yield DeferredList([s.call(control.Abort, PREPARE_TIMEOUT, version=version) for s in slots], consumeErrors=True)
            first = refusals[0]
            return self._rejected(
                reason, f"worker {first['worker']} refused the configuration: {first.get('message', '')}; "
                "the old one keeps serving on every worker",
                first.get("issues"), refusals,
            )
        commits = yield DeferredList([s.call(control.Commit, PREPARE_TIMEOUT, version=version) for s in slots], consumeErrors=True)
        warnings = self._adopt(config, text, version, path)
        summaries = [answer["outcome"] for ok, answer in commits if ok and answer["outcome"].get("ok")]
        for slot, (ok, answer) in zip(slots, commits):
            if not ok:  # it died between the phases: it restarts on the new version
                warnings.append(f"worker {slot.index} did not confirm the swap: {answer.getErrorMessage()}")
        for summary in summaries:
            warnings.extend(w for w in summary.get("warnings", ()) if w not in warnings)
        summary = {
            "generation": version, "reason": reason, "source": self.source,
            "changes": summaries[0].get("changes", {}) if summaries else {},
            "warnings": warnings, "workers": len(slots),
        }
        self.ops.reload_done(True, summary)
        _log.info("configuration reloaded on {n} workers ({reason}): generation {version}", n=len(slots), reason=reason, version=version)
        return {"ok": True, **summary}

    def _adopt(self, config: GatewayConfig, text: str, version: int, path: str) -> List[str]:
        """The new configuration is the host's: restarted workers start from it."""
        warnings = []
        old = self.config
        if [(l.name, l.endpoint) for l in old.listeners] != [(l.name, l.endpoint) for l in config.listeners]:
            warnings.append("listeners changed: listeners are not re-bound until a restart")
        old_admin, new_admin = old.sections.get("admin"), config.sections.get("admin")
        if (old_admin.endpoint if old_admin else None) != (new_admin.endpoint if new_admin else None):
            warnings.append("admin.endpoint changed: the admin listener is not re-bound until a restart")
        if old.sections.get("workers") != config.sections.get("workers"):
            warnings.append("workers changed: the number of workers changes at the next restart")
        rate_limiting = config.sections.get("rate_limiting")
        self.limits.resize(rate_limiting.max_keys if rate_limiting is not None else 100_000)
        self.config, self.text, self.version, self.snapshot = config, text, version, path
        snapshot.forget_older(self.rundir, version - 1)
        self.triggers.seen(self.source)
        self.triggers.watch(config)
        for warning in warnings:
            _log.warn("reload: {warning}", warning=warning)
        return warnings

    def _rejected(self, reason: str, message: str, issues: Any = None, refusals: Any = None) -> Dict[str, Any]:
        summary: Dict[str, Any] = {"reason": reason, "message": message, "generation": self.version}
        if issues:
            summary["issues"] = issues
        if refusals:
            summary["workers"] = refusals
        self.ops.reload_done(False, summary)
        _log.error("configuration reload rejected ({reason}): {message}", reason=reason, message=message)
        return {"ok": False, **summary}

    # -- stop ----------------------------------------------------------------

    @inlineCallbacks
    def stopService(self) -> Any:
        self.stopping = True
        self.triggers.uninstall()
        if self.host_admin is not None:
            self.host_admin.cockpit.stop()
        grace = self.config.limits.drain_timeout + KILL_GRACE
        _log.info("stopping {n} workers (each drains up to {drain:g}s)", n=len(self.slots), drain=self.config.limits.drain_timeout)
        yield DeferredList([slot.stop(grace) for slot in self.slots], consumeErrors=True)
        yield DeferredList([bound.close() for bound in self.sockets], consumeErrors=True)
        yield super().stopService()
        if self.host_admin is not None:
            yield self.host_admin.pool.closeCachedConnections()
        if self.rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
