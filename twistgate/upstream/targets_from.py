"""
``upstreams.X.targets_from``: an upstream whose targets a discovery source
lists (``dns``, ``consul`` or a ``twistgate.discovery`` entry point),
instead of ``targets``.

`TargetsFromLoop` asks the source every ``interval`` and hands each answer
to the upstream, which keeps the state of targets that stay (health,
breaker, in-flight requests).  A failed, late or malformed answer changes
nothing: the last good list stays.  A source that waits for changes itself
(Consul's blocking queries) is asked again as soon as it answered.

A source, internally, has ``fetch() -> Deferred[list of Resolved]`` and may
have ``next_delay(ok) -> seconds``; third-party objects, with only
``targets()``, are adapted by `twistgate.upstream.external`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.config._node import Node
from twistgate.config.model import Location, TargetConfig
from twistgate.plugins.extension_points import DISCOVERY, ExtensionChoice, resolve
from twistgate.plugins.isolation import ExtensionFailed, WrongAnswer
from twistgate.plugins.options import peek, read_options
from twistgate.upstream.discovery import MAX_WEIGHT, Resolved
from twistgate.upstream.failures import describe

_log = Logger()

#: The keys of ``targets_from`` the gateway reads; the rest are the source's options.
TARGETS_FROM_KEYS = ("type", "interval", "timeout")
DEFAULT_INTERVAL = 10.0


@attrs.frozen(kw_only=True)
class TargetsFromConfig:
    """``targets_from: {type, interval, timeout, ...options}``."""

    type: str
    source: ExtensionChoice
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_INTERVAL  # a plugin's targets() must answer within it
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen
class DiscoverySupport:
    """What the built-in sources get from the gateway (`ExtensionContext.internal`)."""

    interval: float
    timeout: float
    resolver: Any = None  # a twisted.names resolver (DNS); None: the system's


def parse_targets_from(node: Node) -> Optional[TargetsFromConfig]:
    if node.kind != "mapping":
        node.mapping(TARGETS_FROM_KEYS)  # reports what was written instead
        return None
    count = len(node.issues.found)
    type_node = peek(node, "type")
    extension = resolve(type_node, DISCOVERY) if type_node is not None else None
    if extension is None:
        node.mapping(TARGETS_FROM_KEYS + tuple(k for k, _ in (node.entries() or ())), required=("type",))
        return None
    read = read_options(node, extension.options, TARGETS_FROM_KEYS)
    if read is None:
        return None
    fields, options = read
    interval = fields.read("interval", Node.duration, DEFAULT_INTERVAL)
    timeout = fields.read("timeout", Node.duration, interval)
    location = node.location(at_key=True)
    if options is None or len(node.issues.found) != count:
        return None
    return TargetsFromConfig(
        type=extension.name,
        source=ExtensionChoice(extension=extension, options=options, location=location),
        interval=interval,
        timeout=timeout,
        location=location,
    )


def resolved_from_urls(urls: Any, weights: Optional[Sequence[int]] = None) -> List[Resolved]:
    """
    A source's answer as targets: a list of ``http(s)://host:port`` strings.

    :raises WrongAnswer: not a list of strings, or a string that is not a target URL.
    """
    from twistgate.config._upstreams import split_target_url

    if isinstance(urls, (str, bytes)) or not isinstance(urls, (list, tuple)):
        raise WrongAnswer(f"returned {_shown(urls)}, not a list of target URLs")
    found: Dict[Tuple[str, str, int], Resolved] = {}
    for index, url in enumerate(urls):
        if not isinstance(url, str):
            raise WrongAnswer(f"returned {_shown(url)} in its list, not a target URL (str)")
        try:
            scheme, host, port = split_target_url(url)
        except ValueError as error:
            raise WrongAnswer(str(error)) from None
        weight = max(1, min(MAX_WEIGHT, int(weights[index]))) if weights is not None else 1
        config = TargetConfig(url=url, scheme=scheme, host=host, port=port, weight=weight)
        found.setdefault((scheme, host.lower(), port), Resolved(config=config, address=None, port=port, host=host, weight=weight))
    return sorted(found.values(), key=lambda r: (r.config.scheme, r.host, r.port))


def urls_of(resolved: Iterable[Resolved]) -> List[str]:
    """The public form of a source's answer (``targets()``): one URL per address."""
    urls = []
    for r in resolved:
        host = r.address if r.address is not None else r.host
        shown = f"[{host}]" if ":" in host else host
        urls.append(f"{r.config.scheme}://{shown}:{r.port}")
    return urls


class TargetsFromLoop:
    """Asks one source for the target list, forever, keeping the last good answer."""

    def __init__(
        self,
        source: Any,
        clock: Any,
        interval: float,
        on_update: Callable[[List[Resolved]], None],
        upstream: str,
        name: str,
    ) -> None:
        self.source = source
        self.clock = clock
        self.interval = interval
        self.on_update = on_update
        self.upstream = upstream
        self.name = name
        self.answers = 0  # good answers so far
        self._timer: Any = None
        self._pending: Optional[Deferred[Any]] = None
        self._running = False
        self._last: Optional[List[str]] = None

    def start(self) -> None:
        if not self._running:
            self._running = True
            self._ask()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _ask(self) -> None:
        self._timer = None
        d = maybeDeferred(self.source.fetch)
        self._pending = d
        d.addCallbacks(self._answered, self._failed)
        d.addErrback(lambda f: _log.failure("discovery loop of {upstream} failed", f, upstream=self.upstream))

    def _answered(self, resolved: List[Resolved]) -> None:
        self._pending = None
        if not self._running:
            return
        self.answers += 1
        shown = [f"{r.config.url}" + (f" ({r.address})" if r.address else "") for r in resolved]
        if shown != self._last:
            log = _log.warn if not resolved else _log.info
            log(
                "upstream {upstream}: {source} lists {count} target(s): {targets}",
                upstream=self.upstream,
                source=self.name,
                count=len(resolved),
                targets=", ".join(shown) or "none",
            )
            self._last = shown
        self.on_update(resolved)
        self._next(True)

    def _failed(self, failure: Failure) -> None:
        self._pending = None
        if not self._running:
            return  # stopped (shutdown, reload): not a discovery problem
        _log.warn(
            "upstream {upstream}: {source} discovery failed ({reason}); keeping the last good list",
            upstream=self.upstream,
            source=self.name,
            reason=failure.value.reason if failure.check(ExtensionFailed) else describe(failure),
        )
        self._next(False)

    def _next(self, ok: bool) -> None:
        if not self._running:
            return
        delay_of = getattr(self.source, "next_delay", None)
        delay = delay_of(ok) if delay_of is not None else self.interval
        self._timer = self.clock.callLater(delay, self._ask)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"
