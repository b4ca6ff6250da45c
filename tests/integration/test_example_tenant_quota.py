"""
The reference plugin, examples/twistgate-tenant-quota (issue 17, "done
when"): pip-installed into a temporary directory, its own tests run with
twistgate's shipped fixtures (in memory and under the real twistd, through
its entry point) and pass; they stay under 40 lines; docs/plugins.md holds
the plugin as it is; its declared options are checked by `twistgate check`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.installs import ROOT, pip_install_copy

EXAMPLE = ROOT / "examples" / "twistgate-tenant-quota"


@pytest.fixture(scope="module")
def quota_site(tmp_path_factory) -> Path:
    return pip_install_copy(EXAMPLE, tmp_path_factory.mktemp("tenant-quota") / "site")


def test_its_own_tests_pass_with_the_shipped_fixtures(quota_site, tmp_path):
    tests = shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(quota_site)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_its_tests_are_under_40_lines():
    assert len((EXAMPLE / "tests" / "test_tenant_quota.py").read_text().splitlines()) < 40


def test_the_guide_holds_the_plugin_as_it_is():
    """docs/plugins.md shows the whole module (from the imports on), so the plugin can be written from the guide alone."""
    source = (EXAMPLE / "twistgate_tenant_quota.py").read_text()
    code = source[source.index("import dataclasses"):]
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), flags=re.S)
    assert any(block.endswith(code) for block in blocks)


def test_twistgate_check_reads_its_declared_options(quota_site, tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text(
        'listeners: [{name: p, endpoint: "tcp:0"}]\n'
        'upstreams: {app: {targets: [{url: "http://127.0.0.1:1"}]}}\n'
        'routes: [{name: api, path: "/*", upstream: app}]\n'
        "plugins:\n  tenant_quota: {daily_limt: 5, on_store_error: maybe}\n"
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "twistgate"), "check", str(config)],
        env={**os.environ, "PYTHONPATH": str(quota_site)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"{config}:5: plugins.tenant_quota.daily_limt: unknown key 'daily_limt'; did you mean 'daily_limit'?" in done.stderr
    assert "plugins.tenant_quota.on_store_error: unknown value 'maybe'; expected one of allow, deny" in done.stderr
