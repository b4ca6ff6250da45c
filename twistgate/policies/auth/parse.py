"""
Parsers of the ``auth:`` sections (top level and per route).  They record
every problem on the node, with file, line and key path, and return None for
an invalid section; cross-references (a route naming an unknown
authenticator) are checked when the gateway is built.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from twistgate.policies.auth.base import is_token
from twistgate.policies.auth.config import (
    DEFAULT_REALM,
    DEFAULT_STORE,
    KINDS,
    ApiKeyConfig,
    AuthenticatorConfig,
    AuthSection,
    BasicConfig,
    JwtConfig,
    MtlsConfig,
    RouteAuthConfig,
)
from twistgate.config._node import Fields, Node, suggest
from twistgate.http import HOP_BY_HOP

COMMON_KEYS = ("type", "realm", "forward_consumer")
TYPE_KEYS: Dict[str, Tuple[str, ...]] = {
    "api_key": ("header", "query", "store", "cache_ttl", "cache_size", "store_timeout"),
    "jwt": (
        "algorithms",
        "secret",
        "public_key",
        "jwks_url",
        "issuer",
        "audience",
        "leeway",
        "required_claims",
        "forward_claims",
        "consumer_claim",
        "scopes_claim",
        "roles_claim",
        "jwks_refresh",
        "jwks_min_interval",
        "jwks_timeout",
    ),
    "basic": ("htpasswd", "cache_ttl"),
    "mtls": (
        "forward_subject",
        "forward_sans",
        "forward_fingerprint",
        "forward_issuer",
        "allowed_subjects",
        "allowed_sans",
    ),
}
ALL_KEYS = COMMON_KEYS + tuple(dict.fromkeys(k for keys in TYPE_KEYS.values() for k in keys))
ROUTE_KEYS = ("any", "scopes", "roles", "consumers", "allowed_subjects", "allowed_sans", "keep_credentials")

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}  # minimum secret bytes (RFC 7518 §3.2)
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA",
)
ALGORITHMS = tuple(HMAC_ALGORITHMS) + ASYMMETRIC_ALGORITHMS

# Headers the gateway manages itself: an identity header may not replace them.
_RESERVED = {name.lower() for name in HOP_BY_HOP} | {
    b"host",
    b"content-length",
    b"x-request-id",
    b"via",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"authorization",
    b"cookie",
}
_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- values ---------------------------------------------------------------


def header_name(node: Node) -> Optional[str]:
    """An HTTP field name the gateway may set or read."""
    text = node.string()
    if text is None:
        return None
    if not is_token(text):
        node.issue(f"{text!r} is not a valid HTTP header name")
        return None
    if text.lower().encode("ascii") in _RESERVED:
        node.issue(f"{text!r} is managed by the gateway and cannot be used here")
        return None
    return text


def strings(node: Node) -> Optional[Tuple[str, ...]]:
    """A list of non-empty strings."""
    items = node.sequence()
    if items is None:
        return None
    found = [item.string() for item in items]
    return None if any(v is None for v in found) else tuple(found)  # type: ignore[misc]


def one_or_more(node: Node) -> Optional[Tuple[str, ...]]:
    """A string, or a non-empty list of strings."""
    if node.kind == "list":
        values = strings(node)
        if values == ():
            node.issue("must not be empty")
            return None
        return values
    text = node.string()
    return (text,) if text is not None else None


def safe_text(node: Node) -> Optional[str]:
    text = node.string()
    if text is not None and _CONTROL.search(text):
        node.issue("must not contain control characters")
        return None
    return text


def non_negative(node: Node) -> Optional[float]:
    return node.duration(positive=False)


def jwks_url(node: Node) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        node.issue(f"expected an http:// or https:// URL, got {text!r}")
        return None
    return text


def store_url(node: Node) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    if text.startswith("sqlite:"):
        if not text[len("sqlite:") :]:
            node.issue("sqlite: needs a file path, e.g. sqlite:var/twistgate.db")
            return None
        return text
    if text.startswith(("postgresql://", "postgres://")):
        from twistgate.policies.auth.key_store_postgres import connect_arguments

        try:
            connect_arguments(text, 5)
        except (ValueError, TypeError):
            node.issue("invalid PostgreSQL URL (expected postgresql://user:password@host:port/database)")
            return None
        return text
    node.issue("unknown key store; expected sqlite:PATH or postgresql://user:password@host/database")
    return None


# -- the top-level section -------------------------------------------------


def parse_auth_section(node: Node) -> Optional[AuthSection]:
    entries = node.entries()
    if entries is None:
        return None
    found: Dict[str, AuthenticatorConfig] = {}
    ok = True
    for name, value in entries:
        if not _NAME.match(name):
            value.issue(f"authenticator name {name!r} may only use letters, digits, '_' and '-'", at_key=True)
            ok = False
            continue
        config = _authenticator(name, value)
        if config is None:
            ok = False
        else:
            found[name] = config
    return AuthSection(authenticators=found, location=node.location(at_key=True)) if ok else None


def _authenticator(name: str, node: Node) -> Optional[AuthenticatorConfig]:
    fields = node.mapping(ALL_KEYS, required=("type",))
    if fields is None or "type" not in fields:
        return None
    kind = fields["type"].choice(KINDS)
    if kind is None:
        return None
    allowed = set(COMMON_KEYS + TYPE_KEYS[kind])
    misplaced = [key for key in fields.nodes if key not in allowed]
    for key in misplaced:
        fields[key].issue(f"{key!r} does not apply to type {kind!r}", at_key=True)
    common: Dict[str, Any] = dict(
        name=name,
        realm=fields.read("realm", safe_text, DEFAULT_REALM),
        forward_consumer=fields.read("forward_consumer", header_name, None),
        location=node.location(at_key=True),
    )
    count = len(node.issues.found)
    build = {"api_key": _api_key, "jwt": _jwt, "basic": _basic, "mtls": _mtls}[kind]
    config = build(fields, common)
    if misplaced or len(node.issues.found) != count:
        return None
    return config


def _api_key(fields: Fields, common: Dict[str, Any]) -> Optional[ApiKeyConfig]:
    query = fields.read("query", Node.string, None)
    if query is not None and not re.fullmatch(r"[A-Za-z0-9._~-]+", query):
        fields["query"].issue("a query parameter name may only use letters, digits and . _ ~ -")
    header = fields.read("header", header_name, "X-API-Key")
    return ApiKeyConfig(
        header=header,
        query=query,
        store=fields.read("store", store_url, DEFAULT_STORE),
        cache_ttl=fields.read("cache_ttl", non_negative, 10.0),
        cache_size=fields.read("cache_size", lambda n: n.integer(min=1), 10_000),
        store_timeout=fields.read("store_timeout", Node.duration, 5.0),
        **common,
    )


def _jwt(fields: Fields, common: Dict[str, Any]) -> Optional[JwtConfig]:
    owner = fields.owner
    algorithms = fields.read("algorithms", _algorithms, None)
    if "algorithms" not in fields:
        owner.issues.add(owner.location(at_key=True).line, f"{owner.path}.algorithms",
                         "required key 'algorithms' is missing (e.g. [RS256])")
    secret_text = fields.read("secret", Node.string, None)
    secret = secret_text.encode("utf-8") if secret_text is not None else None
    public_key = fields.read("public_key", Node.string, None)
    url = fields.read("jwks_url", jwks_url, None)
    if algorithms:
        hmac = [a for a in algorithms if a in HMAC_ALGORITHMS]
        asymmetric = [a for a in algorithms if a not in HMAC_ALGORITHMS]
        if hmac and secret is None and "secret" not in fields:
            fields["algorithms"].issue(f"{', '.join(hmac)} need a 'secret'")
        if secret is not None and not hmac:
            fields["secret"].issue("'secret' is only used by HS256/HS384/HS512; add one to 'algorithms' or remove it")
        if secret is not None:
            for alg in hmac:
                if len(secret) < HMAC_ALGORITHMS[alg]:
                    fields["secret"].issue(
                        f"too short for {alg}: at least {HMAC_ALGORITHMS[alg]} bytes are required (RFC 7518 §3.2)"
                    )
                    break
        if asymmetric and public_key is None and url is None and not {"public_key", "jwks_url"} & set(fields.nodes):
            fields["algorithms"].issue(f"{', '.join(asymmetric)} need a 'public_key' or a 'jwks_url'")
        if not asymmetric:
            for key in ("public_key", "jwks_url"):
                if key in fields:
                    fields[key].issue(f"{key!r} needs an asymmetric algorithm (RS256, ES256, EdDSA...) in 'algorithms'")
    forward = fields.read("forward_claims", _forward_claims, ())
    return JwtConfig(
        algorithms=algorithms or (),
        secret=secret,
        public_key=public_key,
        jwks_url=url,
        issuer=fields.read("issuer", one_or_more, ()),
        audience=fields.read("audience", one_or_more, ()),
        leeway=fields.read("leeway", non_negative, 0.0),
        required_claims=fields.read("required_claims", strings, ()),
        forward_claims=forward,
        consumer_claim=fields.read("consumer_claim", Node.string, "sub"),
        scopes_claim=fields.read("scopes_claim", Node.string, "scope"),
        roles_claim=fields.read("roles_claim", Node.string, "roles"),
        jwks_refresh=fields.read("jwks_refresh", Node.duration, 300.0),
        jwks_min_interval=fields.read("jwks_min_interval", Node.duration, 30.0),
        jwks_timeout=fields.read("jwks_timeout", Node.duration, 5.0),
        **common,
    )


def _algorithms(node: Node) -> Optional[Tuple[str, ...]]:
    items = node.sequence(non_empty=True)
    if items is None:
        return None
    found: List[str] = []
    for item in items:
        alg = item.string()
        if alg is None:
            continue
        if alg.lower() == "none":
            item.issue("'none' (unsigned tokens) is never accepted")
        elif alg not in ALGORITHMS:
            item.issue(f"unknown algorithm {alg!r}; expected one of {', '.join(ALGORITHMS)}{suggest(alg, ALGORITHMS)}")
        elif alg in found:
            item.issue(f"{alg!r} is listed twice")
        else:
            found.append(alg)
    return tuple(found) if found else None


def _forward_claims(node: Node) -> Optional[Tuple[Tuple[str, str], ...]]:
    entries = node.entries()
    if entries is None:
        return None
    found = []
    for claim, value in entries:
        header = header_name(value)
        if header is not None:
            found.append((claim, header))
    return tuple(found)


def _basic(fields: Fields, common: Dict[str, Any]) -> Optional[BasicConfig]:
    owner = fields.owner
    htpasswd = fields.read("htpasswd", Node.string, None)
    if "htpasswd" not in fields:
        owner.issues.add(owner.location(at_key=True).line, f"{owner.path}.htpasswd", "required key 'htpasswd' is missing")
        return None
    if htpasswd is None:
        return None
    return BasicConfig(htpasswd=htpasswd, cache_ttl=fields.read("cache_ttl", non_negative, 60.0), **common)


def _mtls(fields: Fields, common: Dict[str, Any]) -> Optional[MtlsConfig]:
    return MtlsConfig(
        forward_subject=fields.read("forward_subject", header_name, None),
        forward_sans=fields.read("forward_sans", header_name, None),
        forward_fingerprint=fields.read("forward_fingerprint", header_name, None),
        forward_issuer=fields.read("forward_issuer", header_name, None),
        allowed_subjects=fields.read("allowed_subjects", strings, ()),
        allowed_sans=fields.read("allowed_sans", strings, ()),
        **common,
    )


# -- a route's policy -------------------------------------------------------


def parse_route_auth(node: Node) -> Optional[RouteAuthConfig]:
    count = len(node.issues.found)
    location = node.location(at_key=True)
    if node.kind == "list":
        names = _names(node)
        if names is None or len(node.issues.found) != count:
            return None
        return RouteAuthConfig(authenticators=names, location=location)
    if node.kind == "string":
        node.issue("expected a list of authenticator names, e.g. [tokens, keys]")
        return None
    fields = node.mapping(ROUTE_KEYS, required=("any",))
    if fields is None:
        return None
    config = RouteAuthConfig(
        authenticators=fields.read("any", _names, ()),
        scopes=fields.read("scopes", strings, ()),
        roles=fields.read("roles", strings, ()),
        consumers=fields.read("consumers", strings, ()),
        allowed_subjects=fields.read("allowed_subjects", strings, ()),
        allowed_sans=fields.read("allowed_sans", strings, ()),
        keep_credentials=fields.read("keep_credentials", Node.boolean, False),
        location=location,
    )
    return config if len(node.issues.found) == count else None


def _names(node: Node) -> Optional[Tuple[str, ...]]:
    items = node.sequence()
    if items is None:
        return None
    if not items:
        node.issue("must name at least one authenticator (leave 'auth' out for a public route)")
        return None
    names: List[str] = []
    for item in items:
        name = item.string()
        if name is not None:
            if name in names:
                item.issue(f"{name!r} is listed twice")
            names.append(name)
    return tuple(names)
