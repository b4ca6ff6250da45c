"""
The per-route ``auth`` stage: who is calling, and may they call this route.

For each request it first removes every identity header the gateway sets
(client-sent copies must never reach the upstream), in every spelling an
upstream may read as the same name: case aside, CGI and WSGI servers (and
nginx's ``underscores_in_headers``) map ``-`` and ``_`` to one variable, so
``X_User_Id`` is ``X-User-Id`` to them.  Then it tries the route's
authenticators in order; the first identity that meets the route's
requirements wins.  Then it sets `request.consumer`, puts the identity's
details (never secrets) in ``request.state["auth"]``, removes the route's
credentials unless ``keep_credentials`` is on, and adds the identity
headers.  Otherwise:

* 403 when some authenticator accepted the credentials but the identity does
  not meet the requirements (or the mTLS subject/SAN is not allowed);
* the authorization service's own answer, as it is, when a ``forward``
  authenticator's service refused;
* 503 when a backend (key store, JWKS, authorization service) could not be consulted;
* 401 with one ``WWW-Authenticate`` challenge per authenticator of the route.

When every authenticator answers from memory the hook returns at once, with
no Deferred.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.messages import Response
from twistgate.policies.auth.base import Answered, BackendUnavailable, Identity, InvalidCredentials, NotPermitted, challenge
from twistgate.policies.auth.config import PluginAuthConfig, RouteAuthConfig
from twistgate.policies.auth.parse import parse_route_auth
from twistgate.config._issues import suggest
from twistgate.config.model import ConfigError, ConfigIssue, RouteConfig
from twistgate.errors import Forbidden, ServiceUnavailable, Unauthorized
from twistgate.fieldnames import FieldNames
from twistgate.headers import canonical_name
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import BLIND, Policy, Sight

_log = Logger()


class _Outcome:
    """What the authenticators said so far, for the refusal."""

    __slots__ = ("invalid", "forbidden", "missing_scopes", "unavailable", "answer")

    def __init__(self) -> None:
        self.invalid: Dict[str, InvalidCredentials] = {}
        self.forbidden: Optional[Identity] = None
        self.missing_scopes: Tuple[str, ...] = ()
        self.unavailable = False
        self.answer: Optional[Response] = None  # an authorization service's own answer (forward)


def _folded(name: bytes) -> bytes:
    """A header name as CGI/WSGI sees it: case and ``-``/``_`` do not matter."""
    return name.lower().replace(b"_", b"-")


class IdentityHeaders:
    """Removes client-sent identity headers, in every spelling an upstream treats as the same."""

    def __init__(self, names: Any) -> None:
        self.names = tuple(sorted(names))
        self.folded = frozenset(_folded(name) for name in self.names)
        self._keys = FieldNames(canonical_name(name) for name in self.names)  # as `Headers.raw` keys them

    def scrub(self, headers: Any) -> None:
        if not self.folded:
            return  # no authenticator sets a header
        raw = headers.raw
        # Set operations, not a lookup per identity header: a request
        # usually carries none of them.
        if not self._keys.isdisjoint(raw):
            for key in self._keys.intersection(raw):
                del raw[key]
        # The exact names are gone; what is left can only be a variant with
        # "_" (one search through every name joined, then a look at each).
        if b"_" in b"".join(raw):
            variants = [name for name in raw if b"_" in name and _folded(name) in self.folded]
            for name in variants:
                del raw[name]


class AuthStage:
    def __init__(self, config: RouteAuthConfig, authenticators: List[Any], identity_headers: Any, route: str) -> None:
        self.config = config
        self.route = route
        self.authenticators = tuple(authenticators)
        self.identity_headers = IdentityHeaders(identity_headers)
        self.scopes = frozenset(config.scopes)
        self.roles = frozenset(config.roles)
        self.consumers = frozenset(config.consumers)
        self.subjects = frozenset(config.allowed_subjects)
        self.sans = frozenset(config.allowed_sans)
        #: No requirement at all: any identity an authenticator accepts will do.
        self.anyone = not (self.scopes or self.roles or self.consumers or self.subjects or self.sans)
        # A route with one authenticator that can recall a verified identity
        # (a JWT seen before) asks it first: one call instead of the four of
        # `credentials`, `verify` and their helpers; anything else takes the long way.
        self._recall = getattr(self.authenticators[0], "recall", None) if len(self.authenticators) == 1 else None
        #: What removes the route's credentials once admitted (nothing with keep_credentials).
        self._strips = () if config.keep_credentials else tuple(authenticator.strip for authenticator in self.authenticators)
        #: The field a recalled identity's credential came in, removed as `strip` would, without its checks (None: kept).
        self._recalled_field = getattr(self.authenticators[0], "recalled_field", None) if self._recall and self._strips else None

    @hookimpl
    def on_request(self, request: Any) -> Any:
        identity_headers = self.identity_headers
        if identity_headers.folded:  # (scrub would return at once)
            identity_headers.scrub(request.headers)
        recall = self._recall
        if recall is not None:
            identity = recall(request)
            if identity is not None and self._admit(request, identity, None, True) is None:
                return None
        return self._attempt(request, 0, None)

    # -- trying the authenticators ------------------------------------------

    def _attempt(self, request: Any, start: int, outcome: Optional[_Outcome]) -> Any:
        """`outcome` is made only once something is refused (the admitted request never needs it)."""
        authenticators = self.authenticators
        for index in range(start, len(authenticators)):
            authenticator = authenticators[index]
            credentials = authenticator.credentials(request)
            if credentials is None:
                continue
            try:
                result = authenticator.verify(request, credentials)
            except Exception as error:
                outcome = outcome or _Outcome()
                self._note(outcome, authenticator, error)
                continue
            if result.__class__ is not Identity and isinstance(result, Deferred):  # (Deferred's ABC check is slow)
                outcome = outcome or _Outcome()
                return result.addCallbacks(
                    self._verified,
                    self._failed,
                    callbackArgs=(request, index, outcome),
                    errbackArgs=(request, index, outcome),
                )
            outcome = self._admit(request, result, outcome)
            if outcome is None:
                return None
        refusal = self._refusal(request, outcome or _Outcome())
        if isinstance(refusal, Response):
            return refusal
        raise refusal

    def _verified(self, identity: Identity, request: Any, index: int, outcome: _Outcome) -> Any:
        if self._admit(request, identity, outcome) is None:
            return None
        return self._attempt(request, index + 1, outcome)

    def _failed(self, failure: Failure, request: Any, index: int, outcome: _Outcome) -> Any:
        self._note(outcome, self.authenticators[index], failure.value, failure)
        return self._attempt(request, index + 1, outcome)

    def _note(self, outcome: _Outcome, authenticator: Any, error: BaseException, failure: Optional[Failure] = None) -> None:
        if isinstance(error, InvalidCredentials):
            outcome.invalid[authenticator.name] = error
        elif isinstance(error, NotPermitted):
            outcome.forbidden = outcome.forbidden or error.identity
        elif isinstance(error, BackendUnavailable):
            outcome.unavailable = True
        elif isinstance(error, Answered):
            outcome.answer = outcome.answer or error.response
        else:
            _log.failure(
                "authenticator {authenticator} failed unexpectedly on route {route}",
                failure if failure is not None else Failure(error),
                authenticator=authenticator.name,
                route=self.route,
            )
            outcome.unavailable = True

    # -- deciding ------------------------------------------------------------

    def _admit(self, request: Any, identity: Identity, outcome: Optional[_Outcome], recalled: bool = False) -> Optional[_Outcome]:
        """
        Let the request in as `identity` (None), or note why not (the outcome, made if need be).
        `recalled`: the identity came from `recall`, whose field holds nothing but its credential.
        """
        if not self.anyone:
            scopes = self.scopes  # (a subset test first: no difference and sort when all are there)
            missing = () if scopes <= identity.scopes else tuple(sorted(scopes - identity.scopes))
            allowed = (
                not missing
                and (not self.roles or not self.roles.isdisjoint(identity.roles))
                and (not self.consumers or identity.consumer in self.consumers)
                and (not self.subjects or identity.subject in self.subjects)
                and (not self.sans or not self.sans.isdisjoint(identity.sans))
            )
            if not allowed:
                outcome = outcome or _Outcome()
                if outcome.forbidden is None:
                    outcome.forbidden = identity
                    outcome.missing_scopes = missing
                return outcome
        request.consumer = identity.consumer or None  # a forward answer may name nobody
        request.state["auth"] = dict(identity.details)
        if recalled and self._recalled_field is not None:
            del request.headers.raw[self._recalled_field]
        else:
            for strip in self._strips:
                strip(request)
        if identity.headers:
            headers = request.headers
            for name, value in identity.headers:
                headers.setRawHeaders(name, [value])
        return None

    def _refusal(self, request: Any, outcome: _Outcome) -> Union[Exception, Response]:
        if outcome.forbidden is not None:
            identity = outcome.forbidden
            request.state["auth"] = {**identity.details, "error": "forbidden"}
            extra = []
            if outcome.missing_scopes and identity.kind == "jwt":
                # RFC 6750 §3.1: a token without the scope the route needs.
                realm = next(a.config.realm for a in self.authenticators if a.name == identity.authenticator)
                value = challenge("Bearer", realm=realm, error="insufficient_scope", scope=" ".join(self.scopes))
                extra.append(("WWW-Authenticate", value))
            return Forbidden("The authenticated consumer is not allowed to use this route.", headers=extra)
        if outcome.answer is not None:
            # The authorization service answered the client itself: as it is.
            request.state["auth"] = {"error": "refused_by_service", "status": outcome.answer.status}
            return outcome.answer
        if outcome.unavailable:
            request.state["auth"] = {"error": "unavailable"}
            return ServiceUnavailable(
                "Authentication is temporarily unavailable.", headers=[("Retry-After", "5")], code="auth_unavailable"
            )
        challenges = [
            ("WWW-Authenticate", value)
            for authenticator in self.authenticators
            if (value := authenticator.challenge(outcome.invalid.get(authenticator.name))) is not None
        ]
        if outcome.invalid:
            request.state["auth"] = {
                "error": "invalid_credentials",
                "rejected": {name: error.reason for name, error in outcome.invalid.items()},
            }
            return Unauthorized("The credentials are not valid.", headers=challenges)
        request.state["auth"] = {"error": "no_credentials"}
        return Unauthorized("Authentication is required.", headers=challenges)


def check_route_auth(config: RouteAuthConfig, section: Any) -> List[ConfigIssue]:
    """The route's authenticator names and conditions against the ``auth:`` section (pure)."""
    location = config.location

    def problem(message: str) -> List[ConfigIssue]:
        return [ConfigIssue(location=location, message=message)]

    if section is None:
        return problem("the route names authenticators but there is no top-level 'auth' section")
    known = section.authenticators
    for name in config.authenticators:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            return problem(f"unknown authenticator {name!r} (defined: {listed}){suggest(name, known)}")
    kinds = {known[name].kind for name in config.authenticators}
    # A package authenticator may grant scopes and roles itself (its answer carries them).
    grants = "jwt" in kinds or any(isinstance(known[name], PluginAuthConfig) for name in config.authenticators)
    if (config.scopes or config.roles) and not grants:
        return problem("'scopes' and 'roles' come from JWT claims: add a jwt authenticator to 'any'")
    if (config.allowed_subjects or config.allowed_sans) and "mtls" not in kinds:
        return problem("'allowed_subjects' and 'allowed_sans' come from client certificates: add an mtls authenticator")
    return []


def build_stage(config: RouteAuthConfig, route: RouteConfig, service: Any) -> AuthStage:
    """The route's stage (the names were checked by `check_route_auth`)."""
    issues = check_route_auth(config, service.section if service is not None else None)
    if issues:
        raise ConfigError(issues)
    authenticators = [service.authenticators[name] for name in config.authenticators]
    return AuthStage(config, authenticators, service.identity_headers, route.name)


class IdentityHeaderScrub:
    """Removes client-sent identity headers on a route without ``auth:``."""

    def __init__(self, identity_headers: Any) -> None:
        self.identity_headers = IdentityHeaders(identity_headers)

    @hookimpl
    def on_request(self, request: Any) -> None:
        self.identity_headers.scrub(request.headers)


def _build_auth(route: RouteConfig, services: Any) -> AuthStage:
    return build_stage(route.policies["auth"], route, services.auth)


def _validate_auth(route: RouteConfig, config: Any) -> List[ConfigIssue]:
    return check_route_auth(route.policies["auth"], config.sections.get("auth"))


def _build_scrub(route: RouteConfig, services: Any) -> Optional[IdentityHeaderScrub]:
    """
    On routes WITHOUT ``auth:``, still remove client-sent copies of the
    identity headers the gateway sets elsewhere: an upstream that trusts
    X-User-Id on its private routes must never see a forged one from a
    public route.  (Routes with ``auth:`` do this in their own stage.)
    """
    auth = services.auth
    if "auth" in route.policies or auth is None or not auth.identity_headers:
        return None
    return IdentityHeaderScrub(auth.identity_headers)


def _auth_sight(route: RouteConfig, services: Any) -> Sight:
    """
    Blind to the forwarding fields when each of the route's authenticators
    says so in its own class (``reads_forwarding = False``: it reads only
    its credential and sets only identity headers, which the auth parser
    keeps from being forwarding fields); not ``forward`` (its subrequest
    carries ``X-Forwarded-*``), nor a package's, nor a subclass of a
    built-in one (it may read anything).  Nothing of the response.
    """
    auth = services.auth
    names = route.policies["auth"].authenticators
    if auth is None or not all(name in auth.authenticators for name in names):
        return Sight(response_fields=False)
    reads = any(vars(type(auth.authenticators[name])).get("reads_forwarding", True) for name in names)
    return Sight(forwarding=reads, response_fields=False)


#: Client copies of identity headers are removed on every route, auth or not
#: (identity headers are never forwarding fields: the auth parser refuses them).
IDENTITY_SCRUB = Policy(name="identity_headers", build=_build_scrub, sight=BLIND)
#: Who is calling, and whether they may call this route.
AUTH = Policy(name="auth", key="auth", parse=parse_route_auth, build=_build_auth, validate=_validate_auth, sight=_auth_sight)
