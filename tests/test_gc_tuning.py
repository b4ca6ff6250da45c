"""The gateway process's garbage collector settings (twistgate.tap applies them)."""

from __future__ import annotations

import gc

from twistgate.gc_tuning import settle

import platform as _platform
import pytest as _pytest

pytestmark = _pytest.mark.skipif(_platform.python_implementation() != "CPython", reason="gc.freeze is CPython's (settle does nothing elsewhere)")


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_collects_cycles_then_freezes_what_is_alive():
    """Cycles made before are freed by its collection; what is alive is frozen; settling again unfreezes first."""
    try:
        cycle = _Cycle()
        alive = _Cycle()
        del cycle
        settle()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert not any(isinstance(o, _Cycle) and o is not alive for o in gc.get_objects())
        settle()
        assert gc.get_freeze_count() <= frozen + 100  # unfrozen, collected and frozen again: not piled up
    finally:
        gc.unfreeze()
