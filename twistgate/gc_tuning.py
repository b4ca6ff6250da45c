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

PyPy has no freeze; there `settle` lets the JIT record longer traces
(`JIT_TRACE_LIMIT`), and the collector's cost is elsewhere.  Its nursery (where every object starts) is sized from the CPU's cache,
1 MB on many servers: a proxied request allocates about 70 KB, so a minor
collection comes every ~15 requests and finds the requests in flight
alive, copies them to the old generation, where they die at once and
bring the next major collection (which marks the whole heap) closer.
On PyPy the collector then takes about half of the CPU a request costs.
PyPy reads its settings from the environment at startup only, so a
running process cannot change them: `worker_environment` gives worker
processes `PYPY_GC_SETTINGS` (where the operator set none), and a single
process gets them from the operator (docs/deployment.md, "On PyPy").
"""

from __future__ import annotations

import gc
import platform
from typing import Dict, Mapping

__all__ = ["JIT_TRACE_LIMIT", "PYPY_GC_SETTINGS", "settle", "worker_environment"]

ON_PYPY = platform.python_implementation() == "PyPy"

#: PyPy's collector for a gateway (measured in docs/deployment.md, "On PyPy"):
#: a 16 MB nursery (a minor collection every ~230 requests, which finds few
#: of them alive), marking steps of 8 MB (pauses as short as the default's),
#: and the first major collection at 48 MB instead of 8 nurseries (128 MB).
PYPY_GC_SETTINGS: Mapping[str, str] = {
    "PYPY_GC_NURSERY": "16MB",
    "PYPY_GC_INCREMENT_STEP": "8MB",
    "PYPY_GC_MIN": "48MB",
}


#: PyPy's JIT gives up a trace longer than 6,000 operations (its default)
#: and compiles the code apart, joined by calls; a request's path through
#: the gateway (parse, route, policies, forward, answer) is longer than that
#: (26 traces given up in the bench's first 10,000 requests).  At 12,000
#: the minimal route and the full pipeline cost 0.5 and 0.7 us less a
#: request; PyPy's maximum, 16,384, gained no more.  With sockets, 16,000
#: did not either (bench/socket_cost.py gw, 3 alternating pairs on
#: 2026-12-05: 20.5-22.4 us of CPU a request at 12,000, 19.8-22.4 at 16,000).
JIT_TRACE_LIMIT = 12000


def settle(_: object = None) -> None:
    """Collect once, then keep what is alive now out of later collections (see the module docstring)."""
    if ON_PYPY:
        import pypyjit  # PyPy's own module

        pypyjit.set_param(f"trace_limit={JIT_TRACE_LIMIT}")
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def worker_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment for a worker process: ``environ``, and on PyPy each of `PYPY_GC_SETTINGS` the operator did not set."""
    env = dict(environ)
    if ON_PYPY:
        for name, value in PYPY_GC_SETTINGS.items():
            env.setdefault(name, value)
    return env
