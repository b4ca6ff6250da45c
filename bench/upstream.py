"""
A tiny Twisted upstream for bench/run.sh and bench/compare.py when nginx is not installed.

Serves what the nginx upstream of bench/run.sh and bench/compare.py serves: ``/`` a fixed
100-byte body, ``/64k`` 65 536 bytes; anything else is a 404.  No access
log.  Usage: ``python bench/upstream.py PORT`` (listens on 127.0.0.1).
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

SMALL = (b"hello from the bench upstream " + b"." * 100)[:99] + b"\n"
BIG = (b"0123456789abcdef" * 4096)[:65536]
assert len(SMALL) == 100 and len(BIG) == 65536


class Static(Resource):
    isLeaf = True

    def render_GET(self, request):
        body = {b"/": SMALL, b"/64k": BIG}.get(request.path)
        if body is None:
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"content-type", b"text/plain" if body is SMALL else b"application/octet-stream")
        return body


class QuietSite(Site):
    def log(self, request):
        pass


def main(port):
    endpoints.serverFromString(reactor, "tcp:%d:interface=127.0.0.1:backlog=4096" % port).listen(
        QuietSite(Static())
    )
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
