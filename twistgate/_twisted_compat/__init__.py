"""
Every use of Twisted's private API in twistgate, in one place.

The twisted.web engine (``engine: twisted``) leans on private parts of
`twisted.web.http` and `twisted.web.client` (`web_server`, `web_client`); a
few service details live here.  Nothing else in twistgate may touch a
Twisted name that starts with an underscore.  `check()` runs at startup and
fails loudly, naming what is missing, when a Twisted release removed or
renamed one of them; `pyproject.toml` pins Twisted to the releases tested.
"""

from __future__ import annotations

from typing import Any, List

from twisted.application.internet import StreamServerEndpointService
from twisted.web._newclient import RequestNotSent

__all__ = [
    "IncompatibleTwisted",
    "RequestNotSent",
    "accept_one_at_a_time",
    "check",
    "fail_start_loudly",
    "hold_accepting",
    "keep_own_alpn",
    "listening_port",
    "resume_accepting",
]


class IncompatibleTwisted(RuntimeError):
    """The installed Twisted lacks a private name twistgate depends on."""


def fail_start_loudly(service: StreamServerEndpointService) -> None:
    """A listening service whose bind failure (port in use) raises from startService."""
    service._raiseSynchronously = True  # type: ignore[attr-defined]


def keep_own_alpn(factory_class: Any) -> Any:
    """
    A `TLSMemoryBIOFactory` subclass whose connections keep the ALPN selection
    of their context.  Twisted before 26 (25.5 is the newest for Python 3.9,
    so for Debian's PyPy) re-applies the wrapped factory's protocols to every
    connection's context, replacing a listener's own selection (``http2:
    false``, the fatal alert when nothing is in common); 26 no longer does.
    """
    factory_class._applyProtocolNegotiation = lambda self, connection: None
    return factory_class


def accept_one_at_a_time(port: Any, allow: Any = None, clock: Any = None, pause: float = 0.001) -> Any:
    """
    Make a listening port accept one connection per readiness event (nginx's
    ``multi_accept off``).  Twisted accepts up to ``numberAccepts`` (100,
    adapting) in one go; on a socket several worker processes share, the
    first worker woken would take a whole burst of new connections and keep
    them (keep-alive) while the others idle.  One at a time, every idle
    worker takes its turn.

    :param allow: ``() -> bool``; when it says no, this wakeup is let pass
        and the port listens again after ``pause`` seconds on ``clock``
        (another process sharing the socket takes the connection meanwhile).
    """
    read = port.doRead

    def resume() -> None:
        if port.connected:  # not closed meanwhile (a drain)
            port.startReading()

    def doRead() -> Any:
        if allow is not None and not allow():
            port.stopReading()
            clock.callLater(pause, resume)
            return None
        port.numberAccepts = 1
        return read()

    port.doRead = doRead
    return port


def listening_port(service: StreamServerEndpointService) -> Any:
    """A Deferred firing with the service's `IListeningPort` once it listens."""
    return service._waitingForPort  # type: ignore[attr-defined]


def hold_accepting(service: StreamServerEndpointService) -> None:
    """
    Bound but not accepting: the listening socket stays out of the reactor,
    so connections wait in the kernel's backlog until `resume_accepting`
    (or are reset when the port closes).  Ports that are not file
    descriptors (an in-memory reactor's) are left as they are.
    """
    listening_port(service).addCallback(_call_on_port, "stopReading")


def resume_accepting(service: StreamServerEndpointService) -> None:
    """Undo `hold_accepting`: the reactor accepts the waiting connections."""
    listening_port(service).addCallback(_call_on_port, "startReading")


def _call_on_port(port: Any, method: str) -> Any:
    # `startReading`/`stopReading` are public methods of the reactor's ports
    # (FileDescriptor), though not of `IListeningPort`.  A failed listen
    # fires with None (StreamServerEndpointService logged it already).
    function = getattr(port, method, None)
    if function is not None:
        function()
    return port


def _missing() -> List[str]:
    import twisted.web.client as client
    import twisted.web.http as http
    from twisted.web._newclient import HTTP11ClientProtocol, HTTPClientParser

    from twisted.protocols.basic import LineReceiver

    missing = []
    for owner, names in (
        (http.HTTPChannel, ("_command", "_path", "_version", "_HTTPChannel__first_line", "_handlingRequest",
                             "_receivedHeaderSize", "_receivedHeaderCount", "_send100Continue",
                             "_respondToBadRequestAndDisconnect", "_transferDecoder", "_finishRequestBody")),
        (http, ("_GenericHTTPChannelProtocol", "_ChunkedTransferDecoder", "_MalformedChunkedDataError")),
        (http._ChunkedTransferDecoder, ("_dataReceived_CHUNK_LENGTH", "_buffer", "state", "length")),
        (LineReceiver, ("_buffer", "line_mode", "paused")),
        (client.Agent, ("_requestWithEndpoint",)),
        (client, ("_HTTP11ClientFactory",)),
        (client.HTTPConnectionPool, ("_factory",)),
        (client._HTTP11ClientFactory, ("_quiescentCallback",)),
        (HTTP11ClientProtocol, ("_parser", "_finishResponse_WAITING")),
        (StreamServerEndpointService, ("_raiseSynchronously",)),
    ):  # fmt: skip
        for name in names:
            present = hasattr(owner, name) or _assigned_in(owner, name)
            if not present:
                missing.append(f"{getattr(owner, '__qualname__', getattr(owner, '__name__', owner))}.{name}")
    if not _assigned_in(HTTPClientParser, "connHeaders"):
        missing.append("HTTPClientParser.connHeaders")
    return missing


def _assigned_in(owner: Any, name: str) -> bool:
    """An instance attribute the class's own code assigns (not visible on the class itself)."""
    import inspect

    for klass in getattr(owner, "__mro__", (owner,)):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        plain = name.replace(f"_{klass.__name__}__", "__")  # name-mangled attributes are written unmangled
        if f"self.{plain} =" in source or f"self.{plain}=" in source:
            return True
    return False


def check() -> None:
    """Raise `IncompatibleTwisted` naming every private name that is gone."""
    try:
        missing = _missing()
    except Exception as error:  # an import or constructor that changed shape
        raise IncompatibleTwisted(f"this Twisted release is not supported by twistgate: {error}") from error
    if missing:
        import twisted

        raise IncompatibleTwisted(
            f"Twisted {twisted.__version__} lacks what twistgate's twisted.web engine uses: "
            + ", ".join(missing)
            + " (install the Twisted version pyproject.toml names)"
        )
