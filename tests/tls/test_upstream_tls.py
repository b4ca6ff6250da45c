"""upstreams.<name>.tls: the section, and the IPolicyForHTTPS that policy_for builds from it."""

from __future__ import annotations

import textwrap

import pytest
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.iweb import IPolicyForHTTPS

from twistgate.config import ConfigError, load_text
from twistgate.upstream.tls import UpstreamTLSConfig, policy_for


def load(tls_yaml):
    text = textwrap.dedent(
        f"""
        listeners: [{{name: a, endpoint: "tcp:1"}}]
        upstreams:
          users:
            targets: [{{url: "https://127.0.0.1:5002"}}]
            tls: {tls_yaml}
        """
    ).lstrip("\n")
    return load_text(text, filename="gw.yaml", environ={})


def issues(tls_yaml):
    with pytest.raises(ConfigError) as info:
        load(tls_yaml)
    return [(i.location.line, i.location.path, i.message) for i in info.value.issues]


def test_section_keys_and_defaults():
    """The contract's keys; verify defaults to true; server_name is normalised."""
    config = load("{ca: ca.crt, certificate: gw.crt, private_key: gw.key, server_name: Users.Internal.}")
    tls = config.upstreams["users"].policies["tls"]
    assert tls == UpstreamTLSConfig(
        ca="ca.crt", certificate="gw.crt", private_key="gw.key", server_name="users.internal", verify=True
    )
    assert (tls.location.line, tls.location.path) == (5, "upstreams.users.tls")
    assert "gw.key" not in repr(tls)
    assert load("{}").upstreams["users"].policies["tls"] == UpstreamTLSConfig()


def test_section_errors():
    assert issues("{certificate: gw.crt}") == [
        (5, "upstreams.users.tls.certificate", "'certificate' needs 'private_key' too (the client certificate and its key)")
    ]
    assert issues("{verify: false, ca: ca.crt}") == [
        (5, "upstreams.users.tls.verify", "verify: false ignores 'ca'; remove one of them")
    ]
    assert issues("{server_name: 'https://x'}") == [
        (5, "upstreams.users.tls.server_name", "expected a host name like users.internal, got 'https://x'")
    ]
    assert issues("{verify: yes please}") == [(5, "upstreams.users.tls.verify", "expected true or false, got string 'yes please'")]
    assert issues("{sni: x}") == [(5, "upstreams.users.tls.sni", "unknown key 'sni'")]


def test_policy_files_are_read_once_and_checked(pki, tmp_path):
    """A missing CA or a key that does not match its certificate is a ConfigError at the key."""
    config = load(f"{{ca: {tmp_path / 'missing.crt'}, certificate: {pki.gateway_client.certificate}, private_key: {pki.client.key}}}")
    with pytest.raises(ConfigError) as caught:
        policy_for(config.upstreams["users"])
    assert [(i.location.file, i.location.line, i.location.path) for i in caught.value.issues] == [
        ("gw.yaml", 5, "upstreams.users.tls.ca"),
        ("gw.yaml", 5, "upstreams.users.tls.private_key"),
    ]


def test_policy_builds_each_host_once(pki):
    """creatorForNetloc is asked per connection: the TLS settings for a host are built once and reused."""
    config = load(f"{{ca: {pki.upstream_ca.certificate}}}")
    policy = policy_for(config.upstreams["users"])
    assert IPolicyForHTTPS.providedBy(policy)
    first = policy.creatorForNetloc(b"127.0.0.1", 5002)
    assert IOpenSSLClientConnectionCreator.providedBy(first)
    assert policy.creatorForNetloc(b"127.0.0.1", 5002) is first
    assert policy.creatorForNetloc(b"other.internal", 5002) is not first


def test_server_name_replaces_the_target_host(pki):
    """With server_name every target is verified (and SNI-addressed) under that one name."""
    config = load(f"{{ca: {pki.upstream_ca.certificate}, server_name: upstream.internal}}")
    policy = policy_for(config.upstreams["users"])
    assert policy.creatorForNetloc(b"10.0.0.1", 443) is policy.creatorForNetloc(b"10.0.0.2", 443)


def test_no_tls_section_still_verifies():
    """An upstream without `tls` gets the default: verification against the system store."""
    config = load_text(
        'listeners: [{name: a, endpoint: "tcp:1"}]\nupstreams:\n  u: {targets: [{url: "https://h"}]}\n',
        filename="gw.yaml",
        environ={},
    )
    policy = policy_for(config.upstreams["u"])
    assert policy.config.verify is True and policy.config.ca is None
    assert policy.config.location.path == "upstreams.u.tls"
