"""
Third-party extension packages installed for real, outside the project's
environment: ``pip install --no-deps --target TMP`` of the example package
(examples/twistgate-example-extensions) and of a test-only package whose
extensions misbehave (tests/plugins/broken-extensions).  Tests put TMP on
``sys.path`` (in process) or ``PYTHONPATH`` (twistd) only while they run,
so no other test sees their entry points.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "twistgate-example-extensions"
BROKEN = ROOT / "tests" / "plugins" / "broken-extensions"
MODULES = ("twistgate_example_extensions", "twistgate_broken_extensions")


def _can_build_without_isolation() -> bool:
    """setuptools < 70.1 needs the separate ``wheel`` package to build wheels."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return major_minor >= (70, 1) or importlib.util.find_spec("wheel") is not None


def install(target: Path) -> Path:
    """
    pip-install both packages into `target` (never into this environment),
    each built from a copy beside it: a build in place would leave build/ and
    *.egg-info in the checkout.
    """
    copies = []
    for source in (EXAMPLE, BROKEN):
        copy = target.parent / f"{target.name}-{source.name}-source"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        copies.append(str(copy))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check"]
    if _can_build_without_isolation():
        command.append("--no-build-isolation")
    command += ["--target", str(target), *copies]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture(scope="session")
def extension_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory both packages are installed in (with their dist-info), once per session."""
    return install(tmp_path_factory.mktemp("site"))


@pytest.fixture
def on_path(extension_packages: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The packages importable, and their entry points visible, for one test."""
    monkeypatch.syspath_prepend(str(extension_packages))
    importlib.invalidate_caches()
    yield extension_packages
    for name in MODULES:
        sys.modules.pop(name, None)
