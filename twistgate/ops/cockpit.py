"""
The operator's side of the admin API, beside `twistgate.ops.admin`'s read-only
views: the 15-minute history, draining targets and the audit trail.

    GET  /admin/stats/history[?route=NAME...]   the time series (`twistgate.ops.history`)
    POST /admin/upstreams/{upstream}/drain      {"target": "<url>"} (`twistgate.ops.drain`)
    POST /admin/upstreams/{upstream}/undrain    {"target": "<url>"}
    GET  /admin/audit[?limit=N]                 the audit trail, newest first (`twistgate.ops.audit`)

`Cockpit` answers them for one `AdminResource` (a single process, or a
worker's private socket); the supervisor of a host with workers uses
`twistgate.workers.hostcockpit.HostCockpit`, which answers for every worker.

Every admin action (reload, key create and revoke, drain, undrain) is
audited from the outside, when its answer is finished (`watch`): the same
code records a single process's actions and a supervisor's, refusals
included (a wrong token is an action refused), and no handler needs to know.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

from twistgate.errors import GatewayError
from twistgate.ops.admin_errors import MethodNotAllowed, NotFound
from twistgate.ops.audit import outcome_of, reload_details
from twistgate.ops.drain import drain, drain_request
from twistgate.ops.redact import redact_url

__all__ = ["Cockpit", "action_of", "configured_routes", "error_answer", "query_values"]

_NAME_LIMIT = 200  # characters of a name taken from a path or body into an audit entry


def _segment(raw: bytes) -> str:
    return unquote(raw.decode("utf-8", "replace"))[:_NAME_LIMIT]


def action_of(method: bytes, segments: List[bytes]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """
    The audited action a request asks for, and what its path names; None for
    anything else.  `segments` is the path after ``/admin/``.
    """
    if method == b"POST" and segments == [b"reload"]:
        return "reload", {}
    if segments[:1] == [b"keys"]:
        rest = [s for s in segments[1:] if s]
        if method == b"POST" and not rest:
            return "key_create", {}
        if method == b"DELETE" and len(rest) == 1:
            return "key_revoke", {"key_id": _segment(rest[0])}
        return None
    if method == b"POST" and len(segments) == 3 and segments[0] == b"upstreams" and segments[2] in (b"drain", b"undrain"):
        return segments[2].decode("ascii"), {"upstream": _segment(segments[1])}
    return None


def _client(request: Any) -> Optional[str]:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    if host is not None:
        return str(host)
    return "unix" if type(address).__name__ == "UNIXAddress" else None


def _body_json(request: Any) -> Any:
    """The request's JSON body (left for the handler to read from the start), or None."""
    content = getattr(request, "content", None)
    if content is None:
        return None
    try:
        content.seek(0)
        raw = content.read(64 * 1024)
        content.seek(0)
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        return None


def error_answer(request_id: str) -> Callable[[Any], Tuple[Dict[str, Any], int]]:
    """An errback turning a `GatewayError` into the contract's error body (the admin answers it as JSON)."""

    def answer(failure: Any) -> Tuple[Dict[str, Any], int]:
        failure.trap(GatewayError)
        error = failure.value
        return {"error": error.code, "message": error.message, "request_id": request_id}, error.status

    return answer


class Cockpit:
    """The operator's endpoints and the audit of actions, for one admin resource."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        #: Where actions are recorded; None: not here (a worker: its supervisor records them).
        self.audit = admin.runtime.ops.audit

    @property
    def ops(self) -> Any:
        return self.admin.runtime.ops

    # -- dispatch ----------------------------------------------------------------

    def routes(self) -> Dict[Tuple[bytes, bytes], Callable[[Any], Any]]:
        """The one-segment endpoints, for `AdminResource.routes`."""
        return {(b"GET", b"audit"): self.audit_answer}

    def nested(self, method: bytes, segments: List[bytes]) -> Callable[[Any], Any]:
        """The handler of a deeper path after ``/admin/``; `GatewayError` 404 or 405 otherwise."""
        if segments == [b"stats", b"history"]:
            return self._only(method, b"GET", self.history)
        if len(segments) == 3 and segments[0] == b"upstreams" and segments[2] in (b"drain", b"undrain"):
            name, on = _segment(segments[1]), segments[2] == b"drain"
            return self._only(method, b"POST", lambda request: self.drain(request, name, on))
        raise NotFound()

    @staticmethod
    def _only(method: bytes, allowed: bytes, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if method != allowed:
            allow = "GET, HEAD" if allowed == b"GET" else allowed.decode("ascii")
            raise MethodNotAllowed(headers=[("Allow", allow)])
        return handler

    # -- endpoints ---------------------------------------------------------------

    def history(self, request: Any) -> Any:
        runtime = self.admin.runtime
        selected = query_values(request, b"route") or None
        body = self.ops.history.answer(configured_routes(runtime.generation.config), selected)
        body["generation"] = self.ops.number
        return body

    def audit_answer(self, request: Any) -> Any:
        trail = self.ops.audit
        return trail.answer(_limit(request))

    def drain(self, request: Any, upstream: str, on: bool) -> Any:
        url = drain_request(request.content.read() if request.content is not None else b"")
        body = drain(self.ops, upstream, url, on)
        body["generation"] = self.ops.number
        return body

    # -- the audit of actions ------------------------------------------------------

    def watch(self, request: Any) -> None:
        """If `request` is an admin action, record it in the audit trail once its answer is finished."""
        if self.audit is None:
            return
        segments = request.path.split(b"/")[1:]
        if segments[:1] != [b"admin"]:
            return
        found = action_of(request.method, segments[1:])
        if found is None:
            return
        action, details = found
        # The body now: Twisted drops it when the answer is finished.  Only names are kept from it.
        body = _body_json(request) if action in ("drain", "undrain", "key_create") else None
        request.notifyFinish().addBoth(lambda _: self._record(request, action, details, body))

    def _record(self, request: Any, action: str, details: Dict[str, Any], body: Any) -> None:
        status = request.code
        if status not in (401, 403):  # without the token, the body is not the operator's
            details.update(self._details(request, action, status, body))
        ids = request.responseHeaders.getRawHeaders(b"x-request-id")
        self.audit.record(
            action, outcome_of(status), status=status, client=_client(request),
            request_id=ids[0].decode("ascii", "replace") if ids else None, details=details,
        )

    def _details(self, request: Any, action: str, status: int, body: Any) -> Dict[str, Any]:
        """The names an action's answer settled (picked one by one: never a secret)."""
        if action == "reload":
            last = self.ops.last_reload
            return reload_details(last) if last is not None else {}
        if action in ("drain", "undrain"):
            target = body.get("target") if isinstance(body, dict) else None
            return {"target": redact_url(target)[:_NAME_LIMIT]} if isinstance(target, str) else {}
        if action == "key_create" and 200 <= status < 300:
            details: Dict[str, Any] = {}
            location = request.responseHeaders.getRawHeaders(b"location")
            if location:
                details["key_id"] = location[0].decode("ascii", "replace").rstrip("/").rpartition("/")[2]
            if isinstance(body, dict):
                for name in ("consumer", "authenticator"):
                    if isinstance(body.get(name), str):
                        details[name] = body[name][:_NAME_LIMIT]
            return details
        return {}


def configured_routes(config: Any) -> List[str]:
    """Every route of a configuration, by name, traffic or not."""
    return [route.name for route in config.routes]


def query_values(request: Any, name: bytes) -> List[str]:
    """Every value of a query parameter (decoded text)."""
    return [v.decode("utf-8", "replace") for v in request.args.get(name, [])]


def _limit(request: Any) -> Optional[int]:
    values = request.args.get(b"limit")
    if not values:
        return None
    try:
        return max(0, int(values[0]))
    except ValueError:
        raise GatewayError("'limit' must be a whole number.", status=400, code="bad_request") from None
