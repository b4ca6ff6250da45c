"""listeners[].tls.groups: parsed, checked against this OpenSSL, and applied (tests/integration/test_tls_groups.py)."""

from __future__ import annotations

import pytest

from tests.config_helpers import config_loader
from tests.tls.harness import needs_groups
from twistgate.config.model import ConfigError, ListenerTLSConfig, Location
from twistgate.tls import build_server_contexts, unsupported_groups
from twistgate.tls import server_contexts

load, issues = config_loader()
LISTENER = """
listeners:
  - name: tls
    endpoint: tcp:8443
    tls:
      certificate: a.crt
      private_key: a.key
"""


def test_default_groups():
    tls = load(LISTENER).listeners[0].tls
    assert tls.groups == ("X25519", "P-256", "P-384")


def test_configured_groups_keep_their_order():
    assert load(LISTENER + "      groups: [P-384, X25519]\n").listeners[0].tls.groups == ("P-384", "X25519")


@pytest.mark.parametrize(
    "value, message",
    [("[]", "must not be empty"), ("[X25519, x25519]", "listed twice"), ("['P 256']", "a key exchange group name"),
     ("X25519", "expected a list")],
)
def test_bad_groups_are_refused_at_load(value, message):
    found = issues(LISTENER + f"      groups: {value}\n")
    assert len(found) == 1 and found[0][1].startswith("listeners[0].tls.groups") and message in found[0][2]


@needs_groups
def test_unknown_groups_are_refused_when_the_listener_is_built(pki):
    assert unsupported_groups(["X25519", "P-256"]) == ()
    assert unsupported_groups(["X25519", "NoSuchGroup"]) == ("NoSuchGroup",)
    config = ListenerTLSConfig(
        certificate=pki.server.certificate, private_key=pki.server.key, groups=("X25519", "NoSuchGroup"),
        location=Location(file="gw.yaml", line=4, path="listeners[0].tls"),
    )
    with pytest.raises(ConfigError) as error:
        build_server_contexts(config)
    [issue] = error.value.issues
    assert str(issue.location) == "gw.yaml:4: listeners[0].tls.groups"
    assert "does not offer 'NoSuchGroup'" in issue.message


def test_without_the_binding_the_defaults_serve_with_a_warning_and_explicit_groups_are_refused(pki, monkeypatch):
    """Where groups cannot be chosen (PyPy 3.9's cryptography), TLS still works; only a choice it cannot honour is refused."""
    from twisted.logger import globalLogPublisher

    monkeypatch.setattr(server_contexts, "groups_settable", lambda: False)
    monkeypatch.setattr("twistgate.tls.certificate_context.groups_settable", lambda: False)
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        built = build_server_contexts(ListenerTLSConfig(certificate=pki.server.certificate, private_key=pki.server.key))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert built.default is not None
    assert any("cannot restrict key exchange groups" in event.get("log_format", "") for event in logged)
    config = ListenerTLSConfig(
        certificate=pki.server.certificate, private_key=pki.server.key, groups=("X25519",),
        location=Location(file="gw.yaml", line=4, path="listeners[0].tls"),
    )
    with pytest.raises(ConfigError) as error:
        build_server_contexts(config)
    [issue] = error.value.issues
    assert str(issue.location) == "gw.yaml:4: listeners[0].tls.groups" and "cannot choose key exchange groups" in issue.message
