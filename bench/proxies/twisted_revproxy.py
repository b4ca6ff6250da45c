"""
Reference contender for bench/compare.py: Twisted's stock
``twisted.web.proxy.ReverseProxyResource`` (a new upstream connection per
request; it cannot keep connections alive).  No access log.

    python bench/proxies/twisted_revproxy.py PORT UPSTREAM_PORT
"""

import sys

from twisted.internet import reactor
from twisted.web import proxy, server


class QuietSite(server.Site):
    def log(self, request):
        pass


def main(port, upstream_port):
    proxy.ProxyClientFactory.noisy = False
    root = proxy.ReverseProxyResource("127.0.0.1", upstream_port, b"")
    reactor.listenTCP(port, QuietSite(root), backlog=1024, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
