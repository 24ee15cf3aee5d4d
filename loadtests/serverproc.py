"""Start ``python -m reactor`` as a child process on a free port, and stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def start_reactor(
    *args: str, stderr: int | IO[str] | None = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    """Run ``python -m reactor --port 0 ARGS``; returns the process and its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"https?://([\d.]+):(\d+)/", proc.stdout.readline())
    if not match:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"the server did not start: {err or ''}")
    return proc, (match.group(1), int(match.group(2)))


def stop(proc: subprocess.Popen[str], timeout_s: float = 15.0) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited in time."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
