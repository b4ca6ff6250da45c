"""
A TLS listener's contexts: the default certificate and the ones SNI chooses
by name, built once from the listener's config when it is built or reloaded,
and swapped for connections accepted afterwards.

Everything expensive happens here, once: the PEM files are read and checked
and one `SSL.Context` is built per certificate.  A handshake then costs a
dict lookup for SNI.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from cryptography import __version__ as cryptography_version
from cryptography import x509
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from twistgate.config.model import ConfigError, ConfigIssue, ListenerTLSConfig, Location
from twistgate.tls.certificate_context import certificate_context, groups_settable, unsupported_groups
from twistgate.tls.pem import TLSFileError, read_ca_bundle, read_certified_key

_log = Logger()

__all__ = ["ServerContexts", "ServerTLS", "build_server_contexts"]


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
    if not groups_settable():
        if config.groups != ListenerTLSConfig.__attrs_attrs__.groups.default:
            issues.append(
                ConfigIssue(
                    location=_at(location, "groups"),
                    message="this pyOpenSSL/cryptography cannot choose key exchange groups (cryptography "
                    f"{cryptography_version} has no binding for it; the PyPy 3.9 wheels end there): remove "
                    "'groups' to offer OpenSSL's defaults, or run on CPython",
                )
            )
        else:
            _log.warn(
                "TLS listener: this cryptography ({version}) cannot restrict key exchange groups; "
                "OpenSSL's defaults are offered (X448 and P-521 too)", version=cryptography_version,
            )
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
        built: List[ServerContexts] = []  # the callback is set before the contexts are complete
        select = (lambda connection: built[0].select(connection)) if len(keys) > 1 else None  # one certificate: no SNI
        contexts = [certificate_context(key, config, client_cas, select) for key in keys]
        by_name: Dict[str, SSL.Context] = {}
        for key, context in zip(keys, contexts):
            for name in key.names:
                by_name.setdefault(name, context)  # the first certificate listed wins a name
        built.append(
            ServerContexts(default=contexts[0], by_name=by_name, names=tuple(key.names for key in keys), rebuild=assemble)
        )
        return built[0]

    return assemble()


def _at(location: Location, key: str) -> Location:
    return Location(file=location.file, line=location.line, path=f"{location.path}.{key}")
