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

from urllib.parse import unquote

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from twistgate import __version__
from twistgate.errors import GatewayError, error_body
from twistgate.http import request_id_from
from twistgate.messages import Response
from twistgate.ops.cockpit import Cockpit
from twistgate.ops.explain import explain
from twistgate.ops.metrics import MetricsResource
from twistgate.ops.redact import effective_config
from twistgate.ops.runtime import upstream_targets

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


class NotFound(GatewayError):
    status, code, default_message = 404, "not_found", "No such admin resource."


class MethodNotAllowed(GatewayError):
    status, code, default_message = 405, "method_not_allowed", "The admin resource does not accept this method."


class AdminUnauthorized(GatewayError):
    status, code, default_message = 401, "unauthorized", "A valid admin bearer token is required."


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
            return self._plugins(request, segments[2:], request_id)
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

    def _plugins(self, request: Any, rest: list, request_id: str) -> Any:
        """
        ``/admin/plugins/``: the plugin instances; ``/admin/plugins/NAME/...``:
        that plugin's ``admin_get`` (see `twistgate.plugins.hookspecs`).
        """
        plugins = self.runtime.generation.plugins
        if not rest or rest == [b""]:
            listed: Dict[str, Any] = {}
            for instance in plugins.instances:
                entry = listed.setdefault(instance.name, {"name": instance.name, "instances": [], "admin": False})
                entry["instances"].append({"route": instance.route})
                entry["admin"] = plugins.admin_call(instance.name) is not None
            return self._json(request, {"generation": self.runtime.ops.number, "plugins": list(listed.values())})
        name = unquote(rest[0].decode("utf-8", "replace"))
        route = _arg(request.args, b"route")
        call = plugins.admin_call(name, route)
        if call is None:
            where = f" on route {route!r}" if route is not None else ""
            raise NotFound(f"No plugin {name!r} with an admin page{where}.")
        path = unquote("/".join(part.decode("utf-8", "replace") for part in rest[1:]))
        query = {
            key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
            for key, values in request.args.items()
        }
        answer = maybeDeferred(lambda: _settled(call((path, query))))
        answer.addCallback(self._plugin_answer, request, name)
        answer.addErrback(self._plugin_failed, request, request_id, call)
        return NOT_DONE_YET

    def _plugin_answer(self, result: Any, request: Any, name: str) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if result is None:
            raise NotFound(f"Plugin {name!r} has nothing at this path.")
        if isinstance(result, Response):
            request.setResponseCode(result.status)
            for header, value in result.headers:
                request.responseHeaders.addRawHeader(header, value)
            request.write(result.body)
            request.finish()
            return
        self._send(request, result)

    def _plugin_failed(self, failure: Any, request: Any, request_id: str, call: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if failure.check(GatewayError):
            error = failure.value
        else:
            _log.failure(
                "Plugin {plugin!r} raised an exception in admin_get (request {request_id})",
                failure, plugin=call.plugin, hook="admin_get", route=call.route, request_id=request_id,
            )  # fmt: skip
            error = GatewayError()
        request.write(self._error(request, error, request_id))
        request.finish()

    # -- endpoints -------------------------------------------------------------

    def health(self, request: Any) -> Any:
        runtime = self.runtime
        generation = runtime.generation
        ops = runtime.ops
        upstreams = {}
        for name, upstream in sorted(generation.upstreams.items()):
            targets = upstream_targets(upstream)
            upstreams[name] = {"targets": len(targets), "healthy": sum(1 for t in targets if t.get("healthy", True))}
        draining = runtime.draining
        body = {
            "status": "draining" if draining else "ok",
            "version": __version__,
            "generation": ops.number,
            "uptime_seconds": round(ops.clock.seconds() - ops.started, 3),
            "in_flight": ops.in_flight(),
            "open_connections": sum(ops.connections.values()),
            "routes": len(generation.config.routes),
            "upstreams": upstreams,
            "last_reload": ops.last_reload,
            "api_keys": _manages_keys(generation),
        }
        return (body, 503) if draining else body

    def routes_list(self, request: Any) -> Any:
        generation = self.runtime.generation
        rows = []
        for row in generation.routes.rows():
            runtime_route = _runtime_route(generation, row.name)
            rows.append(
                {
                    "rank": row.rank, "name": row.name, "priority": row.priority, "host": row.host,
                    "methods": row.methods, "path": row.path, "kind": row.kind, "upstream": row.upstream,
                    "rewrite": row.rewrite or None,
                    "timeout_seconds": runtime_route.timeout if runtime_route is not None else None,
                    "policies": sorted(row.config.policies),
                    "stages_and_plugins": list(runtime_route.chain.names) if runtime_route is not None else [],
                }
            )
        return {"generation": self.runtime.ops.number, "routes": rows}

    def upstreams(self, request: Any) -> Any:
        generation = self.runtime.generation
        out = []
        for name, upstream in sorted(generation.upstreams.items()):
            targets = upstream_targets(upstream)
            in_flight = [t.get("in_flight") for t in targets if t.get("in_flight") is not None]
            out.append(
                {
                    "name": name,
                    "balance": upstream.config.balance,
                    "policies": sorted(upstream.config.policies),
                    "in_flight": sum(in_flight) if in_flight else None,
                    "healthy_targets": sum(1 for t in targets if t.get("healthy", True)),
                    "targets": targets,
                }
            )
        return {"generation": self.runtime.ops.number, "upstreams": out}

    def stats(self, request: Any) -> Any:
        ops = self.runtime.ops
        body = ops.stats.snapshot()
        body.update(
            generation=ops.number,
            uptime_seconds=round(ops.clock.seconds() - ops.started, 3),
            in_flight=ops.in_flight(),
            open_connections=sum(ops.connections.values()),
        )
        return body

    def config(self, request: Any) -> Any:
        config = self.runtime.generation.config
        return {"generation": self.runtime.ops.number, "source": config.source, "config": effective_config(config)}

    def explain(self, request: Any) -> Any:
        args = request.args
        path = _arg(args, b"path")
        if not path:
            raise GatewayError("Query parameter 'path' is required, as in ?method=GET&host=api.example.com&path=/users/1", status=400, code="bad_request")
        headers = {}
        for line in args.get(b"header", []):  # ?header=X-Canary:1 (repeatable)
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        return explain(
            self.runtime.generation,
            method=_arg(args, b"method") or "GET",
            host=_arg(args, b"host"),
            path=path,
            headers=headers,
            listener=_arg(args, b"listener"),
        )

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


def _arg(args: Dict[bytes, list], name: bytes) -> Optional[str]:
    values = args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _manages_keys(generation: Any) -> bool:
    """Whether ``/admin/keys`` is served (an api_key authenticator with its store): the dashboard's keys view."""
    api_keys = getattr(generation.services.auth, "api_keys", None)
    return bool(api_keys()) if api_keys is not None else False


def _runtime_route(generation: Any, name: str) -> Any:
    routes = getattr(generation, "routes_by_name", None)
    if routes is not None:
        return routes.get(name)
    return None


def _settled(result: Any) -> Any:
    """A coroutine as a Deferred; anything else as it is."""
    import inspect

    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result

