"""
A worker process: ``python -m twistgate.workers.worker``, started by the
supervisor (never by hand).

It serves the same `GatewayService` as a single process, with three
differences: its listeners are sockets adopted from the supervisor, its admin
resource listens on a private UNIX socket that only the supervisor reads,
and reloads come from the supervisor in two phases (`Prepare`, then `Commit`
or `Abort`) instead of SIGHUP or a file watch.  SIGTERM drains it like a
single process; losing the supervisor does too.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from typing import Any, Dict, List, Optional

from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from twistgate.config import ConfigError
from twistgate.ops.admin import AdminResource
from twistgate.workers import control
from twistgate.workers.logs import begin_worker_logging
from twistgate.workers.snapshot import load_snapshot
from twistgate.workers.sockets import AdoptedEndpoint, family_from_name

_log = Logger()


class WorkerAdmin(AdminResource):
    """The worker's admin resource on its private socket: the supervisor already checked the token."""

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.routes[(b"GET", b"_export")] = self.export
        self.routes[(b"GET", b"_history")] = self.history_export
        self.cockpit.audit = None  # the supervisor records the host's admin actions

    def _authorise(self, request: Any) -> None:
        return None  # only the supervisor can reach this socket (a 0700 directory)

    def export(self, request: Any) -> Dict[str, Any]:
        ops = self.runtime.ops
        return {
            "stats": ops.stats.export(),
            "in_flight": ops.in_flight(),
            "connections": ops.connections,
            "generation": ops.number,
        }

    def history_export(self, request: Any) -> Dict[str, Any]:
        """This worker's history buckets closed after ``?since=`` and its open one (`twistgate.workers.hosthistory`)."""
        values = request.args.get(b"since")
        since = float(values[0]) if values else 0.0
        return self.runtime.ops.history.export(since)


class Link:
    """The worker's end of the control channel (`protocol` is None once it is lost)."""

    def __init__(self) -> None:
        self.protocol: Optional[amp.AMP] = None


class WorkerControl(amp.AMP):
    """Answers the supervisor's commands for one worker's `GatewayService`."""

    def __init__(self, worker: "Worker") -> None:
        super().__init__()
        self.worker = worker

    def connectionMade(self) -> None:
        super().connectionMade()
        self.worker.link.protocol = self

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.worker.link.protocol = None
        self.worker.supervisor_lost()

    @control.Prepare.responder
    def prepare(self, version: int, path: str, reason: str) -> Any:
        return self.worker.prepare(version, path, reason)

    @control.Commit.responder
    def commit(self, version: int) -> Any:
        return {"outcome": self.worker.commit(version)}

    @control.Abort.responder
    def abort(self, version: int) -> Any:
        return self.worker.abort(version).addCallback(lambda _: {})

    @control.ForgetKey.responder
    def forget_key(self, key_id: str) -> Any:
        self.worker.forget_key(key_id)
        return {}


class Worker:
    """One worker: its service, its control link, its pending reload."""

    def __init__(self, reactor: Any, index: int, source: str, version: int) -> None:
        self.reactor = reactor
        self.index = index
        self.source = source
        self.version = version
        self.link = Link()
        self.service: Any = None
        self.pending: Dict[int, Any] = {}  # version -> Prepared
        self.stopping = False
        self.stop_asked = False

    def load(self, path: str) -> Any:
        return load_snapshot(path, self.source)

    @inlineCallbacks
    def prepare(self, version: int, path: str, reason: str) -> Any:
        outcome = yield self.service.reloader.prepare(path, reason=reason)
        if isinstance(outcome, dict):
            return {"ok": False, "outcome": outcome}
        self.pending[version] = outcome
        return {"ok": True, "outcome": {"ok": True}}

    def commit(self, version: int) -> Dict[str, Any]:
        prepared = self.pending.pop(version, None)
        if prepared is None:
            return {"ok": False, "message": f"worker {self.index}: version {version} was not prepared"}
        for stale in list(self.pending):  # at most one is pending: the supervisor serialises reloads
            self.abort(stale)
        outcome = self.service.reloader.commit(prepared)
        self.version = version
        return outcome

    def abort(self, version: int) -> Any:
        from twisted.internet.defer import succeed

        prepared = self.pending.pop(version, None)
        if prepared is None:
            return succeed(None)
        return self.service.reloader.abort(prepared, "another worker refused the configuration")

    def forget_key(self, key_id: str) -> None:
        auth = self.service.generation.services.auth
        for authenticator in getattr(auth, "authenticators", {}).values() if auth is not None else ():
            forget = getattr(authenticator, "forget", None)
            if forget is not None:
                forget(key_id)

    def ready(self, _: Any = None) -> None:
        protocol = self.link.protocol
        if protocol is None:
            return
        protocol.callRemote(control.Ready, index=self.index, pid=os.getpid(), version=self.version).addErrback(
            lambda f: _log.failure("worker {index}: telling the supervisor it is ready failed", f, index=self.index)
        )

    def supervisor_lost(self) -> None:
        self.stop("the supervisor is gone")

    def stop(self, why: str) -> None:
        """Drain and exit, once: a worker often gets SIGTERM twice (from its process group and its supervisor)."""
        if self.stopping or self.stop_asked or not self.reactor.running:
            return
        self.stop_asked = True
        _log.info("worker {index}: {why}; draining and exiting", index=self.index, why=why)
        self.reactor.stop()


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="twistgate-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--config", required=True, help="the configuration snapshot to start from")
    parser.add_argument("--source", required=True, help="the configuration file the snapshot was read from")
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--admin-socket", required=True)
    parser.add_argument("--listener", action="append", default=[], help="NAME=FD:FAMILY")
    parser.add_argument("--board", default=None, help="the supervisor's board of connections per worker")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    begin_worker_logging(sys.stderr)
    from twisted.internet import reactor

    from twistgate.gc_tuning import settle
    from twistgate.generation import Generation, Shared
    from twistgate.ops.runtime import Operations
    from twistgate.service import GatewayService
    from twistgate.workers.limits import HostBackend

    worker = Worker(reactor, args.index, args.source, args.version)
    fair = None
    if args.board:
        from twisted.internet.task import LoopingCall

        from twistgate.workers.fairness import HEARTBEAT, Board, FairShare

        def connections() -> int:
            return sum(worker.service.ops.connections.values()) if worker.service is not None else 0

        fair = FairShare(Board(args.board, args.index - 1), reactor, connections)
        heartbeat = LoopingCall(fair.heartbeat)
        heartbeat.clock = reactor
        heartbeat.start(HEARTBEAT)
    adopted: Dict[str, AdoptedEndpoint] = {}
    for spec in args.listener:
        name, _, where = spec.rpartition("=")
        fd, _, family = where.partition(":")
        adopted[name] = AdoptedEndpoint(reactor, int(fd), family_from_name(family) or 0, fair)
    try:
        config, files = worker.load(args.config)
        shared = Shared(Operations(reactor), memory_limits=lambda section, clock: HostBackend(worker.link, clock))
        generation = Generation(config, reactor, shared=shared, files=files)
        worker.service = GatewayService(
            config, reactor, generation,
            listener_endpoint=lambda listener, index: adopted[listener.name],
            admin_endpoint=f"unix:{args.admin_socket}:mode=600",
            admin_resource=WorkerAdmin,
            triggers=False, demo=False, load=worker.load,
        )
    except (ConfigError, KeyError) as error:
        _log.critical("worker {index}: cannot start: {error}", index=args.index, error=error)
        return 3
    factory = Factory.forProtocol(lambda: WorkerControl(worker))  # type: ignore[arg-type]
    reactor.adoptStreamConnection(control.CONTROL_FD, socket.AF_UNIX, factory)
    os.close(control.CONTROL_FD)
    worker.service.startService()
    worker.service.ready.addCallback(worker.ready)
    worker.service.ready.addCallback(settle)  # as a single process does (twistgate.gc_tuning)
    worker.service.reloader.after_retire.append(settle)

    def stopping() -> Any:
        worker.stopping = True
        return worker.service.stopService()

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, frame: reactor.callFromThread(worker.stop, signal.Signals(n).name))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads come from the supervisor, in two phases
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
