"""
TLS: ``upstreams.<name>.tls`` (twistgate.upstream.tls).  Listener TLS is
part of the core ``listeners`` section; its contexts are built by
twistgate.tls when the listener is.
"""

from twistgate.config.extensions import upstream_section
from twistgate.upstream.tls import parse_upstream_tls

upstream_section("tls")(parse_upstream_tls)
