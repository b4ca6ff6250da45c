"""
The operator's endpoints (`twistgate.ops.cockpit`) for a host with workers,
answered by the supervisor for all of them:

* ``GET /admin/stats/history``: the host's history (`hosthistory`);
* ``POST /admin/upstreams/{upstream}/drain|undrain``: checked here, then sent
  to every worker; ``200`` only when every worker applied it.  The
  supervisor remembers the drains and replays them to a worker that starts
  (a restart, or one that died), so every process of the host agrees;
* ``GET /admin/audit``: the supervisor's own trail (workers record nothing);
* ``GET /admin/keys``: every worker's list, with each key's latest use on any worker.
"""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import quote

from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.logger import Logger
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers

from twistgate.errors import GatewayError
from twistgate.http import request_id_from
from twistgate.ops.cockpit import Cockpit, configured_routes, error_answer, query_values
from twistgate.ops.drain import drain_request
from twistgate.workers.hosthistory import HostHistory

__all__ = ["HostCockpit"]

_log = Logger()
_JSON = Headers({b"content-type": [b"application/json"]})


class HostCockpit(Cockpit):
    """`Cockpit` for the supervisor's `twistgate.workers.hostadmin.HostAdmin`."""

    def __init__(self, admin: Any) -> None:
        super().__init__(admin)
        self.supervisor = admin.runtime.supervisor
        self.host_history = HostHistory(self.supervisor.reactor, self.supervisor.ready_slots, self._fetch_json)
        #: Upstream name -> URLs drained on the host: replayed to a worker that starts.
        self.drains: Dict[str, Set[str]] = {}

    def start(self) -> None:
        self.host_history.start()

    def stop(self) -> None:
        self.host_history.stop()

    def _fetch_json(self, slot: Any, path: bytes) -> Any:
        def parsed(answer: Tuple[int, Any, bytes]) -> Any:
            status, _, data = answer
            if status != 200:
                raise RuntimeError(f"status {status}")
            return json.loads(data)

        return self.admin.ask(slot, b"GET", path).addCallback(parsed)

    # -- endpoints -----------------------------------------------------------------

    def history(self, request: Any) -> Any:
        selected = query_values(request, b"route") or None
        d = self.host_history.answer(configured_routes(self.supervisor.config), selected)

        def answered(body: Dict[str, Any]) -> Tuple[Dict[str, Any], int]:
            body["generation"] = self.supervisor.version
            return body, 200

        return d.addCallback(answered)

    def drain(self, request: Any, upstream: str, on: bool) -> Any:
        url = drain_request(request.content.read() if request.content is not None else b"")  # 400 before any worker
        slots = self.supervisor.ready_slots()
        if not slots:
            raise GatewayError("No worker is serving.", status=503, code="no_worker")
        d = self._send_drain(slots, upstream, url, on)
        d.addCallback(self._drained, upstream, url, on)
        return d.addErrback(error_answer(request_id_from(request.requestHeaders)))

    def _send_drain(self, slots: List[Any], upstream: str, url: str, on: bool) -> Any:
        path = b"/admin/upstreams/%s/%s" % (quote(upstream, safe="").encode("ascii"), b"drain" if on else b"undrain")
        body = json.dumps({"target": url}).encode("utf-8")
        asked = [self.admin.ask(s, b"POST", path, _JSON.copy(), FileBodyProducer(io.BytesIO(body))) for s in slots]
        return DeferredList(asked, consumeErrors=True).addCallback(lambda results: list(zip(slots, results)))

    def _drained(self, results: List[Any], upstream: str, url: str, on: bool) -> Tuple[Dict[str, Any], int]:
        answers: Dict[str, Any] = {}
        first: Optional[Tuple[Dict[str, Any], int]] = None
        failed = None
        in_flight = 0
        for slot, (ok, result) in results:
            if not ok:
                answers[str(slot.index)] = {"error": result.getErrorMessage() or result.type.__name__}
                failed = failed or (f"worker {slot.index} did not answer: {answers[str(slot.index)]['error']}", 502)
                continue
            status, _, data = result
            body = json.loads(data)
            answers[str(slot.index)] = {"status": status}
            if status >= 300:
                failed = failed or (body.get("message", f"worker {slot.index}: status {status}"), status)
            else:
                in_flight += body.get("in_flight") or 0
                first = first or (body, status)
        if failed is not None:
            message, status = failed
            code = {400: "bad_request", 404: "not_found"}.get(status, "worker_failed")
            return {"error": code, "message": message, "workers": answers}, status
        drained = self.drains.setdefault(upstream, set())
        (drained.add if on else drained.discard)(url)
        assert first is not None
        body, status = first
        body.update(generation=self.supervisor.version, workers=answers, in_flight=in_flight)
        return body, status

    def worker_ready(self, slot: Any) -> None:
        """A worker (re)started: give it the host's drains."""
        for upstream, urls in sorted(self.drains.items()):
            for url in sorted(urls):
                d = self._send_drain([slot], upstream, url, True)
                d.addCallback(lambda results, u=upstream, t=url: self._replayed(results, u, t))

    def _replayed(self, results: List[Any], upstream: str, url: str) -> None:
        for slot, (ok, result) in results:
            if not ok or result[0] >= 300:
                why = result.getErrorMessage() if not ok else f"status {result[0]}"
                _log.warn("worker {index} did not take the drain of {target} ({upstream}): {why}",
                          index=slot.index, target=url, upstream=upstream, why=why)

    def keys_list(self, request: Any) -> Any:
        """``GET /admin/keys``: one worker's list (the store is shared), each key's last use the latest of any worker."""
        return self._keys_list(request).addErrback(error_answer(request_id_from(request.requestHeaders)))

    @inlineCallbacks
    def _keys_list(self, request: Any) -> Any:
        slots = self.supervisor.ready_slots()
        if not slots:
            raise GatewayError("No worker is serving.", status=503, code="no_worker")
        results = yield DeferredList([self.admin.ask(s, b"GET", request.uri) for s in slots], consumeErrors=True)
        answered = [result for ok, result in results if ok]
        if not answered:
            raise GatewayError("No worker answered.", status=502, code="worker_failed")
        status, _, data = answered[0]
        body = json.loads(data)
        if status != 200:
            return body, status
        latest: Dict[str, str] = {}
        for other_status, _, other in answered:
            if other_status != 200:
                continue
            for key in json.loads(other).get("keys", ()):
                used = key.get("last_used_at")
                if used is not None and used > latest.get(key["id"], ""):  # RFC 3339 UTC: text order is time order
                    latest[key["id"]] = used
        for key in body.get("keys", ()):
            key["last_used_at"] = latest.get(key["id"])
        return body, 200
