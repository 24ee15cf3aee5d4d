"""The slow-client tool in loadtests/ runs, bounded, and every scenario passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_slowclients_quick_run_passes() -> None:
    result = subprocess.run(
        [sys.executable, "loadtests/slowclients.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for scenario in ("slowloris", "slow-reader", "half-open", "idle"):
        assert f"PASS {scenario}" in result.stdout
