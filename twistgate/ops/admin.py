"""
The admin listener's resource: ``/metrics``, the JSON admin API under
``/admin/`` and the dashboard.

Everything under ``/admin/`` needs ``Authorization: Bearer <token>``
(compared in constant time), except the dashboard's own files, which hold
no data: the page asks for the token and sends it as that header.
``/metrics`` is open unless ``admin.metrics_auth`` is true, and so are the
probes ``/livez`` and ``/readyz`` (systemd, Kubernetes, load balancers).  Answers are
JSON; errors have the contract's body.  The token is read from the serving
generation, so a reload can rotate it.
"""

from __future__ import annotations

import hmac
import json
from importlib import resources
from typing import Any, Callable, Dict, Optional, Tuple

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from twistgate.errors import GatewayError, error_body
from twistgate.http import request_id_from
from twistgate.ops.admin_errors import AdminUnauthorized, MethodNotAllowed, NotFound
from twistgate.ops.admin_plugins import PluginPages
from twistgate.ops.admin_views import config_view, explain_view, health_view, routes_view, stats_view, upstreams_view
from twistgate.ops.cockpit import Cockpit
from twistgate.ops.metrics import MetricsResource

_log = Logger()

STATIC_FILES = {
    b"": ("dashboard.html", b"text/html; charset=utf-8"),
    b"dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    b"dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
DASHBOARD_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def static_file(name: str) -> bytes:
    """A dashboard file shipped in the package (twistgate/static/)."""
    return resources.files("twistgate").joinpath("static", name).read_bytes()


def bearer_token(request: Any) -> Optional[bytes]:
    value = request.getHeader(b"authorization")
    if not value:
        return None
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: Optional[bytes], expected: str) -> bool:
    """Constant-time comparison (hmac.compare_digest) of the presented token."""
    if given is None:
        return False
    return hmac.compare_digest(given, expected.encode("utf-8"))


class AdminResource(Resource):
    """The admin listener's root: one leaf that dispatches on the path."""

    isLeaf = True
    #: The history, drain and audit endpoints (the supervisor's answer for every worker).
    cockpit_class: Any = Cockpit

    def __init__(self, runtime: Any) -> None:
        super().__init__()
        self.runtime = runtime
        self.metrics = MetricsResource(runtime.ops.registry)
        self._static: Dict[bytes, Tuple[bytes, bytes]] = {}
        self.routes: Dict[Tuple[bytes, bytes], Callable[[Any], Any]] = {
            (b"GET", b"health"): self.health,
            (b"GET", b"routes"): self.routes_list,
            (b"GET", b"upstreams"): self.upstreams,
            (b"GET", b"stats"): self.stats,
            (b"GET", b"config"): self.config,
            (b"GET", b"explain"): self.explain,
            (b"POST", b"reload"): self.reload,
        }
        self.cockpit = self.cockpit_class(self)
        self.plugin_pages = PluginPages(self)
        self.routes.update(self.cockpit.routes())

    # -- dispatch ------------------------------------------------------------

    def render(self, request: Any) -> Any:
        request_id = request_id_from(request.requestHeaders)
        request.setHeader(b"X-Request-Id", request_id.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        self.cockpit.watch(request)  # the audit trail of actions
        try:
            return self._dispatch(request, request_id)
        except GatewayError as error:
            return self._error(request, error, request_id)

    def _dispatch(self, request: Any, request_id: str) -> Any:
        method = b"GET" if request.method == b"HEAD" else request.method
        segments = request.path.split(b"/")[1:]
        if segments in ([b"livez"], [b"readyz"]):
            if method != b"GET":
                raise MethodNotAllowed(headers=[("Allow", "GET, HEAD")])
            return self._probe(request, segments[0])
        if segments == [b"metrics"]:
            if method != b"GET":
                raise MethodNotAllowed(headers=[("Allow", "GET, HEAD")])
            if self.settings().metrics_auth:
                self._authorise(request)
            return self.metrics.render_GET(request)
        if not segments or segments[0] != b"admin":
            raise NotFound()
        if len(segments) == 1:  # /admin -> /admin/
            request.setResponseCode(301)
            request.setHeader(b"Location", b"/admin/")
            return b""
        name = segments[1]
        if len(segments) == 2 and name in STATIC_FILES:
            if method != b"GET":
                raise MethodNotAllowed(headers=[("Allow", "GET, HEAD")])
            return self._static_file(request, name)
        self._authorise(request)
        if name == b"keys":
            return self._keys(request, segments[2:])
        if name == b"plugins":
            if method != b"GET":
                raise MethodNotAllowed(headers=[("Allow", "GET, HEAD")])
            return self.plugin_pages.render(request, segments[2:], request_id)
        # Deeper paths: /admin/stats/history, /admin/upstreams/{name}/drain|undrain (404/405 otherwise).
        handler = self.cockpit.nested(method, segments[1:]) if len(segments) != 2 else self.routes.get((method, name))
        if handler is None:
            allowed = sorted(m.decode() for (m, n) in self.routes if n == name)
            if not allowed:
                raise NotFound()
            raise MethodNotAllowed(headers=[("Allow", ", ".join(allowed))])
        result = handler(request)
        if hasattr(result, "addCallback"):
            result.addCallback(lambda answer: self._send(request, *answer))
            result.addErrback(self._failed, request, request_id)
            return NOT_DONE_YET
        return self._json(request, result)

    def settings(self) -> Any:
        return self.runtime.admin_settings()

    def _probe(self, request: Any, name: bytes) -> bytes:
        """``/livez``: the process answers.  ``/readyz``: it serves new requests (503 starting or draining)."""
        if name == b"livez":
            return self._json(request, {"status": "alive"})
        readiness = getattr(self.runtime, "readiness", None)
        ready, why = readiness() if readiness is not None else (not self.runtime.draining, "ready")
        return self._json(request, {"status": why}, 200 if ready else 503)

    def _authorise(self, request: Any) -> None:
        given = bearer_token(request)
        if token_matches(given, self.settings().token):
            return
        challenge = 'Bearer realm="twistgate-admin"'
        if given is not None:
            challenge += ', error="invalid_token"'
        raise AdminUnauthorized(headers=[("WWW-Authenticate", challenge)])

    # -- answers -------------------------------------------------------------

    def _json(self, request: Any, data: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(data, indent=1, default=str).encode("utf-8") + b"\n"

    def _send(self, request: Any, data: Any, status: int = 200) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(self._json(request, data, status))
        request.finish()

    def _error(self, request: Any, error: GatewayError, request_id: str) -> bytes:
        request.setResponseCode(error.status)
        request.setHeader(b"Content-Type", b"application/json")
        for name, value in error.headers:
            request.responseHeaders.addRawHeader(name, value)
        return error_body(error.code, error.message, request_id)

    def _failed(self, failure: Any, request: Any, request_id: str) -> None:
        _log.failure("admin request {request_id} failed", failure, request_id=request_id)
        if not request.finished:
            request.write(self._error(request, GatewayError(), request_id))
            request.finish()

    def _static_file(self, request: Any, name: bytes) -> bytes:
        cached = self._static.get(name)
        if cached is None:
            filename, content_type = STATIC_FILES[name]
            cached = self._static[name] = (static_file(filename), content_type)
        body, content_type = cached
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Security-Policy", DASHBOARD_CSP)
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        return body

    def _keys(self, request: Any, rest: list) -> Any:
        """``/admin/keys...``: the auth feature's own admin resource, behind our token."""
        auth = self.runtime.generation.services.auth
        make = getattr(auth, "admin_resource", None)
        resource = make() if make is not None else None
        if resource is None:
            raise NotFound("API keys are not managed by this gateway (no key store configured).")
        request.prepath = [b"admin", b"keys"]
        request.postpath = list(rest)
        return getChildForRequest(resource, request).render(request)

    # -- endpoints -------------------------------------------------------------

    def health(self, request: Any) -> Any:
        return health_view(self.runtime)

    def routes_list(self, request: Any) -> Any:
        return routes_view(self.runtime)

    def upstreams(self, request: Any) -> Any:
        return upstreams_view(self.runtime)

    def stats(self, request: Any) -> Any:
        return stats_view(self.runtime)

    def config(self, request: Any) -> Any:
        return config_view(self.runtime)

    def explain(self, request: Any) -> Any:
        return explain_view(self.runtime, request.args)

    def reload(self, request: Any) -> Any:
        def answer(outcome: Dict[str, Any]) -> Tuple[Dict[str, Any], int]:
            if outcome["ok"]:
                return outcome, 200
            body = {
                "error": "invalid_config" if outcome.get("issues") else "reload_failed",
                "message": outcome.get("message", "The new configuration was rejected; the old one keeps serving."),
                "request_id": _answer_request_id(request),
                **outcome,
            }
            return body, 400

        return maybeDeferred(self.runtime.reload, reason="admin").addCallback(answer)


def _answer_request_id(request: Any) -> str:
    """The request id `render` put on the answer (``X-Request-Id``): the body repeats the same one."""
    values = request.responseHeaders.getRawHeaders(b"X-Request-Id")
    return values[0].decode("ascii") if values else request_id_from(request.requestHeaders)
