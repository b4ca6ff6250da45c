"""
TLS towards upstreams: ``upstreams.<name>.tls``.

Verification is on by default, against the configured ``ca`` or the
system's trust store, with the host name checked by service_identity (the
target's host, or ``server_name``, which is also sent as SNI).  A client
certificate and key make it mTLS.  `policy_for` turns an `UpstreamConfig`
into the ``contextFactory`` of the upstream's `Agent`; the files are read
once, there, and each host's TLS settings are built once.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import attrs
from OpenSSL import SSL, crypto
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from twistgate.config._node import Node
from twistgate.config.model import ConfigError, ConfigIssue, Location, UpstreamConfig
from twistgate.tls.pem import TLSFileError, read_certificates, read_certified_key

__all__ = ["UpstreamTLSConfig", "parse_upstream_tls", "policy_for", "UpstreamTLSPolicy"]

_log = Logger()

UPSTREAM_TLS_KEYS = ("ca", "certificate", "private_key", "server_name", "verify")


@attrs.frozen(kw_only=True)
class UpstreamTLSConfig:
    """How the gateway connects to an upstream's ``https://`` targets."""

    ca: Optional[str] = None  # PEM bundle; None = the system's trust store
    certificate: Optional[str] = None  # PEM, chain allowed: the gateway's client certificate
    private_key: Optional[str] = attrs.field(default=None, repr=False)
    server_name: Optional[str] = None  # SNI and the name verified; None = the target's host
    verify: bool = True
    location: Location = attrs.field(default=Location(), eq=False)


def parse_upstream_tls(node: Node) -> Optional[UpstreamTLSConfig]:
    fields = node.mapping(UPSTREAM_TLS_KEYS)
    if fields is None:
        return None
    ca = fields.read("ca", Node.string, None)
    certificate = fields.read("certificate", Node.string, None)
    private_key = fields.read("private_key", Node.string, None)
    server_name = fields.read("server_name", Node.string, None)
    verify = fields.read("verify", Node.boolean, True)
    ok = True
    for present, missing in (("certificate", "private_key"), ("private_key", "certificate")):
        if present in fields and missing not in fields:
            fields[present].issue(f"'{present}' needs '{missing}' too (the client certificate and its key)")
            ok = False
    if verify is False and "ca" in fields:
        fields["verify"].issue("verify: false ignores 'ca'; remove one of them")
        ok = False
    if server_name is not None and (server_name.strip() != server_name or "/" in server_name or ":" in server_name):
        fields["server_name"].issue(f"expected a host name like users.internal, got {server_name!r}")
        ok = False
    if not ok:
        return None
    return UpstreamTLSConfig(
        ca=ca,
        certificate=certificate,
        private_key=private_key,
        server_name=server_name.lower().rstrip(".") if server_name else None,
        verify=verify,
        location=node.location(at_key=True),
    )


def policy_for(config: UpstreamConfig) -> IPolicyForHTTPS:
    """
    The TLS policy of `config`'s https targets (a verifying default when it
    has no ``tls`` section); a file that cannot be used is a `ConfigError`.
    """
    tls = config.policies.get("tls")
    if tls is None:
        tls = UpstreamTLSConfig(location=_location(config))
    # protocol: h2 offers only h2 over ALPN (twistgate.engine.http2_client).
    alpn = [b"h2"] if getattr(config, "protocol", "http1") == "h2" else None
    return UpstreamTLSPolicy(tls, upstream=config.name, alpn=alpn)


def _location(config: UpstreamConfig) -> Location:
    return attrs.evolve(config.location, path=f"{config.location.path or 'upstreams.' + config.name}.tls")


@implementer(IPolicyForHTTPS)
class UpstreamTLSPolicy:
    """Builds, once per host name, the TLS settings of connections to that host."""

    def __init__(self, config: UpstreamTLSConfig, *, upstream: str = "", alpn: Optional[List[bytes]] = None) -> None:
        """:param alpn: the protocols offered over ALPN (``[b"h2"]`` for HTTP/2 upstreams); None: no ALPN."""
        self.config = config
        self.server_name = config.server_name
        self.alpn = alpn
        self._creators: Dict[str, Any] = {}
        self._make = self._loader(config, upstream)

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        name = self.server_name or hostname.decode("ascii").lower()
        creator = self._creators.get(name)
        if creator is None:
            creator = self._creators[name] = self._make(name)
        return creator

    def _loader(self, config: UpstreamTLSConfig, upstream: str) -> Callable[[str], Any]:
        issues: List[ConfigIssue] = []

        def problem(error: TLSFileError) -> None:
            at = config.location
            issues.append(ConfigIssue(location=attrs.evolve(at, path=f"{at.path}.{error.key}"), message=str(error)))

        trust: Any = None
        if config.ca is not None:
            try:
                # Trust anchors go into OpenSSL's X509Store, which takes
                # pyOpenSSL's X509 (not deprecated there).
                trust = trustRootFromCertificates(
                    [Certificate(crypto.X509.from_cryptography(c)) for c in read_certificates(config.ca, "CA bundle", "ca")]
                )
            except TLSFileError as e:
                problem(e)
        # The client certificate, its chain and key stay cryptography objects:
        # CertificateOptions hands them to pyOpenSSL's Context, which has
        # deprecated its own X509 and PKey there.
        client: Dict[str, Any] = {}
        if config.certificate is not None and config.private_key is not None:
            try:
                pair = read_certified_key(config.certificate, config.private_key)
                client = {"certificate": pair.chain[0], "privateKey": pair.private_key}
                if len(pair.chain) > 1:
                    client["extraCertChain"] = list(pair.chain[1:])
            except TLSFileError as e:
                problem(e)
        if issues:
            raise ConfigError(issues)
        if not config.verify:
            _log.warn(
                "upstream {upstream}: TLS certificates are NOT verified (tls.verify: false); "
                "anyone on the path can impersonate it",
                upstream=upstream,
            )
            options = CertificateOptions(raiseMinimumTo=TLSVersion.TLSv1_2, acceptableProtocols=self.alpn, **client)
            return lambda name: _UnverifiedClientTLS(options, name)
        root = trust if trust is not None else platformTrust()
        return lambda name: optionsForClientTLS(
            name,
            trustRoot=root,
            acceptableProtocols=self.alpn,
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2, **client},
        )


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedClientTLS:
    """``verify: false``: encryption without authentication, SNI still sent."""

    def __init__(self, options: CertificateOptions, server_name: str) -> None:
        self.options = options
        ip = isIPAddress(server_name) or isIPv6Address(server_name)
        self.sni = None if ip else server_name.encode("idna")

    def clientConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        # Built here, not by CertificateOptions.clientConnectionForTLS, which
        # Twisted before 26 does not have (Python 3.9, Debian's PyPy).
        connection = SSL.Connection(self.options.getContext(), None)
        connection.set_app_data(protocol)
        if self.sni is not None:
            connection.set_tlsext_host_name(self.sni)
        return connection


def uses_tls(config: UpstreamConfig) -> bool:
    """Whether `config` has https targets or a ``tls`` section (its TLS policy is then built)."""
    return "tls" in config.policies or any(t.scheme == "https" for t in config.targets)
