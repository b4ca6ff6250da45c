"""
twistgate's pytest plugin: fixtures for testing twistgate plugins.  pytest
loads it by itself wherever twistgate is installed (entry point group
``pytest11``); nothing to import, nothing in ``conftest.py``.

``make_gateway(yaml, plugins={...})``
    A whole gateway in memory (`twistgate.testing.GatewayHarness`), built
    from YAML as the gateway reads its file, with your plugins (factories
    by name; installed ones are found through their entry points too),
    started (``on_startup``), stopped at the end of the test
    (``on_shutdown``).  ``gw.request(...)``, ``gw.json(...)``,
    ``gw.advance(seconds)``, ``gw.reload(yaml)``; the upstream is an
    `EchoUpstream` (``gw.upstream.requests``).
``twistd_gateway(yaml)``
    The real ``twistd -n twistgate`` in a subprocess, on a free port, in
    front of a real upstream (`twistgate.testing_twistd`); stopped at the
    end of the test.

The same YAML serves both: ``listeners`` and ``upstreams`` may be left out
(one upstream, ``app``).

    def test_over_quota_is_429(make_gateway):
        gw = make_gateway(QUOTA_YAML, plugins={"tenant_quota": TenantQuota})
        assert gw.get("/x", headers={"X-Tenant": "acme"}).code == 200
        assert gw.get("/x", headers={"X-Tenant": "acme"}).code == 429

No fixture imports the reactor: in-memory tests run without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, List, Mapping, Optional

import pytest

__all__ = ["make_gateway", "twistd_gateway"]


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., Any]]:
    """
    ``make_gateway(yaml, *, plugins=None, upstreams=None, environ=None,
    clock=None, agents=None, start=True) -> GatewayHarness``: a gateway in
    memory, its plugins started; ``on_shutdown`` runs when the test ends.
    """
    from twistgate.testing import GatewayHarness, result_of

    made: List[GatewayHarness] = []

    def make(
        yaml: str,
        *,
        plugins: Optional[Mapping[str, Any]] = None,
        upstreams: Any = None,
        environ: Optional[Mapping[str, str]] = None,
        start: bool = True,
        **kwargs: Any,
    ) -> GatewayHarness:
        gw = GatewayHarness.from_yaml(yaml, plugins=plugins, environ=environ, upstreams=upstreams, **kwargs)
        made.append(gw)
        if start:
            result_of(gw.start())
        return gw

    yield make
    for gw in reversed(made):
        if gw.started:
            result_of(gw.stop())


@pytest.fixture
def twistd_gateway(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """
    ``twistd_gateway(yaml, *, env=None, timeout=30) -> RunningGateway``:
    ``twistd -n twistgate`` serving `yaml` on a free port in front of a
    real `EchoServer` (``gw.upstream``); ``gw.get(path, headers)``,
    ``gw.reload(yaml=None)``, ``gw.stop()``, ``gw.output``.  Stopped (and
    the upstream closed) when the test ends.
    """
    from twistgate.testing_twistd import EchoServer, RunningGateway

    running: List[RunningGateway] = []
    upstreams: List[EchoServer] = []

    def run(yaml: str, *, env: Optional[Mapping[str, str]] = None, timeout: float = 30.0, wait: bool = True) -> RunningGateway:
        upstream = EchoServer()
        upstreams.append(upstream)
        workdir = tmp_path / f"twistd-{len(running)}"
        workdir.mkdir()
        gw = RunningGateway(yaml, workdir, upstream=upstream, env=env, wait=False)
        running.append(gw)  # stopped at the end even if it does not start
        if wait:
            gw.wait_for("twistgate serving", timeout)
        return gw

    yield run
    for gw in running:
        gw.stop()
    for upstream in upstreams:
        upstream.close()
