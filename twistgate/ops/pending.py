"""
Finished requests waiting to be counted.

Counting a request into the Prometheus counters and the rolling stats costs
a few microseconds in two method calls, each re-reading the same dicts and
attributes.  The gateway only *reads* those numbers now and then (a scrape,
an admin request, the history tick), so a finished request's record is
appended to a list here, and the list is folded into every counter (one
loop for the metrics and the stats together: `twistgate.ops.fold`) when
someone reads (the sinks' ``before_read``) or when it holds `BOUND` records:
counts are exact at every read, and memory is bounded.
A record holds its request's ``state`` (a cache context, a TLS connection):
at most `BOUND` of them wait, and never longer than the history's next tick
(every 2 s, `twistgate.ops.history`), which reads the stats.
"""

from __future__ import annotations

from typing import Any, Callable, List, Sequence

__all__ = ["BOUND", "PendingRecords"]

#: Records held at most before they are folded (bounds memory and a fold's pause; 64 to 2048 timed alike).
BOUND = 64


class PendingRecords:
    """
    Records appended by `add`, folded by `fold` into each sink (a callable
    taking a list of records, such as `twistgate.ops.fold.RecordFold`).
    """

    __slots__ = ("records", "sinks", "bound")

    def __init__(self, sinks: Sequence[Callable[[List[Any]], None]], bound: int = BOUND) -> None:
        self.records: List[Any] = []
        self.sinks = tuple(sinks)
        self.bound = bound

    def add(self, record: Any) -> None:
        records = self.records
        records.append(record)
        if len(records) >= self.bound:
            self.fold()

    def fold(self) -> None:
        """Count every pending record now (each sink sees each record once)."""
        records = self.records
        if not records:
            return
        self.records = []
        for sink in self.sinks:
            sink(records)
