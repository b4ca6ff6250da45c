"""
The installs the README tells people to run, each into a throwaway venv
(never the suite's own), then `twistd -n twistgate` from it:

* users: ``pip install .`` copies the plugin next to Twisted's own;
* developers: ``pip install -e .`` (what tests/run.sh does) puts the
  repository root on the path, so twistd finds twisted/plugins/ in the tree.

Both builds must print no deprecation warning from setuptools.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.installs import ROOT, pip_install, throwaway_venv
from twistgate.testing_twistd import free_port

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"



def _install(tmp_path: Path, *arguments: str) -> Path:
    python = throwaway_venv(tmp_path / "venv")
    result = pip_install(python, arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for warning in ("Deprecat", "BuildBackendWarning", "SetuptoolsWarning"):
        assert warning not in output, output[output.find(warning) - 500:][:1500]
    return python


def _serve_once(python: Path, tmp_path: Path) -> str:
    """`twistd -n twistgate` with a one-route config; returns the demo's answer through it and twistd's output."""
    gw, demo = free_port(), free_port()
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""
listeners: [{{name: p, endpoint: "tcp:{gw}:interface=127.0.0.1"}}]
demo: {{endpoint: "tcp:{demo}:interface=127.0.0.1"}}
upstreams: {{demo: {{targets: [{{url: "http://127.0.0.1:{demo}"}}]}}}}
routes: [{{name: all, path: "/*", upstream: demo}}]
"""
    )
    proc = subprocess.Popen(
        [str(python), "-c", TWISTD, "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(config)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{gw}/users/1", timeout=5) as reply:
                    return reply.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _plugin_file(python: Path) -> str:
    code = "import twisted.plugins.twistgate_plugin as p, twistgate; print(p.__file__); print(twistgate.__file__)"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout


def _copy_of_the_tree(tmp_path: Path) -> Path:
    """The checkout as `git clone` gives it: a regular build in place would write build/ into the user's tree."""
    copy = tmp_path / "twistgate-source"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".hypothesis", "build", "*.egg-info", "__pycache__", "dropin.cache", "var"))
    return copy


def test_regular_install_serves_with_twistd(tmp_path):
    """README: `pip install .` then `twistd -n twistgate`: the installed copy serves."""
    build = ROOT / "build"
    before = sorted((str(p), p.stat().st_mtime_ns) for p in build.rglob("*")) if build.exists() else None
    python = _install(tmp_path, str(_copy_of_the_tree(tmp_path)))
    after = sorted((str(p), p.stat().st_mtime_ns) for p in build.rglob("*")) if build.exists() else None
    assert after == before  # nothing built into the checkout
    plugin, package = _plugin_file(python).split()
    assert str(tmp_path) in plugin and str(tmp_path) in package  # copies inside the venv, not the tree
    site = Path(plugin).parents[2]  # this venv holds only what twistgate installed: never Twisted's own files
    assert not (site / "twisted" / "__init__.py").exists() and not (site / "twisted" / "plugins" / "__init__.py").exists()
    assert '"id"' in _serve_once(python, tmp_path)


def test_editable_install_serves_the_working_tree_with_twistd(tmp_path):
    """README and tests/run.sh: `pip install -e .`; twistd runs the plugin and the package from this tree."""
    python = _install(tmp_path, "-e", str(ROOT))
    plugin, package = _plugin_file(python).split()
    assert plugin == str(ROOT / "twisted" / "plugins" / "twistgate_plugin.py")
    assert package == str(ROOT / "twistgate" / "__init__.py")
    assert '"id"' in _serve_once(python, tmp_path)


def test_the_readme_gives_these_commands():
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/pip install . && .venv/bin/twistd -n twistgate" in readme
    assert "pip install -e '.[test]'" in readme and "editable_mode" not in readme
    assert "pip install -q --disable-pip-version-check -e '.[test]'" in (ROOT / "tests" / "run.sh").read_text()
