"""
Hot reload: build the new generation completely, then swap it in at once.

The order is what makes it safe:

1. read and validate the file, off the reactor thread (parsing, files,
   certificates); build the whole `Generation` (routes, plugins, policies,
   services, clients), reusing unchanged upstreams with their connections,
   health and breaker state.  Any error: rejected, the old one serves on.
2. start its services and fire its plugins' ``on_startup``.  A failure:
   rejected, what was started is stopped.
3. swap `GatewayResource.generation`: one attribute assignment on the reactor
   thread, so every request after it sees the new generation and every
   request before it keeps the one it started on.
4. retire the old generation once its own in-flight requests are done:
   ``on_shutdown``, services stopped, the pools only it used closed.

Reloads are serialised: one at a time, in the order asked.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any, Callable, Dict, List, Optional, Set

import attrs
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks, succeed
from twisted.logger import Logger

from twisted.internet.defer import maybeDeferred

from twistgate.config import ConfigError
from twistgate.generation import Generation, comparable
from twistgate.ops.runtime import Operations
from twistgate.validation import load_prepared
from twistgate.websocket.config import drain_timeout as websocket_drain_timeout

_log = Logger()


def issue_dicts(error: ConfigError) -> List[Dict[str, Any]]:
    return [
        {"file": i.location.file, "line": i.location.line, "path": i.location.path, "message": i.message, "text": str(i)}
        for i in error.issues
    ]


def changes(old: Generation, new: Generation) -> Dict[str, Any]:
    """
    What the reload changed, by name, for the answer and the log.

    A route whose only difference is its place in the file is *moved*, not
    *changed*: the place still matters (it is the last tie-breaker between
    equally specific routes), so it is reported.  Routes added or removed
    around a route do not move it; moved are the fewest routes whose
    relative order changed (those outside the longest run kept in order).
    """
    old_routes = {r.name: r for r in old.config.routes}
    new_routes = {r.name: r for r in new.config.routes}
    common = set(old_routes) & set(new_routes)
    changed = sorted(n for n in common if _route_content(old_routes[n]) != _route_content(new_routes[n]))
    return {
        "routes_added": sorted(set(new_routes) - set(old_routes)),
        "routes_removed": sorted(set(old_routes) - set(new_routes)),
        "routes_changed": changed,
        "routes_moved": sorted(set(moved([r.name for r in old.config.routes], [r.name for r in new.config.routes])) - set(changed)),
        "upstreams_added": sorted(set(new.upstreams) - set(old.upstreams)),
        "upstreams_removed": sorted(set(old.upstreams) - set(new.upstreams)),
        "upstreams_reused": sorted(new.borrowed),
        "upstreams_rebuilt": sorted((set(old.upstreams) & set(new.upstreams)) - new.borrowed),
    }


def _route_content(route: Any) -> Any:
    """A route as `comparable`, without its position in the file."""
    return comparable(attrs.evolve(route, index=0))


def moved(old_order: List[str], new_order: List[str]) -> List[str]:
    """
    The names in both orders whose place among the others changed: those
    outside the longest runs kept in order (moving one route up names that
    route, not every route it passed).
    """
    common: Set[str] = set(old_order) & set(new_order)
    before = [name for name in old_order if name in common]
    after = [name for name in new_order if name in common]
    kept: Set[str] = set()
    for block in SequenceMatcher(None, before, after, autojunk=False).get_matching_blocks():
        kept.update(before[block.a : block.a + block.size])
    return [name for name in after if name not in kept]


@attrs.frozen
class Prepared:
    """A reload between its two phases: `new` is built and started, `old` still serves."""

    old: Generation
    new: Generation
    source: str
    reason: str


class Reloader:
    """Swaps generations in a `GatewayResource` and retires the old ones."""

    def __init__(
        self,
        resource: Any,
        ops: Operations,
        clock: Any,
        *,
        startup: Callable[[Generation], Any] = lambda g: None,
        shutdown: Callable[[Generation], Any] = lambda g: None,
        after_swap: Optional[List[Callable[[Generation], Optional[List[str]]]]] = None,
        load: Callable[[str], Any] = load_prepared,
        run_blocking: Callable[..., Any] = maybeDeferred,
    ) -> None:
        """
        :param load: reads and validates a configuration file and reads the
            files it names: ``(config, FileMaterial)`` (blocking: files,
            parsing, certificates, hashing).
        :param run_blocking: runs ``load`` (a thread pool in the service,
            so a reload never stalls requests; synchronously in tests).
        """
        self.resource = resource
        self.ops = ops
        self.clock = clock
        self.startup = startup
        self.shutdown = shutdown
        self.after_swap = after_swap if after_swap is not None else []
        self.load = load
        self.run_blocking = run_blocking
        self.retiring: Dict[Generation, "Deferred[None]"] = {}
        #: Called with no argument each time a generation has been retired (twistgate.gc_tuning.settle).
        self.after_retire: List[Callable[[], None]] = []
        self._lock = DeferredLock()

    def reload(self, path: Optional[str] = None, *, reason: str = "admin") -> "Deferred[Dict[str, Any]]":
        """Fires with ``{"ok": bool, ...}``; never fails."""
        return self._lock.run(self._reload, path, reason)

    @inlineCallbacks
    def _reload(self, path: Optional[str], reason: str) -> Any:
        prepared = yield self.prepare(path, reason=reason)
        if isinstance(prepared, dict):
            return prepared
        return self.commit(prepared)

    @inlineCallbacks
    def prepare(self, path: Optional[str] = None, *, reason: str = "admin") -> Any:
        """
        Phase one (steps 1 and 2): the new generation built and started, not
        serving.  Fires with a `Prepared` to `commit` or `abort`, or with the
        rejection's ``{"ok": False, ...}``.  Workers prepare on every process
        before any of them commits.
        """
        old = self.resource.generation
        source = path or old.config.source
        if source is None:
            return self._rejected(reason, "The configuration was not read from a file: there is nothing to reload.")
        try:
            config, files = yield self.run_blocking(self.load, source)
            new = Generation(
                config, self.clock, previous=old, agent_for=old.agent_for,
                client_for=old.client_for, plugin_registry=old.plugin_registry, files=files,
            )
        except ConfigError as error:
            return self._rejected(reason, f"{source}: invalid configuration; the old one keeps serving.", issues=issue_dicts(error))
        except Exception as error:  # a factory that raised something else: still the user's config
            _log.failure("building the new configuration failed")
            return self._rejected(reason, f"{source}: the configuration could not be built: {error}")
        try:
            yield new.start()
            yield self.startup(new)
        except Exception as error:
            _log.failure("the new configuration failed to start; keeping the old one")
            yield self._stop(new)
            return self._rejected(reason, f"the new configuration failed to start: {error}")
        return Prepared(old=old, new=new, source=new.config.source or source, reason=reason)

    def commit(self, prepared: "Prepared") -> Dict[str, Any]:
        """Phase two (steps 3 and 4): swap the prepared generation in; the summary."""
        old, new, reason = prepared.old, prepared.new, prepared.reason
        # The swap: from here on every new request gets `new`.
        changed = changes(old, new)
        self.resource.swap(new)
        new.take_over(old)
        number = new.number
        warnings: List[str] = []
        for callback in self.after_swap:
            try:
                warnings.extend(callback(new) or ())
            except Exception as error:
                _log.failure("after-reload step failed")
                warnings.append(str(error))
        self.retire(old)
        # Its open WebSockets finish on it, for at most websocket.drain_timeout (twistgate.websocket).
        self.ops.websockets.drain(old, websocket_drain_timeout(new.config.sections.get("websocket")))
        summary = {"generation": number, "reason": reason, "source": prepared.source, "changes": changed, "warnings": warnings}
        self.ops.reload_done(True, summary)
        _log.info("configuration reloaded ({reason}): generation {number}", reason=reason, number=number)
        return {"ok": True, **summary}

    def abort(self, prepared: "Prepared", why: str) -> "Deferred[None]":
        """Discard a prepared generation (another process refused the configuration)."""
        _log.warn("configuration reload abandoned ({reason}): {why}", reason=prepared.reason, why=why)
        self.ops.reload_done(False, {"reason": prepared.reason, "message": why, "generation": self.ops.number})
        return self._stop(prepared.new)

    def _rejected(self, reason: str, message: str, issues: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        summary: Dict[str, Any] = {"reason": reason, "message": message, "generation": self.ops.number}
        if issues:
            summary["issues"] = issues
        self.ops.reload_done(False, summary)
        _log.error(
            "configuration reload rejected ({reason}): {message}{details}",
            reason=reason, message=message,
            details="".join(f"\n  {i['text']}" for i in issues or ()),
        )
        return {"ok": False, **summary}

    def retire(self, old: Generation) -> "Deferred[None]":
        """Stop `old` once its own requests are done (streams included)."""
        if old in self.retiring:
            return self.retiring[old]
        d = old.inflight.idle()
        # Listed before the callbacks: an idle generation retires at once, and
        # `_retired` must find it here to take it off (else it is held forever).
        self.retiring[old] = d
        d.addCallback(lambda _: self._stop(old))
        d.addErrback(lambda f: None if f.check(Exception) else f)
        return d

    def _stop(self, generation: Generation) -> "Deferred[None]":
        if generation.retired:
            return succeed(None)
        generation.retired = True
        d = succeed(None)
        d.addCallback(lambda _: self.shutdown(generation))
        d.addErrback(lambda f: _log.failure("on_shutdown failed for a retired configuration", f))
        d.addCallback(lambda _: generation.stop())
        d.addBoth(lambda _: self._retired(generation))
        return d

    def _retired(self, generation: Generation) -> None:
        self.ops.retired(generation)
        self.retiring.pop(generation, None)
        for hook in self.after_retire:
            try:
                hook()
            except Exception:
                _log.failure("an after_retire hook failed")

    def stop_retiring(self) -> "Deferred[Any]":
        """At shutdown: stop every generation still retiring, drained or not."""
        from twisted.internet.defer import DeferredList

        return DeferredList([self._stop(g) for g in list(self.retiring)], consumeErrors=True)
