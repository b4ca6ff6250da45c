"""
The soak test of bench/soak.py, in its 3-minute form (issue 14; the
schedule scales with the duration): steady load while an
upstream is killed and restarted, Redis restarts and the configuration is
reloaded; no client may see an error, memory and descriptors stay flat.
The 30-minute report is in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_load_with_faults_and_reloads(tmp_path):
    report_file = tmp_path / "soak.json"
    twistd = str(Path(sys.executable).with_name("twistd"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "180", "--reload-every", "30",
         "--clients", "4", "--twistd", twistd, "--json", str(report_file)],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    report = json.loads(report_file.read_text())
    assert report["unexpected"] == {}, (report, result.stderr[-2000:])
    assert report["requests_ok"] > 10_000
    assert all("FAILED" not in event for event in report["events"])
    rss = {k: v for k, v in report.items() if k.startswith("rss")}
    assert report["checks"]["RSS growth under 5 % after warm-up"], rss
    assert report["checks"]["descriptors flat (within 10)"], {k: v for k, v in report.items() if k.startswith("fds")}
    assert result.returncode == 0
