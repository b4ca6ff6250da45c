"""
TLS for client-facing listeners: server contexts, SNI, ALPN, client
certificates, and the verified client identity of a request.

Everything expensive happens once, when a listener is built or reloaded:
the PEM files are read and checked, and one `SSL.Context` is built per
certificate.  A handshake then costs a dict lookup for SNI and one Python
call per certificate in the client's chain; a request asking for its
client's identity gets the value cached on its connection.

The identity API, for authenticators and plugins:

    from twistgate.tls import peer_identity

    identity = peer_identity(request)   # ProxyRequest or twisted.web request
    if identity is not None:            # a certificate that passed verification
        identity.subject, identity.sans, identity.fingerprint_sha256
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.web.http import H2_ENABLED
from zope.interface import implementer

from twistgate._twisted_compat import keep_own_alpn
from twistgate.config.model import ConfigError, ConfigIssue, ListenerTLSConfig, Location, SessionResumptionConfig

__all__ = ["ClientIdentity", "peer_identity", "identity_of", "TLS_CONNECTION"]

_log = Logger()

#: `ProxyRequest.state` key under which the exchange keeps the request's TLS
#: connection (set for requests that arrived over TLS).
TLS_CONNECTION = "twistgate.tls.connection"

# -- the verified client identity ----------------------------------------------


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
            # created it, which `_verify_client` passed (a certificate that
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


def _verify_client(connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict stands; the leaf that passed is recorded on the connection."""
    if not ok:
        return False
    if depth == 0:
        protocol = connection.get_app_data()
        if isinstance(protocol, PeerTLSProtocol):
            protocol.verified_certificate = certificate
    return True


# -- PEM files -------------------------------------------------------------------


@attrs.frozen
class CertifiedKey:
    """A certificate chain (leaf first), its private key, and the DNS names it serves."""

    chain: Tuple[x509.Certificate, ...]
    private_key: Any = attrs.field(repr=False)
    names: Tuple[str, ...]


class TLSFileError(ValueError):
    """A certificate or key file that cannot be used; `key` names the config key it came from."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def _read(path: str, what: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSFileError(f"cannot read the {what} {path!r}: {e.strerror or e}", key) from None


def read_certificates(path: str, what: str = "certificate", key: str = "certificate") -> Tuple[x509.Certificate, ...]:
    """Every certificate of a PEM file, in file order; none is an error."""
    data = _read(path, what, key)
    try:
        found = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise TLSFileError(f"the {what} {path!r} holds no valid PEM certificate", key) from None
    return found


def read_private_key(path: str, key: str = "private_key") -> Any:
    data = _read(path, "private key", key)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSFileError(
            f"the private key {path!r} is encrypted; give twistgate an unencrypted key "
            "and protect the file with its permissions",
            key,
        ) from None
    except Exception:  # ValueError, or UnsupportedAlgorithm for exotic keys
        raise TLSFileError(f"the private key {path!r} holds no valid PEM private key", key) from None


def read_certified_key(certificate_path: str, key_path: str) -> CertifiedKey:
    """A chain and its key, checked to belong together."""
    chain = read_certificates(certificate_path)
    private_key = read_private_key(key_path)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    leaf_key = chain[0].public_key().public_bytes(serialization.Encoding.DER, public)
    if private_key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf_key:
        raise TLSFileError(
            f"the private key {key_path!r} does not match the certificate {certificate_path!r} "
            "(the first certificate in the file must be the server's own)",
            "private_key",
        )
    return CertifiedKey(chain=chain, private_key=private_key, names=_dns_names(chain[0]))


def read_ca_bundle(path: str, key: str = "client_ca") -> Tuple[x509.Certificate, ...]:
    """Trust anchors: each must be allowed to sign certificates."""
    cas = read_certificates(path, "CA bundle", key)
    for ca in cas:
        try:
            constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            continue  # an old v1 root
        if not constraints.ca:
            raise TLSFileError(
                f"the CA bundle {path!r} holds a certificate that is not a CA "
                f"({ca.subject.rfc4514_string()}); list the CAs that issue the certificates",
                key,
            )
    return cas


def _dns_names(certificate: x509.Certificate) -> Tuple[str, ...]:
    """The names SNI selects this certificate by: DNS SANs, else a host-like CN (RFC 6125)."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [name.lower().rstrip(".") for name in sans.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [
            str(attribute.value).lower()
            for attribute in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            if "." in str(attribute.value) and " " not in str(attribute.value)
        ]
    return tuple(names)


# -- server contexts -------------------------------------------------------------

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


@attrs.frozen(eq=False)
class ServerContexts:
    """One listener's contexts: the default one, and one per SNI name."""

    default: SSL.Context
    by_name: Dict[str, SSL.Context]  # exact names and "*.suffix" wildcards, lower-case
    names: Tuple[Tuple[str, ...], ...]  # the names of each certificate, for logs and tests
    #: The same contexts built afresh from the keys already read (no file is
    #: read): a new ticket key and an empty session cache (key rotation).
    rebuild: Optional[Callable[[], "ServerContexts"]] = attrs.field(default=None, repr=False)

    def for_server_name(self, server_name: Optional[bytes]) -> SSL.Context:
        if not server_name:
            return self.default
        name = server_name.decode("ascii", "replace").lower().rstrip(".")
        found = self.by_name.get(name)
        if found is None and "." in name:
            found = self.by_name.get("*." + name.split(".", 1)[1])
        return found if found is not None else self.default

    def select(self, connection: SSL.Connection) -> None:
        """OpenSSL's SNI callback: switch the connection to the named certificate's context."""
        context = self.for_server_name(connection.get_servername())
        if context is not connection.get_context():
            connection.set_context(context)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    Creates each accepted connection's TLS state from the current contexts;
    `replace` swaps them (reload) for connections accepted afterwards.
    """

    def __init__(self, contexts: ServerContexts) -> None:
        self.contexts = contexts

    def replace(self, contexts: ServerContexts) -> None:
        self.contexts = contexts

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.contexts.default, None)
        # The verify callback finds the protocol through the app data; older
        # Twisted (25.x, the newest for Python 3.9 and so for Debian's PyPy)
        # does not set it for a custom connection creator.
        connection.set_app_data(protocol)
        return connection


def build_server_contexts(config: ListenerTLSConfig, *, where: str = "tls") -> ServerContexts:
    """
    Read the listener's certificates and CA bundle and build its contexts;
    a problem is a `ConfigError` at ``config.location`` (``where`` is the key
    path used when the config carries no location).
    """
    location = config.location if config.location.path else Location(path=where)
    issues: List[ConfigIssue] = []
    entries = [(config.certificate, config.private_key, location)]
    for index, extra in enumerate(config.certificates):
        at = extra.location if extra.location.path else _at(location, f"certificates[{index}]")
        entries.append((extra.certificate, extra.private_key, at))
    keys = []
    for certificate, private_key, at in entries:
        try:
            keys.append(read_certified_key(certificate, private_key))
        except TLSFileError as e:
            issues.append(ConfigIssue(location=_at(at, e.key), message=str(e)))
    client_cas: Sequence[x509.Certificate] = ()
    if config.client_ca is not None and config.client_certificate != "none":
        try:
            client_cas = read_ca_bundle(config.client_ca)
        except TLSFileError as e:
            issues.append(ConfigIssue(location=_at(location, e.key), message=str(e)))
    unknown = unsupported_groups(config.groups)
    if unknown:
        issues.append(
            ConfigIssue(
                location=_at(location, "groups"),
                message=f"this OpenSSL ({SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()}) does not offer "
                f"{', '.join(map(repr, unknown))}; known names include X25519, P-256, P-384, X448, P-521",
            )
        )
    if issues:
        raise ConfigError(issues)

    def assemble() -> ServerContexts:
        contexts = [_context(key, config, client_cas) for key in keys]
        by_name: Dict[str, SSL.Context] = {}
        for key, context in zip(keys, contexts):
            for name in key.names:
                by_name.setdefault(name, context)  # the first certificate listed wins a name
        built = ServerContexts(
            default=contexts[0], by_name=by_name, names=tuple(key.names for key in keys), rebuild=assemble
        )
        if len(contexts) > 1:  # one certificate: no SNI callback to pay for
            for context in contexts:
                context.set_tlsext_servername_callback(built.select)
        return built

    return assemble()


def _at(location: Location, key: str) -> Location:
    return Location(file=location.file, line=location.line, path=f"{location.path}.{key}")


def _set_groups(context: SSL.Context, groups: Sequence[str]) -> bool:
    """
    Offer only `groups` for key exchange (TLS 1.2 ECDHE and TLS 1.3).
    pyOpenSSL has no API for it yet: this calls OpenSSL's
    ``SSL_CTX_set1_groups_list`` (spelt ``..._curves_list``, the same
    function) through the bindings pyOpenSSL itself uses.
    """
    from OpenSSL._util import lib

    setter = getattr(lib, "SSL_CTX_set1_curves_list", None)
    if setter is None:  # pragma: no cover - a cryptography without the binding
        raise RuntimeError("this pyOpenSSL/cryptography cannot restrict TLS key exchange groups")
    return bool(setter(context._context, ":".join(groups).encode("ascii")))


def unsupported_groups(groups: Sequence[str]) -> Tuple[str, ...]:
    """The names in `groups` this OpenSSL does not know."""
    probe = SSL.Context(SSL.TLS_SERVER_METHOD)
    if _set_groups(probe, groups):
        return ()
    return tuple(group for group in groups if not _set_groups(SSL.Context(SSL.TLS_SERVER_METHOD), [group]))


def _context(key: CertifiedKey, config: ListenerTLSConfig, client_cas: Sequence[x509.Certificate]) -> SSL.Context:
    """Every context of a listener verifies clients alike, so an SNI switch changes only the certificate."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(MIN_VERSIONS[config.min_version])
    context.set_options(_OPTIONS)
    context.set_cipher_list(TLS12_CIPHERS)
    if not _set_groups(context, config.groups):  # checked by build_server_contexts; never expected here
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
        context.set_verify(CLIENT_VERIFY_MODES[config.client_certificate], _verify_client)
        context.set_verify_depth(9)
    else:
        context.set_verify(SSL.VERIFY_NONE)
    protocols = (b"h2", b"http/1.1") if (config.http2 and H2_ENABLED) else (b"http/1.1",)
    context.set_alpn_select_callback(_alpn_selector(protocols))
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
