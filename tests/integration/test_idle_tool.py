"""The idle-connection measurement in loadtests/ runs, bounded, and reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_idle_quick_run_reports_memory_latency_and_sse() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "loadtests/idle.py",
            "--connections",
            "1000",
            "--sse",
            "300",
            "--sse-seconds",
            "2.5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    idle = re.search(r"1000 idle connections: RSS \d+ -> \d+ KiB, ([\d.]+) KiB each", result.stdout)
    assert idle, result.stdout
    assert float(idle.group(1)) < 4.0  # a loose bound: the benchmark measures the real figure
    sse = re.search(r"300 SSE subscribers for [\d.]+ s: events per subscriber (\d+)\.\.(\d+)", result.stdout)
    assert sse, result.stdout
    assert int(sse.group(1)) >= 1  # every subscriber got the clock's events
