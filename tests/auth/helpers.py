"""
Helpers for the authentication tests (the key fixtures are in conftest.py):
a gateway in memory whose upstream echoes what it received, and tokens.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, Dict, List, Optional

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.web.resource import Resource

from twistgate.config import load_text
from twistgate.testing import GatewayHarness, result_of

HS_SECRET = "an-hs256-secret-of-at-least-32-bytes!!"
NOW = 1_700_000_000.0


class EchoUpstream(Resource):
    """Answers with the request it received, as JSON: headers (lower-case names) and URI."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Dict[str, Any]] = []

    def render(self, request: Any) -> bytes:
        seen = {
            "uri": request.uri.decode("latin-1"),
            "headers": {
                k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            },
        }
        self.seen.append(seen)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(seen).encode()


def gateway_config(yaml: str, filename: str = "gw.yaml") -> Any:
    head = """
    listeners: [{name: p, endpoint: "tcp:0"}]
    upstreams: {app: {targets: [{url: "http://app:80"}]}}
    """
    return load_text(textwrap.dedent(head) + textwrap.dedent(yaml), filename, environ={})


class AuthGateway:
    """A `GatewayHarness` with an echoing upstream and the clock at `NOW`."""

    def __init__(self, yaml: str) -> None:
        self.upstream = EchoUpstream()
        self.harness = GatewayHarness(gateway_config(yaml), self.upstream)
        self.clock = self.harness.clock
        self.clock.advance(NOW)
        self.auth = self.harness.generation.services.auth
        self.records: List[Any] = []
        self.harness.generation.observers.append(self.records.append)

    def get(self, path: str = "/api/x", headers: Optional[Dict[str, str]] = None, **kwargs: Any) -> "Reply":
        response = self.harness.request("GET", "http://gw" + path, headers=headers or {}, **kwargs)
        return Reply(response, self.harness.content(response))

    def start(self, path: str = "/api/x", headers: Optional[Dict[str, str]] = None) -> Any:
        return self.harness.send("GET", "http://gw" + path, headers=headers or {})

    def finish(self, d: Any) -> "Reply":
        self.harness.flush()
        response = result_of(d)
        return Reply(response, self.harness.content(response))


class Reply:
    def __init__(self, response: Any, body: bytes) -> None:
        self.code = response.code
        self.headers = response.headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> List[str]:
        return self.headers.getRawHeaders(name, [])

    @property
    def upstream_headers(self) -> Dict[str, List[str]]:
        """What the upstream received (the echo)."""
        assert self.code == 200, (self.code, self.body)
        return self.json()["headers"]


def pem_public(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**extra: Any) -> Dict[str, Any]:
    """Valid claims at `NOW`, overridable (a value of None removes the claim)."""
    base: Dict[str, Any] = {"sub": "alice", "exp": NOW + 300, "iat": NOW - 10}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Any, alg: str = "RS256", headers: Optional[Dict[str, Any]] = None, **claim_values: Any) -> str:
    return jwt.encode(claims(**claim_values), key, algorithm=alg, headers=headers)


def jwk_of(private_key: Any, kid: str, alg: Optional[str] = None) -> Dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    return jwk


def bearer(value: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
