"""
Reading the PEM files a TLS configuration names: certificate chains, private
keys (unencrypted: the file's permissions protect them) and CA bundles.

Used by client-facing listeners (`twistgate.tls.server_contexts`) and by
upstream TLS (`twistgate.upstream.tls`) alike.  A file that cannot be used
is a `TLSFileError` naming the config key it came from, so the caller can
report it at the right place in the configuration.
"""

from __future__ import annotations

from typing import Any, Tuple

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "CertifiedKey",
    "TLSFileError",
    "read_ca_bundle",
    "read_certificates",
    "read_certified_key",
    "read_private_key",
]


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
