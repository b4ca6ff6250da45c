"""
An upstream that fails on command, run as its own process by the resilience
integration tests (tests/integration/test_resilience.py):

    python tests/upstream/faultserver.py NAME [--host 127.0.0.1] [--port 0]

prints ``PORT <n>`` once listening.  Every request is answered according to
the current mode, which the test sets with ``PUT /__mode`` (body: the mode):

* ``ok``: 200 ``<NAME>`` (after ``delay`` seconds if set: ``ok:0.5``);
* ``status:503``: that status;
* ``hang``: read the request, never answer;
* ``reset``: close the connection as soon as the request head arrived;
* ``midbody``: send a head with Content-Length 100000 and 1000 bytes, then
  reset the connection;
* ``stall``: send a head and one chunk, then nothing (connection kept);
* ``flap:<seconds>``: alternate between ok and 503 every that many seconds.

``GET /__stats`` answers JSON: requests seen by method and path (requests to
``/__*`` are not counted).  ``GET /health`` follows the mode like any path.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


class Faulty(Resource):
    isLeaf = True

    def __init__(self, name: str, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.name = name.encode()
        self.mode = "ok"
        self.since = self.reactor.seconds()
        self.seen: Counter = Counter()
        self.hung: list = []

    def render(self, request: Any) -> Any:
        path = request.path
        if path == b"/__mode":
            self.mode = request.content.read().decode().strip()
            self.since = self.reactor.seconds()
            return b"mode " + self.mode.encode()
        if path == b"/__stats":
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({f"{m} {p}": n for (m, p), n in self.seen.items()}).encode()
        self.seen[(request.method.decode(), path.decode())] += 1
        mode, _, arg = self.mode.partition(":")
        if mode == "flap":
            up = int((self.reactor.seconds() - self.since) / float(arg)) % 2 == 0
            mode, arg = ("ok", "") if up else ("status", "503")
        if mode == "ok":
            if arg:
                self.reactor.callLater(float(arg), self._answer, request)
                return NOT_DONE_YET
            return self.name
        if mode == "status":
            request.setResponseCode(int(arg))
            return b"failing"
        if mode == "hang":
            self.hung.append(request)
            return NOT_DONE_YET
        if mode == "reset":
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if mode == "midbody":
            request.setHeader(b"Content-Length", b"100000")
            request.write(b"x" * 1000)
            self.reactor.callLater(0.05, request.channel.transport.abortConnection)
            return NOT_DONE_YET
        if mode == "stall":
            request.write(b"first chunk")
            self.hung.append(request)
            return NOT_DONE_YET
        request.setResponseCode(500)
        return b"unknown mode"

    def _answer(self, request: Any) -> None:
        if not request._disconnected:
            request.write(self.name)
            request.finish()


def main(argv: list) -> None:
    from twisted.internet import reactor  # a program of its own: the global reactor is its reactor

    name = argv[1]
    host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    site = Site(Faulty(name, reactor))
    site.log = lambda request: None  # type: ignore[method-assign]
    listening = reactor.listenTCP(port, site, interface=host)
    print(f"PORT {listening.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
