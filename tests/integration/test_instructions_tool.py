"""The instruction-count harness in loadtests/ runs every path, and every request gets its answer.

Counting needs valgrind and minutes; ``--run PATH COUNT`` runs the same loop
that callgrind counts, without it: that loop must send the request, get the
answer (checked by its last bytes) and stop, for every path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "loadtests" / "instructions.py"


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("path", ["floor", "parse", "full", "full-log", "post", "pipelined", "close"])
def test_every_path_answers_every_request(path: str) -> None:
    # 64: a few pipelined batches of 16, and enough for the others.
    result = _tool("--run", path, "64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}: 64 of 64 requests answered"


def test_an_unknown_path_is_refused() -> None:
    result = _tool("--path", "floor,nosuch")
    assert result.returncode == 2
    assert "unknown path nosuch" in result.stderr


@pytest.mark.parametrize("path", ["full", "post", "pipelined"])
def test_idle_connections_are_opened_and_answered_before_the_measured_one(path: str) -> None:
    result = _tool("--run", path, "64", "--idle", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}: 64 of 64 requests answered"


def test_idle_connections_are_refused_for_a_path_without_a_connection() -> None:
    result = _tool("--run", "floor", "64", "--idle", "10")
    assert result.returncode == 2
    assert "--idle applies to full, full-log, post, pipelined only" in result.stderr
