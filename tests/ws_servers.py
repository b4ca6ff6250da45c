"""
WebSocket servers for the tests, on the `websockets` library (threads, its
own sockets): what a real upstream behind the gateway looks like.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


def echo(connection: ServerConnection) -> None:
    """Echo every message back, as it came (text as text, binary as binary)."""
    try:
        for message in connection:
            connection.send(message)
    except ConnectionClosed:
        pass


def _chat_subprotocol(connection: ServerConnection, offered: Any) -> Any:
    """``chat.v2`` or ``chat.v1`` when offered (in that order of preference); none is required."""
    for name in ("chat.v2", "chat.v1"):
        if name in offered:
            return name
    return None


class WebSocketServer:
    """
    A `websockets` server on 127.0.0.1 in a thread of its own; `handler` is
    called with each connection (default: `echo`).  `handshakes` keeps each
    handshake request's headers; `closes` each connection's close frame
    received (code, reason), or None.
    """

    def __init__(self, handler: Optional[Callable[[ServerConnection], None]] = None, **options: Any) -> None:
        self.handler = handler or echo
        self.handshakes: List[Any] = []
        self.closes: List[Any] = []
        self.connections: List[ServerConnection] = []
        options.setdefault("select_subprotocol", _chat_subprotocol)
        self.server = serve(self._serve, "127.0.0.1", 0, **options)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _serve(self, connection: ServerConnection) -> None:
        self.handshakes.append(connection.request.headers)
        self.connections.append(connection)
        try:
            self.handler(connection)
        finally:
            connection.close()
            self.closes.append((connection.close_code, connection.close_reason))

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)
