"""
``/admin/keys``: create, list and revoke API keys over the admin listener
(which authenticates the operator; this resource assumes it did).

    POST   /admin/keys       {"consumer": "acme", "expires_in": "30d", "authenticator": "keys"}
                             -> 201 {"id", "key", "consumer", "authenticator", "created_at", "expires_at"}
    GET    /admin/keys       -> 200 {"keys": [...]}        (never a secret nor a hash; with
                                                             "last_used_at": this process's last use)
    GET    /admin/keys/{id}  -> 200 {...} | 404
    DELETE /admin/keys/{id}  -> 204 | 404

The key itself appears once, in the answer to the POST (``Cache-Control:
no-store``); the store keeps only its hash.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.policies.auth.keys import new_key, timestamp, valid_consumer
from twistgate.config import parse_duration
from twistgate.errors import error_body
from twistgate.http import request_id_from

_log = Logger()
MAX_BODY = 64 * 1024
_ID = re.compile(r"[0-9a-f]{16}\Z")
CREATE_FIELDS = ("consumer", "expires_in", "authenticator")


class AdminRequestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def choose_authenticator(names: Any, requested: Any) -> str:
    """The api_key authenticator a request means; the only one when not named."""
    names = sorted(names)
    if requested is None:
        if len(names) == 1:
            return names[0]
        raise AdminRequestError(400, "bad_request", f"'authenticator' is required: one of {', '.join(names)}")
    if requested not in names:
        raise AdminRequestError(404, "not_found", f"no api_key authenticator {requested!r}; defined: {', '.join(names)}")
    return str(requested)


def creation_request(body: Any, names: Any) -> Tuple[str, str, Optional[float]]:
    """(authenticator, consumer, expires_in seconds) from a POST body; AdminRequestError otherwise."""
    if not isinstance(body, dict):
        raise AdminRequestError(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise AdminRequestError(400, "bad_request", f"unknown field {unknown[0]!r}; expected {', '.join(CREATE_FIELDS)}")
    problem = valid_consumer(body.get("consumer"))
    if problem:
        raise AdminRequestError(400, "bad_request", problem)
    expires_in = body.get("expires_in")
    seconds: Optional[float] = None
    if expires_in is not None:
        if not isinstance(expires_in, str):
            raise AdminRequestError(400, "bad_request", "'expires_in' must be a duration string like \"30d\"")
        try:
            seconds = parse_duration(expires_in)
        except ValueError as error:
            raise AdminRequestError(400, "bad_request", f"'expires_in': {error}") from None
        if seconds <= 0:
            raise AdminRequestError(400, "bad_request", "'expires_in' must be longer than zero")
    return choose_authenticator(names, body.get("authenticator")), body["consumer"], seconds


def _send(request: Any, status: int, document: Optional[Dict[str, Any]]) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    request.setHeader(b"Cache-Control", b"no-store")
    body = b""
    if document is not None:
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if body:
        request.write(body)
    request.finish()


def _send_error(request: Any, failure: Failure) -> None:
    if failure.check(AdminRequestError):
        error = failure.value
        status, code, message = error.status, error.code, error.message
    else:
        _log.failure("admin key operation failed", failure)
        status, code, message = 503, "store_unavailable", "The API key store is unavailable."
    if request.finished or getattr(request, "_disconnected", False):
        return
    body = error_body(code, message, request_id_from(request.requestHeaders))
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()


def _answer(request: Any, d: "Deferred[Tuple[int, Optional[Dict[str, Any]]]]") -> int:
    d.addCallback(lambda result: _send(request, *result))
    d.addErrback(lambda failure: _send_error(request, failure))
    return NOT_DONE_YET


class KeysResource(Resource):
    """``/admin/keys``: the collection."""

    def __init__(self, service: Any) -> None:
        super().__init__()
        self.service = service

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return KeyResource(self.service, path.decode("latin-1"))

    def render(self, request: Any) -> Any:
        if request.method == b"GET":
            return _answer(request, self._list(request))
        if request.method == b"POST":
            return _answer(request, self._create(request))
        request.setHeader(b"Allow", b"GET, POST")
        return _answer(request, _refuse(405, "method_not_allowed", "Use GET or POST."))

    def _list(self, request: Any) -> "Deferred[Any]":
        authenticators = self.service.api_keys()
        wanted = request.args.get(b"authenticator")
        if wanted:
            try:
                names = [choose_authenticator(authenticators, wanted[0].decode("utf-8", "replace"))]
            except AdminRequestError as error:
                return _fail(error)
        else:
            names = sorted(authenticators)
        now = self.service.clock.seconds()
        usage = getattr(self.service, "key_usage", {})
        found: list = []
        d: Deferred = succeed(None)
        for name in names:
            authenticator = authenticators[name]
            d.addCallback(lambda _, a=authenticator: a.store.list(a.name))
            d.addCallback(lambda records: found.extend(
                dict(r.public(now), last_used_at=timestamp(usage.get(r.id))) for r in records
            ))
        return d.addCallback(lambda _: (200, {"keys": found}))

    def _create(self, request: Any) -> "Deferred[Any]":
        try:
            raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
            if len(raw) > MAX_BODY:
                raise AdminRequestError(413, "payload_too_large", "The body is too large.")
            try:
                body = json.loads(raw.decode("utf-8")) if raw.strip() else None
            except (UnicodeDecodeError, ValueError):
                raise AdminRequestError(400, "bad_request", "the body is not valid JSON") from None
            authenticators = self.service.api_keys()
            name, consumer, expires_in = creation_request(body, authenticators)
        except AdminRequestError as error:
            return _fail(error)
        authenticator = authenticators[name]
        record, key = new_key(name, consumer, self.service.clock.seconds(), expires_in)
        location = request.path.rstrip(b"/") + b"/" + record.id.encode("ascii")
        shown = {
            "id": record.id,
            "key": key,
            "consumer": record.consumer,
            "authenticator": name,
            "created_at": timestamp(record.created_at),
            "expires_at": timestamp(record.expires_at),
        }

        def created(_: Any) -> Tuple[int, Dict[str, Any]]:
            _log.info("API key {id} created for consumer {consumer} ({authenticator})", id=record.id, consumer=consumer, authenticator=name)
            request.setHeader(b"Location", location)
            return 201, shown

        return authenticator.store.create(record).addCallback(created)


class KeyResource(Resource):
    """``/admin/keys/{id}``: one key."""

    isLeaf = True

    def __init__(self, service: Any, key_id: str) -> None:
        super().__init__()
        self.service = service
        self.key_id = key_id

    def render(self, request: Any) -> Any:
        if request.postpath not in ([], [b""]):
            return _answer(request, _refuse(404, "not_found", "No such key."))
        if request.method == b"GET":
            return _answer(request, self._find(lambda a: a.store.get(a.name, self.key_id), self._shown))
        if request.method == b"DELETE":
            return _answer(request, self._find(self._revoke, lambda found: (204, None)))
        request.setHeader(b"Allow", b"GET, DELETE")
        return _answer(request, _refuse(405, "method_not_allowed", "Use GET or DELETE."))

    def _shown(self, record: Any) -> Tuple[int, Dict[str, Any]]:
        return 200, record.public(self.service.clock.seconds())

    def _revoke(self, authenticator: Any) -> "Deferred[bool]":
        def revoked(found: bool) -> bool:
            if found:
                authenticator.forget(self.key_id)
                _log.info("API key {id} revoked ({authenticator})", id=self.key_id, authenticator=authenticator.name)
            return found

        return authenticator.store.revoke(authenticator.name, self.key_id, self.service.clock.seconds()).addCallback(revoked)

    def _find(self, operation: Any, answer: Any) -> "Deferred[Any]":
        """Run `operation` against each api_key authenticator until one has the key."""
        if not _ID.match(self.key_id):
            return _refuse(404, "not_found", "No such key.")
        remaining = [a for _, a in sorted(self.service.api_keys().items())]

        def next_one(_: Any = None) -> Any:
            if not remaining:
                raise AdminRequestError(404, "not_found", "No such key.")
            return operation(remaining.pop(0)).addCallback(lambda found: answer(found) if found else next_one())

        return next_one()


def _refuse(status: int, code: str, message: str) -> "Deferred[Any]":
    return _fail(AdminRequestError(status, code, message))


def _fail(error: Exception) -> "Deferred[Any]":
    d: Deferred = Deferred()
    d.errback(Failure(error))
    return d
