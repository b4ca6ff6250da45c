"""
The HTTP/2 engine against the cases of h2spec's server suite (generic,
hpack, http2), driven as raw frames through a real socket: see
`tests/integration/http2_cases.py` and docs/protocols.md ("Conformance").
Every case must pass; `test_conformance_score` also states the total, as
h2spec's summary line would.
"""

from __future__ import annotations

from typing import Any, Tuple

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.h2_frames import Failed, RawConn
from tests.integration.http2_cases import CASES
from tests.integration.conftest import Servers
from tests.tls.harness import pki  # noqa: F401  (fixture)

H2C = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
"""
TLS = """
listeners:
  - name: public
    endpoint: "tcp:0"
    tls: {certificate: "{cert}", private_key: "{key}"}
"""
GATEWAY = """
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: all, path: "/*", upstream: app}
"""


class Hello(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.content.read()
        return b"hello, h2spec\n"


@pytest.fixture(scope="module", params=["tls", "h2c"])
def gateway(request: Any, pki: Any) -> Any:
    """The gateway on TLS with ALPN h2 (as h2spec -t runs), and on cleartext with h2c."""
    from twisted.internet import reactor

    servers = Servers(reactor)
    site = Site(Hello())
    site.log = lambda request: None
    up = servers.listen(site)
    listener = TLS.replace("{cert}", pki.server.certificate).replace("{key}", pki.server.key) if request.param == "tls" else H2C
    port, _ = servers.gateway_listener(listener + GATEWAY, up=up)
    yield port, request.param == "tls"
    servers.close()


def run_case(gateway: Any, run: Any) -> Tuple[bool, str]:
    port, tls = gateway
    conn = RawConn(port, f"127.0.0.1:{port}", tls=tls)
    try:
        run(conn)
        return True, ""
    except Failed as failure:
        return False, str(failure)
    finally:
        conn.close()


@pytest.mark.parametrize("section,description,run", CASES, ids=[f"{s}: {d}" for s, d, _ in CASES])
@pytest_twisted.inlineCallbacks
def test_case(gateway: Any, section: str, description: str, run: Any) -> Any:
    ok, why = yield deferToThread(run_case, gateway, run)
    assert ok, f"{section} {description}: {why}"


@pytest_twisted.inlineCallbacks
def test_conformance_score(gateway: Any) -> Any:
    """All cases in one run, counted like h2spec's summary ("N tests, N passed")."""
    passed = 0
    failed = []
    for section, description, run in CASES:
        ok, why = yield deferToThread(run_case, gateway, run)
        if ok:
            passed += 1
        else:
            failed.append(f"{section} {description}: {why}")
    listener = "TLS, ALPN h2" if gateway[1] else "cleartext, h2c: true"
    print(f"\nHTTP/2 conformance ({listener}): {len(CASES)} cases, {passed} passed, {len(failed)} failed")
    assert len(CASES) >= 145
    assert not failed, failed
