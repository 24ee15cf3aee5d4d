"""A short locust run against a real reactor: ``loadtests/run.py hello``.

run.py starts the server and locust as subprocesses, so this test never
imports locust (whose gevent monkey-patching would leak into the other tests);
it only checks, in a subprocess, that locust can be imported.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "loadtests" / "run.py"
COMMAND = [sys.executable, str(RUN), "hello", "--run-time", "10s", "--users", "10"]
TIMEOUT_S = 60


def _locust_import_error() -> str | None:
    """Why ``import locust`` fails in this interpreter, or None if it works."""
    probe = subprocess.run(
        [sys.executable, "-c", "import locust"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"status {probe.returncode}"


def _field(output: str, name: str) -> str:
    match = re.search(rf"^{name} +(.+)$", output, re.MULTILINE)
    assert match is not None, f"no {name!r} line in the summary:\n{output}"
    return match.group(1)


@pytest.mark.slow
def test_hello_scenario_runs_clean() -> None:
    error = _locust_import_error()
    if error is not None:
        pytest.skip(f"locust is not importable ({error}); install the test extra: pip install -e '.[test]'")

    result = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    output = result.stdout
    assert result.returncode == 0, f"run.py exited {result.returncode}\n{output}\n{result.stderr[-3000:]}"

    assert int(_field(output, "requests")) > 0
    assert int(_field(output, "failures").split()[0]) == 0
    assert _field(output, "result") == "PASS"

    reports = [ROOT / path for path in re.findall(r"^report +(\S+)$", output, re.MULTILINE)]
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv"):
        assert any(path.name.endswith(suffix) for path in reports), f"no {suffix} report in:\n{output}"
    for path in reports:
        assert path.is_file(), f"{path} is named in the summary but does not exist"
        assert path.stat().st_size > 0, f"{path} is empty"
    stats = next(path for path in reports if path.name.endswith("_stats.csv"))
    header = stats.read_text().splitlines()[0]
    assert "Request Count" in header and "95%" in header


@pytest.mark.slow
def test_websocket_scenario_runs_clean() -> None:
    error = _locust_import_error()
    if error is not None:
        pytest.skip(f"locust is not importable ({error}); install the test extra: pip install -e '.[test]'")
    command = [sys.executable, str(RUN), "websocket", "--run-time", "10s", "--users", "20"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    output = result.stdout
    assert result.returncode == 0, f"run.py exited {result.returncode}\n{output}\n{result.stderr[-3000:]}"
    assert int(_field(output, "failures").split()[0]) == 0
    assert _field(output, "result") == "PASS"
    # Every user held a WebSocket: one handshake each, then messages on it.
    handshakes = re.search(r"^WS WS handshake +(\d+) +0 ", output, re.MULTILINE)
    assert handshakes is not None and int(handshakes.group(1)) == 20, output
    assert re.search(r"^WS /ws/echo \(busy\) +[1-9]\d* +0 ", output, re.MULTILINE), output
