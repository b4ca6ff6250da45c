"""
The ``mtls`` authenticator: the identity of the client certificate that the
TLS listener verified during the handshake (`twistgate.tls.peer_identity`).

The handshake already decided whether the certificate is trusted (it chains
to the listener's ``client_ca`` and is within its validity); this only turns
the verified identity into a consumer, checks the authenticator's allowed
subjects and SANs (403 when the certificate is valid but not allowed), and
prepares the identity headers for the upstream.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twistgate.policies.auth.base import Identity, InvalidCredentials, NotPermitted, challenge, header_value
from twistgate.policies.auth.config import MtlsConfig

PeerIdentity = Callable[[Any], Any]


def default_peer_identity() -> PeerIdentity:
    """The TLS layer's lookup; a gateway without it has no client certificates."""
    try:
        from twistgate.tls import peer_identity
    except ImportError:  # pragma: no cover - TLS listeners not built in
        return lambda request: None
    return peer_identity  # type: ignore[no-any-return]


class MtlsAuthenticator:
    kind = "mtls"
    reads_forwarding = False  # its own credential only (`twistgate.policies.auth.policy`'s sight)

    def __init__(self, config: MtlsConfig, peer_identity: Optional[PeerIdentity] = None) -> None:
        self.config = config
        self.name = config.name
        self.peer_identity = peer_identity or default_peer_identity()
        self.allowed_subjects = frozenset(config.allowed_subjects)
        self.allowed_sans = frozenset(config.allowed_sans)
        self._challenge = challenge("mTLS", realm=config.realm)

    def credentials(self, request: Any) -> Any:
        return self.peer_identity(request)

    def verify(self, request: Any, peer: Any) -> Identity:
        subject = str(peer.subject or "")
        sans = tuple(peer.sans or ())
        if not subject and not sans:
            raise InvalidCredentials("the certificate names nobody")
        identity = Identity(
            consumer=subject or sans[0],
            authenticator=self.name,
            kind=self.kind,
            subject=subject or None,
            sans=sans,
            details={
                "authenticator": self.name,
                "type": self.kind,
                "consumer": subject or sans[0],
                "subject": subject,
                "sans": list(sans),
                "fingerprint_sha256": peer.fingerprint_sha256,
                "issuer": peer.issuer,
            },
            headers=self._headers(subject, sans, peer),
        )
        if self.allowed_subjects and subject not in self.allowed_subjects:
            raise NotPermitted(identity, "certificate subject not allowed")
        if self.allowed_sans and not self.allowed_sans.intersection(sans):
            raise NotPermitted(identity, "certificate SANs not allowed")
        return identity

    def strip(self, request: Any) -> None:
        """A certificate is not a header: nothing to remove."""

    def challenge(self, error: Optional[InvalidCredentials]) -> bytes:
        return self._challenge

    def _headers(self, subject: str, sans: Tuple[str, ...], peer: Any) -> Tuple[Tuple[bytes, bytes], ...]:
        config = self.config
        found: List[Tuple[bytes, bytes]] = []
        for header, value in (
            (config.forward_subject, subject),
            (config.forward_sans, list(sans)),
            (config.forward_fingerprint, peer.fingerprint_sha256),
            (config.forward_issuer, peer.issuer),
            (config.forward_consumer, subject or sans[0]),
        ):
            if header and value:
                encoded = header_value(value)
                if encoded is not None:
                    found.append((header.encode("ascii"), encoded))
        return tuple(found)
