"""twistgate's own code raises no DeprecationWarning, from its imports on (TLS at run time: tests/integration/test_tls_upstream.py)."""

from __future__ import annotations

import subprocess
import sys

IMPORT_EVERYTHING = """
import importlib, pkgutil
import twistgate
names = [m.name for m in pkgutil.walk_packages(twistgate.__path__, "twistgate.")]
for name in names:
    importlib.import_module(name)
import twisted.plugins.twistgate_plugin
print(len(names))
"""


def test_every_module_imports_with_deprecation_warnings_as_errors():
    """A fresh interpreter, so that no module was imported (and warned) before."""
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", IMPORT_EVERYTHING],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 100  # every module was walked
