"""build_listener for TLS listeners: the endpoint wrapper and reload (MemoryReactor, no sockets)."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web.server import Site
from twisted.web.resource import Resource

from twistgate.config.model import ConfigError, ListenerConfig, ListenerTLSConfig, Location
from twistgate.listeners import TLSServerEndpoint, build_listener
from twistgate.tls import PeerTLSFactory


def tls_listener(pki, **tls):
    values = dict(certificate=pki.server.certificate, private_key=pki.server.key)
    values.update(tls)
    return ListenerConfig(name="edge", endpoint="tcp:8443", tls=ListenerTLSConfig(**values))


def test_plain_listener_has_no_reload():
    listener = build_listener(ListenerConfig(name="plain", endpoint="tcp:8080"), MemoryReactorClock())
    assert listener.reload is None
    assert not isinstance(listener.endpoint, TLSServerEndpoint)


def test_tls_listener_wraps_the_endpoint(pki):
    """The configured endpoint listens; every connection it accepts goes through the listener's TLS."""
    reactor = MemoryReactorClock()
    listener = build_listener(tls_listener(pki), reactor)
    site = Site(Resource())
    listener.endpoint.listen(site)
    (port, factory, _backlog, interface) = reactor.tcpServers[0]
    assert (port, interface) == (8443, "")
    assert isinstance(factory, PeerTLSFactory) and factory.wrappedFactory is site
    assert factory._clock is reactor  # TLS write buffering runs on the gateway's reactor


def test_reload_rereads_the_certificates(pki):
    """reload() builds new contexts from the new config; connections accepted afterwards use them."""
    listener = build_listener(tls_listener(pki), MemoryReactorClock())
    tls = listener.endpoint.tls
    before = tls.contexts
    listener.reload(tls_listener(pki, certificate=pki.api.certificate, private_key=pki.api.key))
    assert tls.contexts is not before
    assert tls.contexts.names == (("api.example", "*.wild.example"),)


def test_a_failed_reload_keeps_the_old_certificates(pki, tmp_path):
    """Unreadable files: ConfigError with the file and key path, and the listener keeps serving what it had."""
    listener = build_listener(tls_listener(pki), MemoryReactorClock(), source="etc/gw.yaml", index=2)
    before = listener.endpoint.tls.contexts
    with pytest.raises(ConfigError) as caught:
        listener.reload(tls_listener(pki, certificate=str(tmp_path / "gone.crt")))
    (only,) = caught.value.issues
    assert (only.location.file, only.location.path) == ("etc/gw.yaml", "listeners[2].tls.certificate")
    assert listener.endpoint.tls.contexts is before
    with pytest.raises(ConfigError, match="cannot drop TLS without a restart"):
        listener.reload(ListenerConfig(name="edge", endpoint="tcp:8443"))
    assert listener.endpoint.tls.contexts is before


def test_build_errors_point_at_the_config(pki, tmp_path):
    config = tls_listener(pki, private_key=str(tmp_path / "none.key"))
    config = attrs.evolve(config, tls=attrs.evolve(config.tls, location=Location(file="gw.yaml", line=9, path="listeners[0].tls")))
    with pytest.raises(ConfigError) as caught:
        build_listener(config, MemoryReactorClock(), source="gw.yaml")
    assert str(caught.value) == (
        f"gw.yaml:9: listeners[0].tls.private_key: cannot read the private key {str(tmp_path / 'none.key')!r}: "
        "No such file or directory"
    )
