"""
Bytes on sockets: the HTTP engines behind the listeners and the forwarded hop.

The gateway's exchange talks to a client's request only through the
`twistgate.engine.api.Downstream` interface, so the HTTP/1.1 engine on
httptools and the twisted.web engine (``engine: twisted``) are
interchangeable.
"""
