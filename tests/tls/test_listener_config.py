"""The listener `tls` block: keys, defaults and errors (files are read later, by the listener)."""

from __future__ import annotations

from twistgate.config import ListenerCertificate, ListenerTLSConfig
from tests.config_helpers import config_loader

load, issues = config_loader("")


def test_full_tls_block():
    """Extra certificates for SNI, the minimum version and HTTP/2 are read; the block's location is kept."""
    config = load(
        """
        listeners:
          - name: edge
            endpoint: tcp:8443
            tls:
              certificate: a.crt
              private_key: a.key
              certificates:
                - {certificate: b.crt, private_key: b.key}
              client_ca: ca.crt
              client_certificate: optional
              min_version: "1.3"
              http2: false
        """
    )
    tls = config.listeners[0].tls
    assert tls == ListenerTLSConfig(
        certificate="a.crt",
        private_key="a.key",
        certificates=(ListenerCertificate(certificate="b.crt", private_key="b.key"),),
        client_ca="ca.crt",
        client_certificate="optional",
        min_version="1.3",
        http2=False,
    )
    assert (tls.location.file, tls.location.line, tls.location.path) == ("gw.yaml", 4, "listeners[0].tls")
    assert (tls.certificates[0].location.line, tls.certificates[0].location.path) == (
        8,
        "listeners[0].tls.certificates[0]",
    )


def test_defaults_are_secure():
    """TLS 1.2 minimum, HTTP/2 offered, no client certificate asked for."""
    tls = load('listeners: [{name: a, endpoint: "tcp:1", tls: {certificate: c, private_key: k}}]\n').listeners[0].tls
    assert (tls.min_version, tls.http2, tls.client_certificate, tls.certificates) == ("1.2", True, "none", ())


def test_min_version_accepts_an_unquoted_number():
    tls = load('listeners: [{name: a, endpoint: "tcp:1", tls: {certificate: c, private_key: k, min_version: 1.2}}]\n')
    assert tls.listeners[0].tls.min_version == "1.2"


def test_private_key_paths_stay_out_of_reprs():
    tls = ListenerTLSConfig(certificate="c", private_key="/secret/k", certificates=(ListenerCertificate(certificate="b", private_key="/secret/b"),))
    assert "/secret" not in repr(tls)


def test_tls_block_errors():
    found = issues(
        """
        listeners:
          - name: a
            endpoint: tcp:8443
            tls:
              certificate: c
              private_key: k
              min_version: "1.1"
              http2: maybe
              certificates:
                - {certificate: b}
                - {certificate: d, private_key: e, sni: x}
          - name: b
            endpoint: tcp:8444
            tls: {certificate: c, private_key: k, client_ca: ca.crt}
        """
    )
    assert found == [
        (7, "listeners[0].tls.min_version", 'TLS 1.1 is deprecated (RFC 8996) and never offered; use "1.2" or "1.3"'),
        (8, "listeners[0].tls.http2", "expected true or false, got string 'maybe'"),
        (10, "listeners[0].tls.certificates[0].private_key", "required key 'private_key' is missing"),
        (11, "listeners[0].tls.certificates[1].sni", "unknown key 'sni'"),
        (
            14,
            "listeners[1].tls.client_ca",
            "client_ca is set but client_certificate is none, so no client certificate would be asked for; "
            "set client_certificate: optional or required",
        ),
    ]


def test_an_ssl_endpoint_cannot_have_a_tls_block_too(pki):
    """TLS would be wrapped twice."""
    endpoint = f"ssl:8443:privateKey={pki.server.key}:certKey={pki.server.certificate}"
    found = issues(
        f"""
        listeners:
          - name: a
            endpoint: "{endpoint}"
            tls: {{certificate: c, private_key: k}}
        """
    )
    assert found == [
        (3, "listeners[0].endpoint", "a listener with a 'tls' block takes a plain endpoint like tcp:8443; 'ssl:' would wrap TLS twice")
    ]


def test_unknown_min_version():
    found = issues('listeners: [{name: a, endpoint: "tcp:1", tls: {certificate: c, private_key: k, min_version: tls13}}]\n')
    assert found == [(1, "listeners[0].tls.min_version", "unknown value 'tls13'; expected one of 1.2, 1.3")]
