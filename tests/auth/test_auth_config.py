"""
The ``auth:`` sections: what is accepted, and what is refused with file,
line and key path (at load time, or when the gateway is built).
"""

from __future__ import annotations

import pytest

from tests.auth.helpers import EchoUpstream, gateway_config
from twistgate.policies.auth.config import ApiKeyConfig, JwtConfig
from twistgate.config import ConfigError
from twistgate.testing import GatewayHarness


def load_errors(yaml: str) -> str:
    with pytest.raises(ConfigError) as error:
        gateway_config(yaml)
    return str(error.value)


def build_errors(yaml: str) -> str:
    with pytest.raises(ConfigError) as error:
        GatewayHarness(gateway_config(yaml), EchoUpstream())
    return str(error.value)


def test_the_contract_example_loads():
    config = gateway_config(
        """
        auth:
          keys:
            type: api_key
            header: X-API-Key
            store: sqlite:var/twistgate.db
          tokens:
            type: jwt
            algorithms: [RS256, HS256]
            secret: ${JWT_SECRET}
            jwks_url: https://idp.example/.well-known/jwks.json
            issuer: https://idp.example/
            audience: my-api
            leeway: 30s
            forward_claims: {sub: X-User-Id, role: X-User-Role}
          staff:
            type: basic
            htpasswd: etc/htpasswd
          clients:
            type: mtls
            forward_subject: X-Client-Subject
        routes:
          - {name: users, path: "/api/users/{id}", upstream: app, auth: [tokens, keys]}
        """.replace("${JWT_SECRET}", "x" * 32)
    )
    section = config.sections["auth"]
    assert isinstance(section.authenticators["keys"], ApiKeyConfig)
    tokens = section.authenticators["tokens"]
    assert isinstance(tokens, JwtConfig)
    assert tokens.audience == ("my-api",) and tokens.leeway == 30.0
    assert tokens.forward_claims == (("sub", "X-User-Id"), ("role", "X-User-Role"))
    assert "x" * 32 not in repr(tokens)  # secrets stay out of reprs and logs
    assert config.routes[0].policies["auth"].authenticators == ("tokens", "keys")


def test_secrets_are_not_in_reprs():
    config = gateway_config(
        """
        auth:
          keys: {type: api_key, store: "postgresql://gw:hunter2@db.internal/gw"}
        """
    )
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    "snippet, message",
    [
        ("t: {type: jwt, algorithms: [none], secret: x}", "auth.t.algorithms[0]: 'none' (unsigned tokens) is never accepted"),
        ("t: {type: jwt, algorithms: [HS257], secret: x}", "unknown algorithm 'HS257'"),
        ("t: {type: jwt, algorithms: [HS256], secret: short}", "auth.t.secret: too short for HS256"),
        ("t: {type: jwt, algorithms: [HS256]}", "HS256 need a 'secret'"),
        ("t: {type: jwt, algorithms: [RS256]}", "RS256 need a 'public_key' or a 'jwks_url'"),
        ("t: {type: jwt, algorithms: [RS256], jwks_url: ftp://x/jwks}", "expected an http:// or https:// URL"),
        ("t: {type: jwt, secret: " + "y" * 40 + "}", "required key 'algorithms' is missing"),
        ("t: {type: jwt, algorithms: [RS256], jwks_url: 'https://i/j', htpasswd: x}", "'htpasswd' does not apply to type 'jwt'"),
        ("t: {type: oauth}", "unknown value 'oauth'"),
        ("t: {store: 'sqlite:x'}", "required key 'type' is missing"),
        ("t: {type: api_key, store: 'mysql://x'}", "unknown key store"),
        ("t: {type: api_key, header: 'X Bad'}", "'X Bad' is not a valid HTTP header name"),
        ("t: {type: api_key, forward_consumer: Host}", "'Host' is managed by the gateway"),
        ("t: {type: mtls, forward_subject: X-Forwarded-For}", "managed by the gateway"),
        ("t: {type: basic}", "required key 'htpasswd' is missing"),
        ("'bad name': {type: mtls}", "authenticator name 'bad name'"),
        ("t: {type: jwt, algorithms: [RS256], jwks_url: 'https://i/j', leeway: 30}", "a duration needs a unit"),
    ],
)
def test_section_errors_name_the_key(snippet, message):
    text = load_errors("auth:\n  " + snippet + "\n")
    assert message in text
    assert "gw.yaml:" in text


def test_route_errors_at_load_time():
    text = load_errors(
        """
        auth:
          t: {type: mtls}
        routes:
          - {name: a, path: /a, upstream: app, auth: []}
          - {name: b, path: /b, upstream: app, auth: t}
          - {name: c, path: /c, upstream: app, auth: {scopes: [x]}}
          - {name: d, path: /d, upstream: app, auth: [t, t]}
          - {name: e, path: /e, upstream: app, auth: {any: [t], keep_credentials: "yes"}}
        """
    )
    assert "routes[0].auth: must name at least one authenticator" in text
    assert "routes[1].auth: expected a list of authenticator names" in text
    assert "routes[2].auth.any: required key 'any' is missing" in text
    assert "routes[3].auth[1]: 't' is listed twice" in text
    assert "routes[4].auth.keep_credentials: expected true or false" in text


def test_unknown_authenticator_is_refused_when_built_with_a_suggestion():
    text = build_errors(
        """
        auth:
          tokens: {type: mtls}
        routes:
          - {name: a, path: /a, upstream: app, auth: [tokenz]}
        """
    )
    assert "gw.yaml:8: routes[0].auth: unknown authenticator 'tokenz' (defined: tokens); did you mean 'tokens'?" in text


def test_route_auth_without_an_auth_section_is_refused():
    text = build_errors("routes:\n  - {name: a, path: /a, upstream: app, auth: [tokens]}\n")
    assert "routes[0].auth: the route names authenticators but there is no top-level 'auth' section" in text


def test_requirements_need_the_right_authenticator():
    text = build_errors(
        """
        auth:
          clients: {type: mtls}
        routes:
          - {name: a, path: /a, upstream: app, auth: {any: [clients], scopes: [admin]}}
        """
    )
    assert "'scopes' and 'roles' come from JWT claims" in text


def test_unreadable_files_are_refused_when_built(tmp_path):
    private = tmp_path / "private.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    weak = tmp_path / "htpasswd"
    weak.write_text("alice:$apr1$abc$defghijklmnopqrstuvwx\n")
    text = build_errors(
        f"""
        auth:
          a: {{type: jwt, algorithms: [RS256], public_key: {tmp_path}/missing.pem}}
          b: {{type: jwt, algorithms: [ES256], public_key: {private}}}
          c: {{type: basic, htpasswd: {weak}}}
          d: {{type: basic, htpasswd: {tmp_path}/nothing}}
        """
    )
    assert "auth.a.public_key: cannot read" in text
    assert "auth.b.public_key:" in text and "private key" in text
    assert "auth.c.htpasswd:" in text and "line 1: only bcrypt entries" in text
    assert "auth.d.htpasswd: cannot read" in text


def test_a_weak_rsa_key_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.auth.helpers import pem_public

    small = tmp_path / "small.pem"
    small.write_bytes(pem_public(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    text = build_errors(f"auth:\n  a: {{type: jwt, algorithms: [RS256], public_key: {small}}}\n")
    assert "RSA key of 1024 bits" in text


def test_auth_is_no_longer_pending():
    from twistgate.config import sections

    assert "auth" in sections.gateway_sections() and "auth" in sections.route_sections()
