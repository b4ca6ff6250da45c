"""
Draining a target: ``POST /admin/upstreams/{upstream}/drain`` and
``/undrain`` with ``{"target": "<target url>"}``.

A drained target is left out of its upstream's candidates, so it gets no
new request (nor a retry, nor a sticky client), while the requests in flight
on it finish; its health checks go on, so the dashboard still shows whether
it is up.  Undrain puts it back at once.

Which URLs are drained is gateway state, not configuration: it lives in
`twistgate.ops.runtime.Operations.drains` (upstream name -> set of URLs),
which every `Upstream` of that name shares, so a drain holds across reloads
(a rebuilt upstream gets the same set) until undrained or restarted.  With
workers, the supervisor sends the same request to every worker and replays
its drains to a worker that (re)starts (`twistgate.workers.hostcockpit`).
"""

from __future__ import annotations

import json
from typing import Any, Dict
from urllib.parse import urlsplit

from twistgate.errors import GatewayError

__all__ = ["BadDrainRequest", "NoSuchTarget", "drain", "drain_request"]

MAX_BODY = 16 * 1024


class BadDrainRequest(GatewayError):
    status, code, default_message = 400, "bad_request", 'The body must be a JSON object {"target": "<target url>"}.'


class NoSuchTarget(GatewayError):
    status, code, default_message = 404, "not_found", "No such upstream or target."


def drain_request(raw: bytes) -> str:
    """The target URL of a drain request body; `BadDrainRequest` otherwise."""
    if len(raw) > MAX_BODY:
        raise BadDrainRequest("The body is too large.")
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise BadDrainRequest("The body is not valid JSON; expected {\"target\": \"<target url>\"}.") from None
    if not isinstance(body, dict) or set(body) != {"target"}:
        raise BadDrainRequest()
    target = body["target"]
    if not isinstance(target, str) or not target.strip():
        raise BadDrainRequest("'target' must be a target URL as /admin/upstreams shows it.")
    return target.strip().rstrip("/")


def canonical(url: str) -> str:
    """A target URL as `twistgate.upstream.target.Target.url` spells it: the scheme's default port left out."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    shown = host if port is None or port == default else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{shown}"


def drain(ops: Any, upstream_name: str, url: str, on: bool) -> Dict[str, Any]:
    """
    Drain (`on`) or undrain the target `url` of the serving generation's
    upstream `upstream_name`; the answer of the endpoint.  Undraining a URL
    the upstream no longer has (a reload removed it) only forgets the drain.
    """
    generation = ops.current
    upstream = generation.upstreams.get(upstream_name) if generation is not None else None
    if upstream is None:
        raise NoSuchTarget(f"No upstream {upstream_name!r}.")
    urls = [t.url for t in upstream.targets]
    url = canonical(url)
    drained = ops.drains.setdefault(upstream_name, set())
    if url not in urls and not (not on and url in drained):
        listed = ", ".join(dict.fromkeys(urls)) or "none"
        raise NoSuchTarget(f"Upstream {upstream_name!r} has no target {url!r}; its targets: {listed}.")
    changed = (url not in drained) if on else (url in drained)
    if on:
        drained.add(url)
    else:
        drained.discard(url)
    for live in ops.generations or [generation]:  # the retiring ones' upstreams share the set
        other = live.upstreams.get(upstream_name)
        if other is not None:
            other.refresh()
    in_flight = sum(t.in_flight for t in upstream.targets if t.url == url)
    answer: Dict[str, Any] = {
        "upstream": upstream_name, "target": url, "draining": on, "changed": changed, "in_flight": in_flight,
        "available_targets": len(upstream.candidates()),
    }
    if on and not upstream.candidates():
        answer["warning"] = f"no target of upstream {upstream_name!r} is available now: its requests get 503"
    return answer
