"""
A throwaway PKI generated at test time (never committed): CAs, server and
client certificates, written as PEM files.

    pki = TestPKI.create(tmp_dir)
    pki.server.certificate, pki.server.key      # localhost / 127.0.0.1, via an intermediate
    pki.client.certificate, pki.client.key      # CN=client-1,O=Example, issued by the clients' CA
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


@attrs.define
class Issued:
    """A certificate and its key, in memory and on disk."""

    cert: x509.Certificate
    private_key: Any
    certificate: str  # PEM path (with the chain when there is one)
    key: str  # PEM path

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def _name(common_name: str, organization: Optional[str] = None) -> x509.Name:
    parts = []
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


def _key(kind: str) -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_certs(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class Factory:
    """Issues certificates into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.now = datetime.datetime.now(datetime.timezone.utc)

    def write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        return str(path)

    def ca(self, name: str, common_name: str, issuer: Optional[Issued] = None) -> Issued:
        key = _key("ec")
        subject = _name(common_name, "Twistgate Tests")
        builder = (
            self._builder(subject, key, issuer, self.now - DAY, self.now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        cert = self._sign(builder, key, issuer)
        return Issued(cert, key, self.write(f"{name}.crt", _pem_certs([cert])), self.write(f"{name}.key", _pem_key(key)))

    def leaf(
        self,
        name: str,
        issuer: Issued,
        *,
        common_name: str,
        organization: Optional[str] = None,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        uris: Sequence[str] = (),
        emails: Sequence[str] = (),
        usage: str = "server",
        kind: str = "ec",
        chain: Sequence[Issued] = (),
        not_before: Optional[datetime.datetime] = None,
        not_after: Optional[datetime.datetime] = None,
    ) -> Issued:
        key = _key(kind)
        builder = self._builder(
            _name(common_name, organization),
            key,
            issuer,
            not_before or self.now - DAY,
            not_after or self.now + 30 * DAY,
        ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        names: List[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.RFC822Name(e) for e in emails]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        eku = ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        cert = self._sign(builder, key, issuer)
        pem = _pem_certs([cert, *(c.cert for c in chain)])
        return Issued(cert, key, self.write(f"{name}.crt", pem), self.write(f"{name}.key", _pem_key(key)))

    def _builder(self, subject: x509.Name, key: Any, issuer: Optional[Issued], start: Any, end: Any) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    def _sign(self, builder: Any, key: Any, issuer: Optional[Issued]) -> x509.Certificate:
        signer = issuer.private_key if issuer else key
        return builder.sign(signer, hashes.SHA256())


@attrs.define
class TestPKI:
    """Everything the TLS tests need, generated once per session."""

    directory: Path
    factory: Factory
    root: Issued  # signs the intermediate that signs the server certificates
    intermediate: Issued
    server: Issued  # localhost, gw.test, 127.0.0.1 (RSA), chain: leaf + intermediate
    api: Issued  # api.example and *.wild.example, for SNI
    clients_ca: Issued
    client: Issued  # CN=client-1,O=Example with DNS/URI/email/IP SANs
    client2: Issued  # CN=client-2,O=Example
    other_ca: Issued
    other_client: Issued  # the same subject, from another CA
    expired_client: Issued
    server_as_client: Issued  # issued by clients_ca, but for serverAuth only
    upstream_ca: Issued
    upstream: Issued  # upstream.internal and 127.0.0.1
    gateway_client: Issued  # the gateway's certificate towards upstreams

    @classmethod
    def create(cls, directory: Path) -> "TestPKI":
        f = Factory(directory)
        root = f.ca("root", "Test Root CA")
        intermediate = f.ca("intermediate", "Test Intermediate CA", issuer=root)
        server = f.leaf(
            "server",
            intermediate,
            common_name="localhost",
            dns=["localhost", "gw.test"],
            ips=["127.0.0.1"],
            kind="rsa",
            chain=[intermediate],
        )
        api = f.leaf("api", intermediate, common_name="api.example", dns=["api.example", "*.wild.example"], chain=[intermediate])
        clients_ca = f.ca("clients-ca", "Test Clients CA")
        client = f.leaf(
            "client",
            clients_ca,
            common_name="client-1",
            organization="Example",
            dns=["client-1.example"],
            uris=["spiffe://example.org/client-1"],
            emails=["client-1@example.org"],
            ips=["10.1.2.3"],
            usage="client",
        )
        client2 = f.leaf("client2", clients_ca, common_name="client-2", organization="Example", usage="client")
        other_ca = f.ca("other-ca", "Other CA")
        other_client = f.leaf("other-client", other_ca, common_name="client-1", organization="Example", usage="client")
        expired_client = f.leaf(
            "expired-client",
            clients_ca,
            common_name="client-expired",
            organization="Example",
            usage="client",
            not_before=f.now - 30 * DAY,
            not_after=f.now - DAY,
        )
        server_as_client = f.leaf("server-as-client", clients_ca, common_name="a-server", usage="server")
        upstream_ca = f.ca("upstream-ca", "Upstream CA")
        upstream = f.leaf("upstream", upstream_ca, common_name="upstream.internal", dns=["upstream.internal"], ips=["127.0.0.1"])
        gateway_client = f.leaf("gateway-client", upstream_ca, common_name="twistgate", usage="client")
        return cls(
            directory=directory,
            factory=f,
            root=root,
            intermediate=intermediate,
            server=server,
            api=api,
            clients_ca=clients_ca,
            client=client,
            client2=client2,
            other_ca=other_ca,
            other_client=other_client,
            expired_client=expired_client,
            server_as_client=server_as_client,
            upstream_ca=upstream_ca,
            upstream=upstream,
            gateway_client=gateway_client,
        )
