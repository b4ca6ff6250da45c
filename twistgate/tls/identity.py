"""
The verified client identity of a request, for authenticators and plugins:

    from twistgate.tls import peer_identity

    identity = peer_identity(request)   # ProxyRequest or twisted.web request
    if identity is not None:            # a certificate that passed verification
        identity.subject, identity.sans, identity.fingerprint_sha256

The handshake records the leaf certificate OpenSSL verified on the TLS
connection (`verify_client`, the verify callback of every listener context
with ``client_ca``); the identity is computed from it once per connection,
when a request first asks.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory

from twistgate._twisted_compat import keep_own_alpn

__all__ = [
    "TLS_CONNECTION",
    "ClientIdentity",
    "PeerTLSFactory",
    "PeerTLSProtocol",
    "identity_of",
    "peer_identity",
    "tls_connection",
    "verify_client",
]

# The namespace of the module this came from, so that log lines keep their name.
_log = Logger(namespace="twistgate.tls")

#: `ProxyRequest.state` key under which the exchange keeps the request's TLS
#: connection (set for requests that arrived over TLS).
TLS_CONNECTION = "twistgate.tls.connection"


@attrs.frozen
class ClientIdentity:
    """Who the client proved to be with a certificate that chains to ``client_ca``."""

    subject: str  # RFC 4514, e.g. "CN=client-1,O=Example"
    sans: Tuple[str, ...]  # "DNS:a.example", "URI:spiffe://...", "email:...", "IP:..."
    fingerprint_sha256: str  # lower-case hex of the DER certificate
    issuer: str  # RFC 4514


def peer_identity(request: Any) -> Optional[ClientIdentity]:
    """
    The verified client certificate of `request` (a `ProxyRequest`: the
    exchange records the TLS connection it arrived on, over HTTP/1.1 or
    HTTP/2), or None: plain listeners, listeners without ``client_ca``, and
    clients that sent no certificate.  Computed once per connection.
    """
    connection = _tls_connection(request)
    if connection is None:
        return None
    return connection.client_identity()


def tls_connection(transport: Any) -> Optional["PeerTLSProtocol"]:
    """The gateway TLS connection behind a request's transport (`Downstream.transport`), if any."""
    return transport if isinstance(transport, PeerTLSProtocol) else None


def _tls_connection(request: Any) -> Optional["PeerTLSProtocol"]:
    """The TLS connection the exchange recorded for a `ProxyRequest`."""
    connection = request.state.get(TLS_CONNECTION)
    return connection if isinstance(connection, PeerTLSProtocol) else None


def identity_of(certificate: x509.Certificate) -> ClientIdentity:
    """The identity a certificate states (the caller vouches that it was verified)."""
    return ClientIdentity(
        subject=_safe_name(certificate.subject),
        sans=_subject_alt_names(certificate),
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        issuer=_safe_name(certificate.issuer),
    )


def _safe_name(name: x509.Name) -> str:
    """
    RFC 4514, with every non-printable character hex-escaped per UTF-8 byte
    (``\\0d\\0a``, still valid RFC 4514), so the string is safe in a header.
    """
    return "".join(c if c.isprintable() else _hex_escape(c) for c in name.rfc4514_string())


def _hex_escape(character: str) -> str:
    return "".join(f"\\{byte:02x}" for byte in character.encode("utf-8"))


_SAN_PREFIXES = (
    (x509.DNSName, "DNS"),
    (x509.UniformResourceIdentifier, "URI"),
    (x509.RFC822Name, "email"),
    (x509.IPAddress, "IP"),
)


def _subject_alt_names(certificate: x509.Certificate) -> Tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names = []
    for general_name in extension.value:
        for kind, prefix in _SAN_PREFIXES:
            if isinstance(general_name, kind):
                value = str(general_name.value)
                # A name with control characters could smuggle a header line
                # or fool a comparison: it is left out, never rewritten.
                if value.isprintable():
                    names.append(f"{prefix}:{value}")
                break
    return tuple(names)


_UNSET = object()


class PeerTLSProtocol(BufferingTLSTransport):
    """A server-side TLS connection that remembers the client certificate it verified."""

    verified_certificate: Any = None  # the pyOpenSSL X509 that passed verification
    _identity: Any = _UNSET

    def client_identity(self) -> Optional[ClientIdentity]:
        if self._identity is _UNSET:
            self._identity = self._compute_identity()
        return self._identity  # type: ignore[no-any-return]

    def _compute_identity(self) -> Optional[ClientIdentity]:
        certificate = self.verified_certificate
        if certificate is None:
            # A resumed session (session_resumption on an mTLS listener) is not
            # verified again: it carries the certificate of the handshake that
            # created it, which `verify_client` passed (a certificate that
            # fails verification fails the handshake, so no session has one).
            try:
                certificate = self.getHandle().get_peer_certificate()
            except AttributeError:  # not connected (yet, or any more)
                return None
            if certificate is None:
                return None
        try:
            return identity_of(certificate.to_cryptography())
        except Exception:  # OpenSSL accepted it but cryptography cannot parse it: fail closed
            _log.warn("a verified client certificate could not be parsed; no identity for this connection")
            return None


@keep_own_alpn
class PeerTLSFactory(TLSMemoryBIOFactory):
    """Wraps a listener's factory in TLS connections that keep their peer's identity."""

    protocol = PeerTLSProtocol


def verify_client(connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict stands; the leaf that passed is recorded on the connection."""
    if not ok:
        return False
    if depth == 0:
        protocol = connection.get_app_data()
        if isinstance(protocol, PeerTLSProtocol):
            protocol.verified_certificate = certificate
    return True
