"""
The garbage collector, tuned for a gateway process (``twistd twistgate``
only: `twistgate.tap` calls `settle`; tests and embedders keep Python's
defaults).

A gateway keeps tens of thousands of objects alive from startup to exit
(modules, the configuration, routes, plugins, pools), and CPython's full
collections walk every one of them each time the objects that outlived a
few younger collections add up: under load, requests in flight are such
objects, and the full collections cost several microseconds per request.
`gc.freeze` moves everything alive once the gateway has started out of the
collector's sight (refcounting still frees it), so the full collections
only walk what was made since.

A reload builds a new generation and retires the old one; `settle` then
runs again: unfreeze, one full collection (so the retired generation's
reference cycles are freed, not kept frozen forever), freeze.  That one
collection is the pause a reload adds.

PyPy has neither the freeze nor the cost (its collector does not walk the
old generation on every major collection this way): `settle` does nothing
there.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle(_: object = None) -> None:
    """Collect once, then keep what is alive now out of later collections (see the module docstring)."""
    if not hasattr(gc, "freeze"):  # PyPy
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
