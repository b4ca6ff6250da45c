"""bench/ and docs/benchmarks.md stand on their own: nothing outside the repository, no one's machine paths."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "docs" / "benchmarks.md"] + sorted(
    p for p in (ROOT / "bench").rglob("*") if p.is_file() and ".venv" not in p.parts and "__pycache__" not in p.parts
)


def test_no_paths_outside_the_repository():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for forbidden in ("/work/", "shared/tools", "/home/", "/tmp/perf", "/root/", "../shared"):
            assert forbidden not in text, f"{path.relative_to(ROOT)} mentions {forbidden}"


def test_every_bench_file_the_docs_name_exists():
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for name in set(re.findall(r"bench/[\w./-]+\.(?:py|sh|yaml|lua)", text)):
        assert (ROOT / name).exists(), name


def test_the_harness_starts():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "interleaved" in result.stdout


def test_the_30_minute_soak_report_is_there_with_its_command():
    """Issue 14: the soak's report, and how to run it again, in docs/benchmarks.md."""
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = text[text.index("## Soak: 30 minutes") :]
    assert "bench/soak.py --duration 1800" in section
    for line in ("unexpected answers or connection errors | 0", "verdict | PASS"):
        assert line in section, line
