"""
Issue 17 item 12: what `twistgate plugin new NAME` writes passes its own
tests out of the box: generated into a temporary directory, pip-installed
there (never into the suite's environment), its tests run with the shipped
fixtures, in memory and under twistd through its entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.installs import pip_install_copy
from twistgate.cli import main


def test_a_new_plugin_passes_its_own_tests(tmp_path):
    assert main(["plugin", "new", "request_stamp", "--dir", str(tmp_path)]) == 0
    package = tmp_path / "twistgate-request-stamp"
    site = pip_install_copy(package, tmp_path / "site")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "twistgate.cli", "plugins"], env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "request_stamp  (entry point twistgate_request_stamp:RequestStamp of twistgate-request-stamp 0.1.0)" in listed.stdout
    assert 'header (string, default "X-Request-Stamp"): the response header to set' in listed.stdout
