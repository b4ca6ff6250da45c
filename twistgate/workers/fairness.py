"""
Sharing new connections fairly between workers on one accept queue.

Every worker publishes, in a small file the supervisor creates and each
worker maps (`Board`), how many client connections it holds and when it
last said so.  Before accepting, a worker compares itself with the workers
that spoke recently: one holding clearly more than the average lets this
wakeup pass (for 1 ms) so that another can take the connection.  A worker
that is stopped, stalled or dead stops speaking and after `STALE` seconds is
left out, so the others never wait for it: this is a tie-breaker for bursts
of connections (wrk's 50 at once, a load balancer's pool refill), not a
queue of its own.

Each worker writes only its own slot; readers may see a slot half-written
at worst as one stale number, which only shifts one decision.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any, Callable, List, Tuple

_SLOT = struct.Struct("<qd")  # open connections, last report (clock seconds)
#: A worker silent this long (stopped, stalled, dead) is left out of the average.
STALE = 2.0
#: How often an idle worker says it is alive.
HEARTBEAT = 0.5
#: A worker may hold this many connections above the average before it lets a wakeup pass.
SLACK = 2
#: ... or this share of the average, whichever is larger.
SLACK_SHARE = 0.25


def create(path: str, workers: int) -> None:
    """The supervisor's part: a zeroed board for ``workers`` slots, owner-only."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, bytes(_SLOT.size * workers))
    finally:
        os.close(fd)


def forget(path: str, index: int) -> None:
    """The supervisor's part: worker ``index`` (0-based) ended: it holds nothing."""
    with open(path, "r+b") as f:
        f.seek(index * _SLOT.size)
        f.write(_SLOT.pack(0, 0.0))


class Board:
    """A worker's view of the board: its own slot to write, every slot to read."""

    def __init__(self, path: str, index: int) -> None:
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), 0)
        self.count = len(self._map) // _SLOT.size
        self.index = index

    def publish(self, connections: int, now: float) -> None:
        _SLOT.pack_into(self._map, self.index * _SLOT.size, connections, now)

    def read(self) -> List[Tuple[int, float]]:
        return [_SLOT.unpack_from(self._map, i * _SLOT.size) for i in range(self.count)]

    def close(self) -> None:
        self._map.close()


class FairShare:
    """Whether this worker should take the next connection now."""

    def __init__(self, board: Board, clock: Any, connections: Callable[[], int]) -> None:
        self.board = board
        self.clock = clock
        self.connections = connections
        self.passed = 0  # wakeups let pass (for tests and curiosity)

    def heartbeat(self) -> None:
        self.board.publish(self.connections(), self.clock.seconds())

    def allow(self) -> bool:
        now = self.clock.seconds()
        mine = self.connections()
        self.board.publish(mine, now)
        live = [held for i, (held, said) in enumerate(self.board.read()) if i != self.board.index and now - said < STALE]
        if not live:
            return True
        average = (sum(live) + mine) / (len(live) + 1)
        if mine <= average + max(SLACK, SLACK_SHARE * average):
            return True
        self.passed += 1
        return False
