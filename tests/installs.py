"""
Installing for real, without touching the environment the suite runs in:
the example plugin goes into a temporary directory, and twistgate itself
into a throwaway virtualenv whose dependencies come from the suite's own
(a path entry), so each install takes seconds, not a download.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "twistgate-example-plugin"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def install_example_plugin(target: Path) -> Path:
    """`pip install --target` a copy of the example plugin (so no build/ or egg-info lands in the tree)."""
    source = target.parent / "example-plugin-source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([*PIP, "install", "--no-deps", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def throwaway_venv(path: Path) -> Path:
    """A venv without pip whose site-packages also sees the suite's dependencies; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    suite = [p for p in site.getsitepackages() if p.endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    # A path entry, not a site dir: the suite's own .pth files (its editable
    # twistgate) are not read, so only what is installed here is twistgate.
    Path(own, "_suite_dependencies.pth").write_text("\n".join(suite) + "\n")
    return python


def pip_install(python: Path, arguments: Sequence[str]) -> subprocess.CompletedProcess:
    """pip (the suite's) installing into the venv of `python`, with a normal build; output kept for inspection."""
    return subprocess.run([*PIP[:-1], "--verbose", "--python", str(python), "install", "--no-deps", *arguments],
                          capture_output=True, text=True, timeout=600, cwd=str(ROOT))


def pip_install_copy(source: Path, target: Path) -> Path:
    """
    `pip install --no-deps --target` a copy of the package at `source` (so
    no build/ or egg-info lands in the tree); without build isolation when
    the suite's setuptools can build wheels (no download), else with it.
    """
    from tests.extension_packages import _can_build_without_isolation

    copy = target.parent / f"{source.name}-source"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    command = [*PIP, "install", "--no-deps", "--target", str(target), str(copy)]
    if _can_build_without_isolation():
        command.insert(-3, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return target

