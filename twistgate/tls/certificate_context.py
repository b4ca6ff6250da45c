"""
The OpenSSL context of one listener certificate: protocol versions, cipher
suites, key-exchange groups, session resumption, client certificate
verification and ALPN.

Every context of a listener is built alike from its config, so an SNI switch
(`twistgate.tls.server_contexts`) changes only the certificate.
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.web.http import H2_ENABLED

from twistgate.config.model import ListenerTLSConfig, SessionResumptionConfig
from twistgate.tls.identity import verify_client
from twistgate.tls.pem import CertifiedKey

__all__ = [
    "CLIENT_VERIFY_MODES",
    "H2_ENABLED",
    "MIN_VERSIONS",
    "TLS12_CIPHERS",
    "certificate_context",
    "groups_settable",
    "unsupported_groups",
]

#: TLS 1.2 suites: forward secrecy and AEAD only (Mozilla "intermediate"
#: without DHE).  TLS 1.3 suites are all AEAD; OpenSSL's defaults apply.
TLS12_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_OPTIONS = (
    SSL.OP_NO_COMPRESSION  # CRIME
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_NO_RENEGOTIATION  # the verified identity is fixed for the connection's life
    | SSL.OP_SINGLE_ECDH_USE
)
CLIENT_VERIFY_MODES = {
    "optional": SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE,
    "required": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE,
}


def groups_settable() -> bool:
    """
    Whether this pyOpenSSL/cryptography can restrict the key-exchange groups.
    The last cryptography with wheels for PyPy 3.9 (43) does not bind
    ``SSL_CTX_set1_groups_list``: there OpenSSL's default groups are offered
    (`twistgate.tls.server_contexts` says so once, and refuses an explicit
    ``groups`` it could not honour).
    """
    from OpenSSL._util import lib

    return getattr(lib, "SSL_CTX_set1_curves_list", None) is not None


def _set_groups(context: SSL.Context, groups: Sequence[str]) -> bool:
    """
    Offer only `groups` for key exchange (TLS 1.2 ECDHE and TLS 1.3).
    pyOpenSSL has no API for it yet: this calls OpenSSL's
    ``SSL_CTX_set1_groups_list`` (spelt ``..._curves_list``, the same
    function) through the bindings pyOpenSSL itself uses.
    """
    from OpenSSL._util import lib

    return bool(lib.SSL_CTX_set1_curves_list(context._context, ":".join(groups).encode("ascii")))


def unsupported_groups(groups: Sequence[str]) -> Tuple[str, ...]:
    """The names in `groups` this OpenSSL does not know (none can be checked where `groups_settable` is false)."""
    if not groups_settable():
        return ()
    probe = SSL.Context(SSL.TLS_SERVER_METHOD)
    if _set_groups(probe, groups):
        return ()
    return tuple(group for group in groups if not _set_groups(SSL.Context(SSL.TLS_SERVER_METHOD), [group]))


def certificate_context(
    key: CertifiedKey, config: ListenerTLSConfig, client_cas: Sequence[x509.Certificate],
    servername_callback: Any = None,
) -> SSL.Context:
    """Every context of a listener verifies clients alike, so an SNI switch changes only the certificate."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(MIN_VERSIONS[config.min_version])
    context.set_options(_OPTIONS)
    if groups_settable() and not _set_groups(context, config.groups):  # checked by build_server_contexts
        raise ValueError(f"cannot offer TLS groups {config.groups!r}")
    context.use_certificate(key.chain[0])
    for intermediate in key.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(key.private_key)
    context.check_privatekey()
    _resumption(context, config.resumption)
    # Required by OpenSSL whenever client certificates are verified, and for the session cache.
    context.set_session_id(b"twistgate")
    if client_cas:
        store = context.get_cert_store()
        assert store is not None
        for ca in client_cas:
            # X509Store takes pyOpenSSL's X509 only (not deprecated there);
            # every Context call gets cryptography objects.
            store.add_cert(crypto.X509.from_cryptography(ca))
            # The CertificateRequest names these CAs, so clients pick the right certificate.
            context.add_client_ca(ca)
        context.set_verify(CLIENT_VERIFY_MODES[config.client_certificate], verify_client)
        context.set_verify_depth(9)
    else:
        context.set_verify(SSL.VERIFY_NONE)
    protocols = (b"h2", b"http/1.1") if (config.http2 and H2_ENABLED) else (b"http/1.1",)
    context.set_alpn_select_callback(_alpn_selector(protocols))
    if servername_callback is not None:  # several certificates: SNI picks the context
        context.set_tlsext_servername_callback(servername_callback)
    # Last: pyOpenSSL 25 checks the list on a throwaway Connection, after
    # which it warns on every change to the context (PyPy 3.9 installs 25).
    context.set_cipher_list(TLS12_CIPHERS)
    return context


def _resumption(context: SSL.Context, settings: SessionResumptionConfig) -> None:
    """
    Session resumption: the server-side cache (TLS 1.2 session IDs; TLS 1.3
    stateful tickets when tickets are off) and stateless tickets, each
    resumable for `lifetime`.  The ticket key is the context's own random
    one: `twistgate.listeners` rotates it by building the contexts afresh.
    (After SNI switches the context, OpenSSL keeps resuming with the
    first one's cache and key, so every context shares them.)
    """
    if not settings.enabled:
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        context.set_options(SSL.OP_NO_TICKET)
        return
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER if settings.cache else SSL.SESS_CACHE_OFF)
    context.set_timeout(max(1, int(settings.lifetime)))
    if not settings.tickets:
        context.set_options(SSL.OP_NO_TICKET)


def _alpn_selector(protocols: Tuple[bytes, ...]) -> Any:
    """The server's preference wins; no common protocol is a fatal alert (RFC 7301, 3.2)."""

    def select(connection: SSL.Connection, offered: Sequence[bytes]) -> bytes:
        for protocol in protocols:
            if protocol in offered:
                return protocol
        # In OpenSSL's error-queue shape, which Twisted unpacks when it logs the failure.
        raise SSL.Error([("twistgate", "ALPN", "no_application_protocol")])

    return select
