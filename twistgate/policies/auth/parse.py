"""
Parsers of the ``auth:`` sections (top level and per route).  An
authenticator's ``type`` is looked up in the ``twistgate.authenticators``
registry: the built-in types are read here, key by key; a package's type
gets the common keys (``realm``, ``forward_consumer``) and the options it
declares (twistgate.plugins.options).  They record
every problem on the node, with file, line and key path, and return None for
an invalid section; cross-references (a route naming an unknown
authenticator) are checked when the gateway is built.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from twistgate.policies.auth.config import (
    DEFAULT_REALM,
    DEFAULT_STORE,
    ApiKeyConfig,
    AuthenticatorConfig,
    AuthSection,
    BasicConfig,
    JwtConfig,
    MtlsConfig,
    PluginAuthConfig,
    RouteAuthConfig,
)
from twistgate.config._issues import suggest
from twistgate.config._node import Fields, Node
from twistgate.plugins.extension_points import AUTHENTICATORS, Extension, ExtensionChoice, resolve
from twistgate.plugins.options import peek, read_options
from twistgate.policies.auth.values import (  # noqa: F401  (also read from here)
    header_name,
    jwks_url,
    non_negative,
    one_or_more,
    safe_text,
    store_url,
    strings,
)

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
        "max_token_size",
    ),
    "basic": ("htpasswd", "cache_ttl"),
    "forward": ("url", "forward_headers", "copy_headers", "consumer_header", "timeout", "cache_ttl"),
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

MIN_TOKEN_SIZE = 256  # the smallest signed JWT with an exp is about 150 bytes
HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}  # minimum secret bytes (RFC 7518 §3.2)
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA",
)
ALGORITHMS = tuple(HMAC_ALGORITHMS) + ASYMMETRIC_ALGORITHMS

_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")


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
    type_node = peek(node, "type")
    extension = resolve(type_node, AUTHENTICATORS) if type_node is not None else None
    if extension is None:
        if type_node is None:
            node.mapping(ALL_KEYS + tuple(_written(node)), required=("type",))
        return None
    if not (extension.builtin and extension.name in TYPE_KEYS):
        return _plugin(name, extension, node)
    fields = node.mapping(ALL_KEYS, required=("type",))
    if fields is None:
        return None
    kind = extension.name
    allowed = set(COMMON_KEYS + TYPE_KEYS[kind])
    misplaced = [key for key in fields.nodes if key not in allowed]
    for key in misplaced:
        fields[key].issue(f"{key!r} does not apply to type {kind!r}", at_key=True)
    common = _common(name, fields, node)
    count = len(node.issues.found)
    from twistgate.policies.auth.forward import parse_forward  # it reads its options with the helpers here

    build = {"api_key": _api_key, "jwt": _jwt, "basic": _basic, "mtls": _mtls, "forward": parse_forward}[kind]
    config = build(fields, common)
    if misplaced or len(node.issues.found) != count:
        return None
    return config


def _common(name: str, fields: Fields, node: Node) -> Dict[str, Any]:
    return dict(
        name=name,
        realm=fields.read("realm", safe_text, DEFAULT_REALM),
        forward_consumer=fields.read("forward_consumer", header_name, None),
        location=node.location(at_key=True),
    )


def _plugin(name: str, extension: Extension, node: Node) -> Optional[PluginAuthConfig]:
    """An authenticator from a package: the gateway's common keys, then the options it declares."""
    count = len(node.issues.found)
    read = read_options(node, extension.options, COMMON_KEYS)
    if read is None:
        return None
    fields, options = read
    common = _common(name, fields, node)
    if options is None or len(node.issues.found) != count:
        return None
    choice = ExtensionChoice(extension=extension, options=options, location=common["location"])
    return PluginAuthConfig(type=extension.name, choice=choice, **common)


def _written(node: Node) -> List[str]:
    if node.kind != "mapping":
        return []
    return [key for key, _, _ in node._pairs(node.node, report=False, seen=frozenset())]


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
        max_token_size=fields.read("max_token_size", lambda n: n.size(min=MIN_TOKEN_SIZE), 8 * 1024),
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
