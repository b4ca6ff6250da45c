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

This package's modules, one concern each (import from here; the names below
are the same objects):

* `twistgate.tls.identity`: the verified client identity, and the TLS
  connection that keeps it;
* `twistgate.tls.pem`: reading certificates, keys and CA bundles (listeners
  and upstream TLS);
* `twistgate.tls.certificate_context`: one certificate's OpenSSL context
  (versions, ciphers, groups, session resumption, client verification, ALPN);
* `twistgate.tls.server_contexts`: a listener's contexts, chosen by SNI and
  swapped on reload.
"""

from __future__ import annotations

from twistgate.tls.certificate_context import (
    CLIENT_VERIFY_MODES,
    H2_ENABLED,
    MIN_VERSIONS,
    TLS12_CIPHERS,
    unsupported_groups,
)
from twistgate.tls.identity import (
    TLS_CONNECTION,
    ClientIdentity,
    PeerTLSFactory,
    PeerTLSProtocol,
    identity_of,
    peer_identity,
    tls_connection,
)
from twistgate.tls.pem import (
    CertifiedKey,
    TLSFileError,
    read_ca_bundle,
    read_certificates,
    read_certified_key,
    read_private_key,
)
from twistgate.tls.server_contexts import ServerContexts, ServerTLS, build_server_contexts

#: The plugin-facing API.  The other names stay importable from here, as
#: they were when this package was one module.
__all__ = ["ClientIdentity", "peer_identity", "identity_of", "TLS_CONNECTION"]
