"""
Verification keys for JWTs, each bound to the algorithms its type allows.

Which algorithm verifies a token is decided by the KEY, never by the token:
an HMAC secret only verifies HS*, an RSA key RS*/PS*, an EC key the ES*
algorithm of its curve, an Ed25519/Ed448 key EdDSA; all intersected with the
authenticator's allowlist (and a JWK's own ``alg`` when it names one).  That
closes the HS256-signed-with-the-RSA-public-key confusion and ``alg: none``.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, Optional

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

#: pyjwt's algorithm objects; only their ``verify`` is used, with keys prepared here.
ALGORITHMS: Dict[str, Any] = {name: alg for name, alg in get_default_algorithms().items() if name != "none"}
HMAC = frozenset({"HS256", "HS384", "HS512"})
RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
MIN_RSA_BITS = 2048


class KeyProblem(ValueError):
    """A key that cannot be used, and why."""


@attrs.frozen(kw_only=True)
class VerificationKey:
    kid: Optional[str]
    key: Any = attrs.field(repr=False)  # bytes for HMAC, a cryptography public key otherwise
    algorithms: FrozenSet[str]

    def verifies(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        if alg not in self.algorithms:
            return False
        try:
            return bool(ALGORITHMS[alg].verify(signing_input, self.key, signature))
        except Exception:  # a malformed signature for this key type
            return False


def _allowed(possible: Iterable[str], allowlist: Iterable[str], declared: Optional[str]) -> FrozenSet[str]:
    allowed = frozenset(possible) & frozenset(allowlist)
    if declared is not None:
        allowed &= {declared}
    return allowed


def algorithms_for(public_key: Any, allowlist: Iterable[str], declared: Optional[str] = None) -> FrozenSet[str]:
    """The algorithms this public key may verify; a KeyProblem for weak or unknown keys."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise KeyProblem(f"RSA key of {public_key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return _allowed(RSA, allowlist, declared)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _EC_CURVES.get(public_key.curve.name)
        if alg is None:
            raise KeyProblem(f"unsupported elliptic curve {public_key.curve.name}")
        return _allowed({alg}, allowlist, declared)
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return _allowed({"EdDSA"}, allowlist, declared)
    raise KeyProblem(f"unsupported key type {type(public_key).__name__}")


def hmac_key(secret: bytes, allowlist: Iterable[str]) -> VerificationKey:
    prepared = ALGORITHMS["HS256"].prepare_key(secret)  # refuses PEM/SSH-looking secrets
    return VerificationKey(kid=None, key=prepared, algorithms=frozenset(allowlist) & HMAC)


def pem_key(data: bytes, allowlist: Iterable[str]) -> VerificationKey:
    """A PEM public key or certificate; private keys are refused (the gateway only verifies)."""
    if b"PRIVATE KEY" in data:
        raise KeyProblem("this is a private key; give the issuer's public key (or certificate)")
    try:
        if b"BEGIN CERTIFICATE" in data:
            public_key = x509.load_pem_x509_certificate(data).public_key()
        else:
            public_key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise KeyProblem(f"not a PEM public key or certificate ({error})") from None
    algorithms = algorithms_for(public_key, allowlist)
    if not algorithms:
        raise KeyProblem("none of the configured algorithms can use this key type")
    return VerificationKey(kid=None, key=public_key, algorithms=algorithms)


_JWK_LOADERS = {"RSA": RSAAlgorithm.from_jwk, "EC": ECAlgorithm.from_jwk, "OKP": OKPAlgorithm.from_jwk}


def jwk_key(jwk: Any, allowlist: Iterable[str]) -> VerificationKey:
    """One key of a JWKS (RFC 7517); symmetric (``oct``) keys are never taken from a URL."""
    if not isinstance(jwk, dict):
        raise KeyProblem("a JWK must be an object")
    kty = jwk.get("kty")
    loader = _JWK_LOADERS.get(kty) if isinstance(kty, str) else None
    if loader is None:
        raise KeyProblem(f"unsupported key type {kty!r}")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise KeyProblem(f"key use {use!r} is not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise KeyProblem("key_ops does not allow 'verify'")
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise KeyProblem("kid must be a string of at most 256 characters")
    declared = jwk.get("alg")
    if declared is not None and not isinstance(declared, str):
        raise KeyProblem("alg must be a string")
    # Private members are dropped: from_jwk would build a private key from them.
    public_fields = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")}
    try:
        public_key = loader(public_fields)
    except Exception as error:
        raise KeyProblem(f"invalid {kty} key ({error})") from None
    algorithms = algorithms_for(public_key, allowlist, declared)
    if not algorithms:
        raise KeyProblem("none of the configured algorithms can use this key")
    return VerificationKey(kid=kid, key=public_key, algorithms=algorithms)
