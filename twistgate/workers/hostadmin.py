"""
The admin listener of a host with workers, served by the supervisor.

It keeps the single-process API (`twistgate.ops.admin.AdminResource`: the
token, the paths, the JSON bodies) and answers for the whole set:

* ``/metrics``, ``/admin/stats``, ``/admin/upstreams``, ``/admin/health``:
  each worker's answer, read over its private admin socket, merged
  (`twistgate.workers.merge`; stats pool the workers' latency samples, so
  percentiles are the host's);
* ``/admin/routes``, ``/admin/config``, ``/admin/explain``: every worker
  runs the same configuration version, so one worker answers;
* ``/admin/keys``: handled by one worker (the store is shared); after a
  revocation every worker forgets its cached answer for that key at once;
  the list shows each key's latest use on any worker;
* ``/admin/stats/history``, ``/admin/upstreams/{name}/drain|undrain``,
  ``/admin/audit``: the host's (`twistgate.workers.hostcockpit`);
* ``POST /admin/reload``: the supervisor's two-phase reload;
* ``/livez``, ``/readyz``: the supervisor's own state.
"""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.logger import Logger
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, _HTTP11ClientFactory, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twistgate import __version__
from twistgate.errors import GatewayError
from twistgate.ops.admin import AdminResource
from twistgate.ops.audit import AuditTrail
from twistgate.ops.stats import Stats
from twistgate.workers import control, merge
from twistgate.workers.hostcockpit import HostCockpit

_log = Logger()

#: How long one worker has to answer an admin read.
WORKER_TIMEOUT = 5.0


class HostOps:
    """The supervisor's own numbers: reloads, configuration version, workers; and the carried-over counts."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reloads = Counter("twistgate_config_reloads", "Configuration reloads, by result.", ("result",), registry=r)
        self.last_reload_ok = Gauge("twistgate_config_last_reload_successful", "1 if the last reload succeeded (or none happened).", registry=r)
        self.last_reload_time = Gauge("twistgate_config_last_reload_success_timestamp_seconds", "When the serving configuration was loaded.", registry=r)
        self.generation = Gauge("twistgate_config_generation", "The serving configuration's generation (1 at start).", registry=r)
        self.workers_ready = Gauge("twistgate_workers_ready", "Worker processes serving now.", registry=r)
        self.workers = Gauge("twistgate_workers", "Worker processes configured.", registry=r)
        self.restarts = Counter("twistgate_worker_restarts", "Worker processes that ended unexpectedly and were restarted.", registry=r)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.last_reload_ok.set(1)
        self.last_reload_time.set(clock.seconds())
        self.generation.set(1)
        self.last_reload: Optional[Dict[str, Any]] = None
        self.audit = AuditTrail(clock)  # the host's: workers record nothing
        self.scraped: Dict[int, Tuple[Optional[int], Dict[str, merge.Family]]] = {}  # index -> (pid, families)
        self.carried: List[Dict[str, merge.Family]] = []

    def reload_done(self, ok: bool, summary: Dict[str, Any]) -> None:
        self.reloads.labels("success" if ok else "failure").inc()
        self.last_reload_ok.set(1 if ok else 0)
        if ok:
            self.last_reload_time.set(self.clock.seconds())
            self.generation.set(summary["generation"])
        self.last_reload = {"ok": ok, "at": self.clock.seconds(), **summary}

    def worker_ended(self, index: int, pid: Optional[int], *, stopping: bool) -> None:
        if not stopping:
            self.restarts.inc()
        seen = self.scraped.pop(index, None)
        if seen is not None and seen[0] == pid:
            self.carried.append(merge.carried(seen[1]))


@implementer(IAgentEndpointFactory)
class _SocketOf:
    def __init__(self, reactor: Any, path: str) -> None:
        self.reactor = reactor
        self.path = path

    def endpointForURI(self, uri: Any) -> Any:
        return UNIXClientEndpoint(self.reactor, self.path, timeout=WORKER_TIMEOUT)


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False  # one log line per admin read would drown the log


def admin_pool(reactor: Any) -> HTTPConnectionPool:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool._factory = _QuietFactory
    pool.maxPersistentPerHost = 2
    return pool


@inlineCallbacks
def ask(
    reactor: Any, slot: Any, method: bytes, path: bytes, headers: Optional[Headers] = None, body: Any = None,
    pool: Optional[HTTPConnectionPool] = None,
) -> Any:
    """One request to a worker's admin socket: ``(status, headers, body bytes)``."""
    agent = Agent.usingEndpointFactory(reactor, _SocketOf(reactor, slot.admin_socket), pool=pool)
    # The host names the worker: pooled connections are per host, so never shared between workers.
    d = agent.request(method, b"http://worker-%d%s" % (slot.index, path), headers, body)
    d.addTimeout(WORKER_TIMEOUT, reactor)
    response = yield d
    data = yield readBody(response)
    return response.code, response.headers, data


class HostAdmin(AdminResource):
    """The supervisor's admin resource: the workers' answers, as one gateway's."""

    cockpit_class = HostCockpit

    def __init__(self, supervisor: Any) -> None:
        super().__init__(_Runtime(supervisor))
        self.supervisor = supervisor
        self.reactor = supervisor.reactor
        self.pool = admin_pool(self.reactor)

    # -- reading the workers -----------------------------------------------------

    def ask(self, slot: Any, method: bytes, path: bytes, headers: Optional[Headers] = None, body: Any = None) -> Any:
        """One request to a worker's admin socket: ``(status, headers, body bytes)``."""
        return ask(self.reactor, slot, method, path, headers, body, pool=self.pool)

    @inlineCallbacks
    def _each(self, path: bytes) -> Any:
        slots = self.supervisor.ready_slots()
        results = yield DeferredList([ask(self.reactor, s, b"GET", path, pool=self.pool) for s in slots], consumeErrors=True)
        answers = []
        for slot, (ok, result) in zip(slots, results):
            if ok and result[0] == 200:
                answers.append((slot, result[2]))
            else:
                why = result.getErrorMessage() if not ok else f"status {result[0]}"
                _log.warn("worker {index} did not answer {path}: {why}", index=slot.index, path=path.decode(), why=why)
        return answers

    @inlineCallbacks
    def _each_json(self, path: bytes) -> Any:
        answers = yield self._each(path)
        return [(slot.index, json.loads(data)) for slot, data in answers]

    @inlineCallbacks
    def _one_json(self, request: Any) -> Any:
        slots = self.supervisor.ready_slots()
        if not slots:
            raise GatewayError("No worker is serving.", status=503, code="no_worker")
        status, _, data = yield ask(self.reactor, slots[0], b"GET", request.uri, pool=self.pool)
        body = json.loads(data)
        if isinstance(body, dict) and "generation" in body:
            body["generation"] = self.supervisor.version
        return body, status

    # -- endpoints -------------------------------------------------------------------

    def routes_list(self, request: Any) -> Any:
        return self._one_json(request)

    def config(self, request: Any) -> Any:
        return self._one_json(request)

    def explain(self, request: Any) -> Any:
        return self._one_json(request)

    @inlineCallbacks
    def upstreams(self, request: Any) -> Any:
        answers = yield self._each_json(b"/admin/upstreams")
        return {"generation": self.supervisor.version, "workers": len(answers), "upstreams": merge.upstreams(answers)}, 200

    @inlineCallbacks
    def stats(self, request: Any) -> Any:
        supervisor = self.supervisor
        answers = yield self._each_json(b"/admin/_export")
        stats = Stats.merged(self.reactor, [answer["stats"] for _, answer in answers])
        body = stats.snapshot()
        body.update(
            generation=supervisor.version,
            uptime_seconds=round(self.reactor.seconds() - supervisor.ops.started, 3),
            in_flight=sum(answer["in_flight"] for _, answer in answers),
            open_connections=sum(sum(answer["connections"].values()) for _, answer in answers),
            workers=len(answers),
        )
        return body, 200

    @inlineCallbacks
    def health(self, request: Any) -> Any:
        supervisor = self.supervisor
        answers = yield self._each_json(b"/admin/health")
        by_index = dict(answers)
        upstreams: Dict[str, Dict[str, int]] = {}
        for _, answer in answers:
            for name, counts in answer.get("upstreams", {}).items():
                seen = upstreams.setdefault(name, dict(counts))
                seen["healthy"] = min(seen["healthy"], counts["healthy"])
        ready, why = supervisor.readiness()
        workers = []
        for slot in supervisor.slots:
            row = slot.describe()
            answer = by_index.get(slot.index)
            row["in_flight"] = answer["in_flight"] if answer else None
            row["open_connections"] = answer["open_connections"] if answer else None
            workers.append(row)
        body = {
            "status": "draining" if supervisor.stopping else ("ok" if ready else why),
            "version": __version__,
            "generation": supervisor.version,
            "uptime_seconds": round(self.reactor.seconds() - supervisor.ops.started, 3),
            "in_flight": sum(a["in_flight"] for _, a in answers),
            "open_connections": sum(a["open_connections"] for _, a in answers),
            "routes": answers[0][1]["routes"] if answers else len(supervisor.config.routes),
            "upstreams": upstreams,
            "last_reload": supervisor.ops.last_reload,
            "api_keys": bool(answers and answers[0][1].get("api_keys")),
            "workers": workers,
        }
        return body, (200 if ready else 503)

    # -- /metrics --------------------------------------------------------------------

    def metrics_text(self) -> Any:
        d = self._each(b"/metrics")

        def merged(answers: List[Tuple[Any, bytes]]) -> Any:
            ops = self.supervisor.ops
            ops.workers.set(len(self.supervisor.slots))
            ops.workers_ready.set(len(self.supervisor.ready_slots()))
            live = []
            for slot, data in answers:
                families = merge.parse(data.decode("utf-8"))
                ops.scraped[slot.index] = (slot.pid, families)
                live.append((str(slot.index), families))
            every = live + [("ended", families) for families in ops.carried]
            registry = CollectorRegistry(auto_describe=False)
            registry.register(merge.MergedCollector(merge.merge(every)))
            registry.register(_Forward(ops.registry))
            return registry

        return d.addCallback(merged)

    def _dispatch(self, request: Any, request_id: str) -> Any:
        if request.path == b"/metrics" and request.method in (b"GET", b"HEAD"):
            if self.settings().metrics_auth:
                self._authorise(request)
            d = self.metrics_text()

            def send(registry: Any) -> None:
                accept = request.getHeader(b"accept")
                encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else None)
                request.setHeader(b"Content-Type", content_type.encode("ascii"))
                request.write(encoder(registry))
                request.finish()

            d.addCallback(send).addErrback(self._failed, request, request_id)
            return NOT_DONE_YET
        return super()._dispatch(request, request_id)

    # -- /admin/keys -------------------------------------------------------------------

    def _keys(self, request: Any, rest: list) -> Any:
        if request.method in (b"GET", b"HEAD") and not any(rest):  # the list: every worker's last use of each key
            d = self.cockpit.keys_list(request)
            d.addCallback(lambda answer: self._send(request, *answer))
            d.addErrback(self._failed, request, (request.getHeader(b"x-request-id") or b"").decode("latin-1"))
            return NOT_DONE_YET
        slots = self.supervisor.ready_slots()
        if not slots:
            raise GatewayError("No worker is serving.", status=503, code="no_worker")
        body = request.content.read() if request.content is not None else b""
        skip = (b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te", b"upgrade")
        headers = Headers({k: v for k, v in request.requestHeaders.getAllRawHeaders() if k.lower() not in skip})
        producer = FileBodyProducer(io.BytesIO(body)) if body else None
        request_id = request.getHeader(b"x-request-id") or b""
        d = ask(self.reactor, slots[0], request.method, request.uri, headers, producer, pool=self.pool)

        def answered(result: Tuple[int, Headers, bytes]) -> Any:
            status, headers, data = result
            if request.method == b"DELETE" and status < 300 and rest:
                self._forget(rest[0].decode("utf-8", "replace"))
            request.setResponseCode(status)
            for name in (b"content-type", b"www-authenticate", b"location"):
                value = headers.getRawHeaders(name)
                if value:
                    request.setHeader(name, value[0])
            request.write(data)
            request.finish()

        d.addCallback(answered).addErrback(self._failed, request, request_id.decode("latin-1"))
        return NOT_DONE_YET

    def _forget(self, key_id: str) -> None:
        for slot in self.supervisor.ready_slots():
            slot.call(control.ForgetKey, WORKER_TIMEOUT, key_id=key_id).addErrback(
                lambda f, i=slot.index: _log.warn("worker {index} did not forget a revoked key: {e}", index=i, e=f.getErrorMessage())
            )


class _Forward:
    """The supervisor's own registry inside the merged one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def describe(self) -> List[Any]:
        return []

    def collect(self) -> Any:
        return self.registry.collect()


class _Runtime:
    """What `AdminResource` reads of its runtime, from the supervisor."""

    def __init__(self, supervisor: Any) -> None:
        self.supervisor = supervisor
        self.ops = supervisor.ops

    def admin_settings(self) -> Any:
        return self.supervisor.admin_settings()

    def readiness(self) -> Any:
        return self.supervisor.readiness()

    @property
    def draining(self) -> bool:
        return self.supervisor.stopping

    def reload(self, path: Optional[str] = None, *, reason: str = "admin") -> Any:
        return self.supervisor.reload(reason=reason)
