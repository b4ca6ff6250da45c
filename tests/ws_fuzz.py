"""
A WebSocket protocol fuzzing harness in the manner of the Autobahn|Testsuite
(whose ``wstest`` needs Python 2 and autobahn 0.10.9: not installable here),
driving a server with raw frames and recording exactly what it answers.

Each case is a list of steps (bytes to send, optionally in small pieces
with pauses); the outcome is what the server sent back: every frame
(opcode, flags, payload; close frames with their code and reason), the
handshake's status, and whether the server closed the connection.  The same
case run against a server directly and through the gateway must give the
same outcome: the gateway relays frames, it does not judge them.

The cases follow the Autobahn sections: 1 framing, 2 ping/pong, 3 reserved
bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 closing, 9 limits, 10 masking,
12/13 permessage-deflate, plus opening-handshake refusals.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

import attrs

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
#: Between a valid message and a protocol error: the client waits for the echo of the first before
#: it sends the second (a server that reads both at once may fail the connection before its handler
#: echoes: a race of its own, which would make the comparison depend on scheduling).
SETTLE = ("await", 1)


@attrs.frozen
class Outcome:
    status: int  # the handshake's status
    frames: Tuple[Tuple[int, int, bytes], ...]  # (first byte's flags+opcode, len, payload) as the server sent them
    closed: bool  # the server closed the TCP connection (within the wait)

    @property
    def close_code(self) -> Optional[int]:
        for first, _, payload in self.frames:
            if first & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        return None


@attrs.frozen
class Case:
    id: str
    description: str
    steps: Tuple[Any, ...]  # bytes, ("chop", bytes, piece size), ("pause", seconds), ("await", frames)
    handshake: Tuple[Tuple[str, str], ...] = ()  # extra or replacing handshake fields
    deflate: bool = False


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True, length: Optional[int] = None) -> bytes:
    """One client frame; `length` lies about the payload length when given."""
    head = bytes(((0x80 if fin else 0) | (rsv << 4) | opcode,))
    n = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = b"\x37\xfa\x21\x3d"  # fixed: the same bytes go both ways
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close(code: Optional[int] = 1000, reason: bytes = b"") -> bytes:
    return frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


def deflated(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]  # RFC 7692 §7.2.1: without the final 00 00 ff ff


def _cases() -> List[Case]:
    c: List[Case] = []

    def add(id: str, description: str, *steps: Any, **kw: Any) -> None:
        c.append(Case(id, description, tuple(steps), **kw))

    # 1 Framing: payload lengths around the 7/16/64-bit length encodings, text and binary.
    # The echo is awaited: the polite close sent after `quiet` seconds without a byte could otherwise
    # reach the server right behind a slow 1 MiB message, and it answers the close before its handler
    # echoes (seen through the gateway on PyPy, on a loaded machine).
    for n in (0, 125, 126, 127, 128, 65535, 65536, 1 << 20):
        add(f"1.1.{n}", f"text message of {n} bytes", frame(0x1, b"*" * n), SETTLE)
        add(f"1.2.{n}", f"binary message of {n} bytes", frame(0x2, bytes(range(256)) * (n // 256) + bytes(range(n % 256))), SETTLE)
    add("1.1.chopped", "a 65536-byte text frame sent in 997-byte pieces", ("chop", frame(0x1, b"a" * 65536), 997))
    add("1.1.bytewise", "a text frame sent one byte at a time", ("chop", frame(0x1, b"hello"), 1))
    # 2 Pings and pongs.
    add("2.1", "ping without payload", frame(0x9))
    add("2.2", "ping with a text payload", frame(0x9, b"Hello, world!"))
    add("2.3", "ping with a binary payload", frame(0x9, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))
    add("2.4", "ping with a 125-byte payload", frame(0x9, b"\xfe" * 125))
    add("2.5", "ping with a 126-byte payload (control frames are at most 125)", frame(0x9, b"\xfe" * 126))
    add("2.6", "ping with a 125-byte payload sent in pieces", ("chop", frame(0x9, b"\xfe" * 125), 1))
    add("2.7", "unsolicited pong", frame(0xA), frame(0x1, b"after pong"))
    add("2.8", "unsolicited pong with payload", frame(0xA, b"unsolicited pong payload"))
    add("2.10", "10 pings in a row", *[frame(0x9, b"payload-%d" % i) for i in range(10)])
    # 3 Reserved bits (no extension negotiated).
    for rsv in range(1, 8):
        add(f"3.{rsv}", f"text frame with RSV={rsv}", frame(0x1, b"reserved", rsv=rsv))
    add("3.ping", "ping with RSV=7", frame(0x9, b"", rsv=7))
    add("3.after", "a valid text, then a frame with RSV=1", frame(0x1, b"ok"), SETTLE, frame(0x1, b"bad", rsv=1))
    # 4 Opcodes.
    for op in (3, 4, 5, 6, 7):
        add(f"4.1.{op}", f"reserved data opcode {op}", frame(op))
    for op in (0xB, 0xC, 0xD, 0xE, 0xF):
        add(f"4.2.{op}", f"reserved control opcode {op}", frame(op, b"payload"))
    add("4.2.after", "a valid text, then reserved opcode 11", frame(0x1, b"first"), SETTLE, frame(0xB))
    # 5 Fragmentation.
    add("5.1", "fragmented ping (control frames cannot be fragmented)", frame(0x9, b"frag", fin=False), frame(0x0, b"ment"))
    add("5.3", "text in two fragments", frame(0x1, b"frag", fin=False), frame(0x0, b"ment"))
    add("5.5", "text in two fragments, pieces with pauses", frame(0x1, b"frag", fin=False), ("pause", 0.05), frame(0x0, b"ment"))
    add("5.6", "text in two fragments with a ping between", frame(0x1, b"frag", fin=False), frame(0x9, b"ping"), frame(0x0, b"ment"))
    add("5.9", "continuation with nothing to continue", frame(0x0, b"orphan"))
    add("5.10", "continuation, not final, with nothing to continue", frame(0x0, b"orphan", fin=False), frame(0x0, b"x"))
    add("5.15", "text fragment, then a new text frame (not a continuation)", frame(0x1, b"a", fin=False), frame(0x1, b"b"))
    add("5.17", "final text, then a continuation", frame(0x1, b"done"), SETTLE, frame(0x0, b"after"))
    # (The client waits for the echo: relaying 1,000 frames may take longer than `quiet` on a JIT still warming up.)
    add("5.19", "1000 one-byte fragments", frame(0x1, b"x", fin=False), *[frame(0x0, b"x", fin=False) for _ in range(998)], frame(0x0, b"x"), SETTLE)
    add("5.20", "binary in fragments with a pong between", frame(0x2, b"\x01", fin=False), frame(0xA), frame(0x0, b"\x02"))
    # 6 UTF-8.
    add("6.1", "empty text in fragments", frame(0x1, b"", fin=False), frame(0x0, b"", fin=False), frame(0x0, b""))
    add("6.2", "valid multi-byte UTF-8", frame(0x1, "κόσμε Hello-µ@ßöäüàá-UTF-8!!".encode()))
    add("6.3", "a code point split across fragments", frame(0x1, "κ".encode()[:1], fin=False), frame(0x0, "κ".encode()[1:]))
    for i, bad in enumerate((b"\xff", b"\xce\xba\xe1\xbd", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80", b"abc\xfe")):
        add(f"6.4.{i}", f"invalid UTF-8 {bad!r}", frame(0x1, bad))
    add("6.5", "invalid UTF-8 in the second fragment", frame(0x1, b"ok", fin=False), frame(0x0, b"\xff"))
    add("6.6", "invalid UTF-8 sent byte by byte", ("chop", frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), 1))
    # 7 Closing.
    add("7.1", "close 1000", close(1000))
    add("7.2", "close without a code", close(None))
    add("7.3", "close with a one-byte payload", frame(0x8, b"\x03"))
    add("7.4", "close with a reason", close(1000, b"Hello World!"))
    add("7.5", "close with a 123-byte reason", close(1000, b"*" * 123))
    add("7.6", "close with a 124-byte reason (control frame of 126 bytes)", close(1000, b"*" * 124))
    add("7.7", "close with invalid UTF-8 in the reason", close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
    add("7.8", "text after close", close(1000), frame(0x1, b"after close"))
    add("7.9", "ping after close", close(1000), frame(0x9, b"after close"))
    add("7.10", "close in the middle of a fragmented message", frame(0x1, b"frag", fin=False), close(1000))
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):
        add(f"7.11.{code}", f"close with valid code {code}", close(code))
    for code in (0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        add(f"7.12.{code}", f"close with code {code}", close(code))
    # 9 Limits (the server's max_size is 1 MiB).
    add("9.1", "a text message just over the server's max_size", frame(0x1, b"*" * ((1 << 20) + 1)))
    add("9.2", "a fragmented message over the server's max_size", frame(0x2, b"\x00" * (1 << 19), fin=False), frame(0x0, b"\x00" * ((1 << 19) + 10)))
    add("9.3", "a frame header announcing 2^62 bytes", frame(0x2, b"", length=1 << 62))
    # 10 Masking.
    add("10.1", "an unmasked text frame from the client", frame(0x1, b"unmasked", mask=False))
    add("10.2", "an unmasked close frame", frame(0x8, b"\x03\xe8", mask=False))
    # 12/13 permessage-deflate, negotiated in the handshake.
    deflate = (("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),)
    add("12.1", "a compressed text message", frame(0x1, deflated(b"Hello " * 100), rsv=4), handshake=deflate, deflate=True)
    add("12.2", "a compressed message in fragments", frame(0x2, deflated(b"\x01" * 5000)[:10], fin=False, rsv=4),
        frame(0x0, deflated(b"\x01" * 5000)[10:]), handshake=deflate, deflate=True)
    add("12.3", "an uncompressed message on a deflate connection", frame(0x1, b"plain"), handshake=deflate, deflate=True)
    add("12.4", "RSV1 on a continuation frame", frame(0x1, deflated(b"abc"), fin=False, rsv=4), frame(0x0, b"", rsv=4),
        handshake=deflate, deflate=True)
    add("12.5", "a corrupt compressed payload", frame(0x1, b"\xff\xff\xff\xff", rsv=4), handshake=deflate, deflate=True)
    # Opening handshake refusals (the upstream's answer).
    add("0.1", "Sec-WebSocket-Version 8 (only 13 is served)", frame(0x1, b"x"), handshake=(("Sec-WebSocket-Version", "8"),))
    add("0.2", "an Origin the server refuses", frame(0x1, b"x"), handshake=(("Origin", "https://evil.example"),))
    add("0.3", "a subprotocol negotiated", frame(0x1, b"x"), handshake=(("Sec-WebSocket-Protocol", "nonsense, chat"),))
    return c


CASES = _cases()


def run_case(port: int, case: Case, *, path: str = "/fuzz", quiet: float = 0.3) -> Outcome:
    """Run `case` against 127.0.0.1:`port`; what the server sent back."""
    fields: Dict[str, str] = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY.decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(dict(case.handshake))
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head.encode())
        reader = _Reader(sock)
        status = reader.head()
        if status != 101:
            return Outcome(status, (), True)
        frames: List[Tuple[int, int, bytes]] = []
        for step in case.steps:
            if isinstance(step, bytes):
                _send(sock, step)
            elif step[0] == "chop":
                data, size = step[1], step[2]
                for i in range(0, len(data), size):
                    _send(sock, data[i : i + size])
                    if size < 16:
                        time.sleep(0.0005)
            elif step[0] == "pause":
                time.sleep(step[1])
            elif step[0] == "await":
                frames += reader.frames(10.0, until=step[1])[0]
        more, closed = reader.frames(quiet)
        frames += more
        if not closed and not any(f[0] & 0x0F == 0x8 for f in frames):
            _send(sock, close(1000))  # end it politely, and hear the answer
            more, closed = reader.frames(quiet * 5)
            frames += more
        elif not closed:
            more, closed = reader.frames(quiet * 5)  # the server closed: wait for its TCP close
            frames += more
        return Outcome(status, tuple(frames), closed)


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server may have closed already: what it said is the outcome


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def head(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(10):
                return 0
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            return status
        return status

    def frames(self, quiet: float, until: int = 0) -> Tuple[List[Tuple[int, int, bytes]], bool]:
        """The frames that come until `quiet` seconds pass without a byte (or `until` frames came)."""
        out: List[Tuple[int, int, bytes]] = []
        while True:
            parsed = _parse(self.buf)
            if parsed is not None:
                first, payload, rest = parsed
                self.buf = rest
                out.append((first, len(payload), payload))
                if until and len(out) >= until:
                    return out, False
                continue
            if self.eof or not self._fill(quiet):
                return out, self.eof


def _parse(buf: bytes) -> Optional[Tuple[int, bytes, bytes]]:
    if len(buf) < 2:
        return None
    first, second = buf[0], buf[1]
    n = second & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < pos + n:
        return None
    return first, buf[pos : pos + n], buf[pos + n :]


def echo_server_options() -> Dict[str, Any]:
    """The `websockets` testee's settings: echo, 1 MiB messages, no pings of its own, deflate offered."""
    return {"ping_interval": None, "max_size": 1 << 20, "subprotocols": None, "origins": [None, "https://good.example"],
            "select_subprotocol": _chat}


def _chat(connection: Any, offered: Any) -> Any:
    return "chat" if "chat" in offered else None
