"""
The ``jwt`` authenticator: a Bearer token (RFC 6750) that is a signed JWT
(RFC 7519, JWS compact form).

The token is split and checked here rather than by ``jwt.decode``, so that
every rule is explicit: the ``alg`` must be on the authenticator's allowlist
and allowed by the key that verifies it (`jwt_keys`); ``crit`` extensions,
duplicate JSON members, tokens longer than ``max_token_size`` (checked before
anything is decoded) and JSON nested deeper than `MAX_JSON_DEPTH` (checked
before ``json.loads`` could recurse) are refused; ``jku``, ``x5u``,
``jwk`` and ``x5c`` are ignored; ``exp`` is required and ``exp``/``nbf``/
``iat`` are compared with the gateway's clock, with leeway; ``iss`` and
``aud`` must match when configured, and a token carrying an ``aud`` is refused
when no audience is configured (RFC 7519 §4.1.3).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from twistgate.policies.auth.base import BackendUnavailable, Identity, InvalidCredentials, challenge, header_value
from twistgate.policies.auth.config import JwtConfig
from twistgate.policies.auth.jwks import KeySet
from twistgate.policies.auth.jwt_keys import VerificationKey

#: Deeper JSON in a header or payload is refused: real claims nest a few
#: levels (``realm_access.roles``), while 8 KiB of ``[`` would make the JSON
#: parser recurse thousands of levels (a RecursionError, whatever the library).
MAX_JSON_DEPTH = 32
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*\Z")
_REGISTERED = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti")


class _Token:
    __slots__ = ("header", "payload", "signing_input", "signature", "alg", "kid")

    def __init__(self, header: Dict[str, Any], payload: bytes, signing_input: bytes, signature: bytes) -> None:
        self.header = header
        self.payload = payload
        self.signing_input = signing_input
        self.signature = signature
        self.alg: str = header["alg"]
        self.kid: Optional[str] = header.get("kid")


def _b64(segment: str) -> bytes:
    if not _SEGMENT.match(segment):
        raise InvalidCredentials("not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCredentials("not base64url") from None


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidCredentials(f"duplicate member {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise InvalidCredentials(f"{name} is not JSON")  # NaN and Infinity would defeat time checks


def _too_deep(data: bytes) -> bool:
    """Whether JSON text nests deeper than `MAX_JSON_DEPTH` (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False  # the common case: not even that many brackets
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _json_object(data: bytes) -> Dict[str, Any]:
    if _too_deep(data):
        raise InvalidCredentials("JSON nested too deeply")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidCredentials("not a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidCredentials("not a JSON object")
    return value


MAX_TIME = 1e13  # seconds: far beyond any real date, small enough for float arithmetic
_NEVER = math.inf  # a time no clock reaches


def _number(value: Any) -> bool:
    """A NumericDate (RFC 7519 §2): a finite number within range (not a bool, NaN or 1e999)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -MAX_TIME < value < MAX_TIME  # False for NaN too; no float conversion of huge ints


def claim(claims: Dict[str, Any], name: str) -> Any:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _string_set(value: Any, *, split: bool) -> FrozenSet[str]:
    if isinstance(value, str):
        return frozenset(value.split()) if split else frozenset({value})
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


_VERIFIED_CACHE_SIZE = 4096

#: (identity, (exp, nbf, iat), kid, the key that verified it, exp + leeway, the latest of nbf and iat or -inf)
_Remembered = Tuple[Identity, Tuple[Any, Any, Any], Optional[str], VerificationKey, float, float]


class JwtAuthenticator:
    kind = "jwt"
    reads_forwarding = False  # its own credential only (`twistgate.policies.auth.policy`'s sight)
    recalled_field = b"Authorization"  # where `recall` found a token: a Bearer value, all of it what `strip` removes

    def __init__(
        self, config: JwtConfig, clock: Any, static_keys: Sequence[VerificationKey] = (), key_set: Optional[KeySet] = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.static_keys = tuple(static_keys)
        self.key_set = key_set
        self.allowlist = frozenset(config.algorithms)
        self.max_token_size = config.max_token_size
        self.leeway = config.leeway
        self.forward = tuple((claim_name, header.encode("ascii")) for claim_name, header in config.forward_claims)
        self._challenge = challenge("Bearer", realm=config.realm)
        # Verified tokens (the exact signed string) -> `_Remembered`.  A
        # repeat of a token costs a dict lookup and the time checks instead
        # of a signature verification and two JSON parses; an entry is used
        # only while the key that verified it is still in the key set
        # (rotation), and exp/nbf/iat are checked on every use.
        self._verified: Dict[str, _Remembered] = {}
        # The same entries by the exact Authorization value that carried the
        # token (`recall`): a repeat costs no split, decode or string hash.
        self._by_header: Dict[bytes, _Remembered] = {}

    # -- the authenticator interface -------------------------------------

    def credentials(self, request: Any) -> Optional[str]:
        values = request.headers.raw.get(b"Authorization")
        if not values:
            return None
        scheme, _, token = values[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return None  # another scheme: Basic, or for the upstream
        return token.strip().decode("latin-1")

    def recall(self, request: Any) -> Optional[Identity]:
        """
        The identity `verify` would give at once: the request's token was
        verified before (the exact string; found by the exact Authorization
        value once seen), its key is still in the key set and exp/nbf/iat
        are good against the clock now.  None otherwise (no
        token, a new one, one that fails now): `verify` decides, and says why.
        A shortcut for the stage (a call for what takes it four), not a check
        of its own.
        """
        values = request.headers.raw.get(b"Authorization")
        if not values:
            return None
        by_header = self._by_header
        cached = by_header.get(values[0])
        if cached is None:
            raw = self.credentials(request)
            cached = self._verified.get(raw) if raw is not None else None
            if cached is None:
                return None
            if len(by_header) >= _VERIFIED_CACHE_SIZE:
                del by_header[next(iter(by_header))]  # the oldest entry
            by_header[values[0]] = cached
        identity, _times, kid, key, expires_at, not_before = cached
        if key not in self.static_keys and not self._key_current(key, kid):
            del by_header[values[0]]  # rotated out: verify drops it too, and may verify the token anew
            return None
        # `_window_problem`'s three comparisons in two, with the bounds worked out when the token was verified.
        now = self.clock.seconds()
        if now >= expires_at or now + self.leeway < not_before:
            return None
        return identity

    def verify(self, request: Any, raw: str) -> Any:
        cached = self._verified.get(raw)
        if cached is not None:
            identity, times, kid, key, _, _ = cached
            if self._key_current(key, kid):
                self._check_window(*times)
                return identity
            del self._verified[raw]  # its key was rotated out
        token = self._parse(raw)
        keys = [key for key in self.static_keys if token.alg in key.algorithms]
        for key in keys:
            if key.verifies(token.alg, token.signing_input, token.signature):
                return self._remember(raw, token, key, self._accept(token))
        key_set = self.key_set
        if key_set is None or token.alg not in key_set.allowlist:
            raise InvalidCredentials("bad signature")
        found = key_set.keys_for(token.kid)
        if found is not None:
            return self._verify_with(token, found, raw)
        # An unknown kid: perhaps a rotation; fetch again, at a bounded rate.
        fetching = key_set.refetch()
        if fetching is None:
            if not key_set.loaded:
                raise BackendUnavailable("the issuer's key set could not be fetched")
            raise InvalidCredentials("unknown kid")
        return fetching.addCallback(lambda _: self._after_refetch(token, raw))

    def strip(self, request: Any) -> None:
        raw = request.headers.raw
        values = raw.get(b"Authorization")
        if values and values[0][:7].lower() == b"bearer ":
            del raw[b"Authorization"]

    def challenge(self, error: Optional[InvalidCredentials]) -> bytes:
        if error is None:
            return self._challenge
        params = {"realm": self.config.realm, "error": error.error}
        if error.description:
            params["error_description"] = error.description
        return challenge("Bearer", **params)

    # -- inside ----------------------------------------------------------

    def _after_refetch(self, token: _Token, raw: str) -> Identity:
        assert self.key_set is not None
        found = self.key_set.keys_for(token.kid)
        if found is None:
            if not self.key_set.loaded:
                raise BackendUnavailable("the issuer's key set could not be fetched")
            raise InvalidCredentials("unknown kid")
        return self._verify_with(token, found, raw)

    def _verify_with(self, token: _Token, keys: List[VerificationKey], raw: str) -> Identity:
        for key in keys:
            if key.verifies(token.alg, token.signing_input, token.signature):
                return self._remember(raw, token, key, self._accept(token))
        raise InvalidCredentials("bad signature")

    def _remember(self, raw: str, token: _Token, key: VerificationKey, identity: Identity) -> Identity:
        verified = self._verified
        if len(verified) >= _VERIFIED_CACHE_SIZE:
            del verified[next(iter(verified))]  # the oldest entry
        claims = _json_object(token.payload)  # accepted: exp is there, and every time claim is a number
        exp, nbf, iat = times = (claims["exp"], claims.get("nbf"), claims.get("iat"))
        # `recall`'s window: refused from exp + leeway on, and while now + leeway is before nbf or iat (numbers).
        not_before = max((t for t in (nbf, iat) if t is not None), default=-math.inf)
        verified[raw] = (identity, times, token.header.get("kid"), key, exp + self.leeway, not_before)
        return identity

    def _parse(self, raw: str) -> _Token:
        if not raw or len(raw) > self.max_token_size:
            raise InvalidCredentials("empty or oversized token")
        parts = raw.split(".")
        if len(parts) != 3:
            raise InvalidCredentials("not a JWS compact token")
        header = _json_object(_b64(parts[0]))
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.allowlist:
            raise InvalidCredentials(f"algorithm {alg!r} not allowed")
        if "crit" in header:
            raise InvalidCredentials("critical header extensions are not supported")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise InvalidCredentials("malformed kid")
        payload = _b64(parts[1])
        signature = _b64(parts[2])
        if not signature:
            raise InvalidCredentials("no signature")
        return _Token(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)

    def _accept(self, token: _Token) -> Identity:
        """The signature is good: now the claims."""
        claims = _json_object(token.payload)
        self._check_times(claims)
        config = self.config
        if config.issuer and claims.get("iss") not in config.issuer:
            raise InvalidCredentials("wrong issuer")
        if "aud" in claims or config.audience:
            audiences = claims.get("aud")
            listed = [audiences] if isinstance(audiences, str) else audiences if isinstance(audiences, list) else []
            named = {a for a in listed if isinstance(a, str)}
            if not named & set(config.audience):
                raise InvalidCredentials("wrong audience")
        for name in config.required_claims:
            if claim(claims, name) is None:
                raise InvalidCredentials(f"missing claim {name!r}")
        consumer = claim(claims, config.consumer_claim)
        if isinstance(consumer, (int, float)) and not isinstance(consumer, bool):
            consumer = str(consumer)
        if not isinstance(consumer, str) or not consumer:
            raise InvalidCredentials(f"no {config.consumer_claim!r} claim to identify the consumer")
        scopes_value = claim(claims, config.scopes_claim)
        if scopes_value is None and config.scopes_claim == "scope":
            scopes_value = claims.get("scp")  # Okta, Azure AD
        headers = []
        shown: Dict[str, Any] = {name: claims[name] for name in _REGISTERED if name in claims}
        for name, header in self.forward:
            value = claim(claims, name)
            if value is None:
                continue
            encoded = header_value(value)
            if encoded is not None:
                headers.append((header, encoded))
                shown[name] = value
        if config.forward_consumer:
            encoded = header_value(consumer)
            if encoded is not None:
                headers.append((config.forward_consumer.encode("ascii"), encoded))
        scopes = _string_set(scopes_value, split=True)
        return Identity(
            consumer=consumer,
            authenticator=self.name,
            kind=self.kind,
            scopes=scopes,
            roles=_string_set(claim(claims, config.roles_claim), split=False),
            details={
                "authenticator": self.name,
                "type": self.kind,
                "consumer": consumer,
                "claims": shown,
                "scopes": sorted(scopes),
            },
            headers=tuple(headers),
        )

    def _check_times(self, claims: Dict[str, Any]) -> None:
        exp = claims.get("exp")
        if exp is None:
            raise InvalidCredentials("no exp claim")
        if not _number(exp):
            raise InvalidCredentials("exp is not a number")
        nbf = claims.get("nbf")
        iat = claims.get("iat")
        # A malformed nbf or iat fails where a far-future one would (the same reason).
        self._check_window(
            exp, nbf if nbf is None or _number(nbf) else _NEVER, iat if iat is None or _number(iat) else _NEVER
        )

    def _key_current(self, key: VerificationKey, kid: Optional[str]) -> bool:
        """Whether the key that verified a remembered token still verifies (not rotated out of the key set)."""
        return key in self.static_keys or (self.key_set is not None and key in (self.key_set.keys_for(kid) or ()))

    def _check_window(self, exp: float, nbf: Optional[float], iat: Optional[float]) -> None:
        """The time claims (numbers) against the clock, with leeway: on every request, cached tokens too."""
        problem = self._window_problem(exp, nbf, iat)
        if problem is not None:
            raise problem

    def _window_problem(self, exp: float, nbf: Optional[float], iat: Optional[float]) -> Optional[InvalidCredentials]:
        """Why the time claims refuse the token now (None: they accept it)."""
        now = self.clock.seconds()
        leeway = self.leeway
        if now >= exp + leeway:
            return InvalidCredentials("expired", description="The access token expired")
        if nbf is not None and now + leeway < nbf:
            return InvalidCredentials("not yet valid")
        if iat is not None and iat > now + leeway:
            return InvalidCredentials("issued in the future")
        return None
