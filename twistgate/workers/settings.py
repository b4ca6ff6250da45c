"""
The ``workers`` key: how many worker processes serve the listeners.

``1`` (the default) is the single process twistd has always run; ``N > 1``
or ``auto`` (one per CPU this process may run on) makes the twistd process a
supervisor of N workers.
"""

from __future__ import annotations

import os
from typing import Optional

import attrs

from twistgate.config._node import Node
from twistgate.config.model import Location

#: A bound on N: more workers than this is a typo, not a plan.
MAX_WORKERS = 256


@attrs.frozen(kw_only=True)
class WorkersSettings:
    count: Optional[int] = 1  # None: auto
    location: Location = Location()

    @property
    def auto(self) -> bool:
        return self.count is None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as nginx's ``worker_processes auto``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_count(settings: Optional[WorkersSettings]) -> int:
    """The number of workers to run (``auto`` resolved now)."""
    if settings is None:
        return 1
    return available_cpus() if settings.count is None else settings.count


def parse_workers(node: Node) -> Optional[WorkersSettings]:
    """An integer, ``auto``, or either from ``${NAME}``."""
    if node.kind == "string":
        text = node.string()
        if text is None:
            return None
        if text.strip() == "auto":
            return WorkersSettings(count=None, location=node.location(at_key=True))
        if not text.strip().isdigit():
            node.issue(f"expected a number of worker processes (1 or more) or 'auto', got {text!r}")
            return None
    elif node.kind != "integer":
        node.issue(f"expected a number of worker processes (1 or more) or 'auto', got {node.describe()}")
        return None
    count = node.integer(min=1)
    if count is None:
        return None
    if count > MAX_WORKERS:
        node.issue(f"at most {MAX_WORKERS} worker processes, got {count}")
        return None
    return WorkersSettings(count=count, location=node.location(at_key=True))
