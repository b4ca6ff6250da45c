"""
A recorded-response fake of Consul's HTTP API, for discovery tests: no
Consul agent can be installed here (Debian has no package; PyPI only has
clients), so this reproduces what Consul documents for
``GET /v1/health/service/:service``:

* the JSON: a list of ``{Node, Service, Checks}`` entries, ``Service.Address``
  empty when the service uses its node's address (``Node.Address``),
  ``Service.Port``, ``Service.Tags``, ``Service.Weights``, and the node's
  ``serfHealth`` check plus the service's own check in ``Checks``;
* ``passing`` (only entries whose checks all pass), ``tag``, ``dc``;
* blocking queries: ``X-Consul-Index`` on every answer; a request with
  ``index`` at or past the current index waits until the catalogue changes
  or ``wait`` (default 5m, at most 10m) passes, then answers the current
  state (which may be unchanged);
* ACLs: with a token required, a request without the right
  ``X-Consul-Token`` is refused with 403 "ACL not found".

It is a twisted.web resource: the same object serves `StubTreq` on a
`Clock` in unit tests and real sockets in integration tests.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """``5000ms``, ``5s``, ``1m30s`` (what Consul's ``wait`` takes)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in parts)


def instance(
    service: str,
    port: int,
    address: str = "",
    *,
    node: str = "node-1",
    node_address: str = "10.0.0.1",
    tags: Tuple[str, ...] = (),
    status: str = "passing",
    weight: int = 1,
    number: int = 1,
) -> Dict[str, Any]:
    """One entry as ``/v1/health/service`` returns it."""
    service_id = f"{service}-{number}"
    return {
        "Node": {
            "ID": f"00000000-0000-0000-0000-{number:012d}",
            "Node": node,
            "Address": node_address,
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": node_address, "wan": node_address},
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 5,
            "ModifyIndex": 5,
        },
        "Service": {
            "ID": service_id,
            "Service": service,
            "Tags": list(tags),
            "Address": address,
            "Meta": {},
            "Port": port,
            "Weights": {"Passing": weight, "Warning": 1},
            "EnableTagOverride": False,
            "CreateIndex": 7,
            "ModifyIndex": 7,
        },
        "Checks": [
            {
                "Node": node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
                "ServiceTags": [], "Type": "", "CreateIndex": 5, "ModifyIndex": 5,
            },
            {
                "Node": node, "CheckID": f"service:{service_id}", "Name": f"Service '{service}' check",
                "Status": status, "Notes": "", "Output": "", "ServiceID": service_id, "ServiceName": service,
                "ServiceTags": list(tags), "Type": "http", "CreateIndex": 7, "ModifyIndex": 7,
            },
        ],
    }  # fmt: skip


class FakeConsul(Resource):
    """Serves ``/v1/health/service/<name>`` from `catalogue`; `set` changes it and wakes blocked queries."""

    isLeaf = True

    def __init__(self, clock: Any, *, token: Optional[str] = None, blocking: bool = True) -> None:
        super().__init__()
        self.clock = clock
        self.token = token
        self.blocking = blocking  # False: no X-Consul-Index (an old agent or a proxy that drops it)
        self.catalogue: Dict[str, List[Dict[str, Any]]] = {}
        self.index = 1
        self.failing: Optional[int] = None  # answer every request with this status
        self.requests: List[Dict[str, Any]] = []
        self._waiting: List[Tuple[Any, Any, str, Dict[str, List[str]]]] = []

    def set(self, service: str, entries: List[Dict[str, Any]]) -> None:
        self.catalogue[service] = entries
        self.index += 1
        waiting, self._waiting = self._waiting, []
        for request, timer, name, args in waiting:
            if timer.active():
                timer.cancel()
            request.write(self._answer(request, name, args))
            request.finish()

    def waiting(self) -> int:
        return len(self._waiting)

    def render_GET(self, request: Any) -> Any:
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        path = request.path.decode()
        self.requests.append({"path": path, "args": args, "token": request.getHeader(b"X-Consul-Token")})
        if self.failing is not None:
            request.setResponseCode(self.failing)
            return b"rpc error: No cluster leader"
        if self.token is not None and request.getHeader(b"X-Consul-Token") != self.token.encode():
            request.setResponseCode(403)
            return b"ACL not found"
        match = re.fullmatch(r"/v1/health/service/([^/]+)", path)
        if match is None:
            request.setResponseCode(404)
            return b"Not found"
        if args.get("dc", ["dc1"])[0] != "dc1":
            request.setResponseCode(500)
            return b"No path to datacenter"
        name = match.group(1)
        index = int(args["index"][0]) if "index" in args and self.blocking else None
        if index is not None and index >= self.index:
            wait = min(go_duration(args.get("wait", ["5m"])[0]), 600.0)
            timer = self.clock.callLater(wait, self._expire, request)
            entry = (request, timer, name, args)
            self._waiting.append(entry)
            request.notifyFinish().addErrback(lambda _: self._forget(entry))
            return NOT_DONE_YET
        return self._answer(request, name, args)

    def _expire(self, request: Any) -> None:
        for entry in list(self._waiting):
            if entry[0] is request:
                self._waiting.remove(entry)
                request.write(self._answer(request, entry[2], entry[3]))
                request.finish()

    def _forget(self, entry: Any) -> None:
        if entry in self._waiting:
            self._waiting.remove(entry)
            if entry[1].active():
                entry[1].cancel()

    def _answer(self, request: Any, name: str, args: Dict[str, List[str]]) -> bytes:
        entries = self.catalogue.get(name, [])
        if "passing" in args:
            entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
        if "tag" in args:
            entries = [e for e in entries if args["tag"][0] in e["Service"]["Tags"]]
        request.setHeader(b"Content-Type", b"application/json")
        if self.blocking:
            request.setHeader(b"X-Consul-Index", str(self.index).encode())
        request.setHeader(b"X-Consul-Knownleader", b"true")
        request.setHeader(b"X-Consul-Lastcontact", b"0")
        return json.dumps(entries).encode()
