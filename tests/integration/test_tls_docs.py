"""
docs/security.md stays true: its step-by-step openssl commands really work,
and the listener it then configures admits the client certificate they made
and refuses a client without one.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
import yaml
from twisted.internet.threads import deferToThread

from tests.tls.harness import handshake_fails, https_get, pki, tls  # noqa: F401  (fixtures)

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def guide():
    text = DOC.read_text(encoding="utf-8").split("## mTLS with a private CA, step by step", 1)[1]
    shell = re.findall(r"```sh\n(.*?)```", text, flags=re.S)[0]
    config = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)[0]
    return shell, yaml.safe_load(config)


def _client(root: Path, certificate=None, key=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(root / "server-ca.crt"))
    if certificate:
        context.load_cert_chain(str(root / certificate), str(root / key))
    return context


@pytest_twisted.inlineCallbacks
def test_the_step_by_step_guide_works(tls, tmp_path, monkeypatch):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required (tests/run.sh installs it)")
    shell, config = guide()
    result = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "client-1.crt: OK" in result.stdout and "server.crt: OK" in result.stdout
    monkeypatch.chdir(tmp_path)  # the guide's paths are relative to where the gateway runs
    block = yaml.safe_dump(config["listeners"][0]["tls"])
    up, upstream = tls.upstream()
    gw = tls.gateway(block, up=up)
    root = tmp_path / "etc" / "tls"
    status, _, _ = yield deferToThread(https_get, gw, _client(root, "client-1.crt", "client-1.key"), "/api/users/1")
    assert status == 200 and upstream.requests[0].uri == b"/api/users/1"
    yield deferToThread(handshake_fails, gw, _client(root))
