"""A short coverage-guided fuzzing run of the WebSocket codec, as a test.

``fuzz_websocket.py`` is the harness (its docstring says what it checks); this
runs it for ``RUN_S`` seconds in a child process, seeded with the frame cases
of the unit tests, and fails on any finding: an exception other than
WebSocketError, a split that changes the outcome, an input over the time
budget, or one libFuzzer had to stop (``-timeout``). ``docs/websockets.md``
has the longer run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import atheris  # noqa: F401
except ImportError:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    pytest.skip(
        f"atheris cannot be imported (it has no wheel for Python {version}?)", allow_module_level=True
    )

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HARNESS = HERE / "fuzz_websocket.py"
RUN_S = 20
#: Seconds libFuzzer lets one input run before it stops it and saves it.
INPUT_TIMEOUT_S = 5


def test_a_short_fuzzing_run_of_the_websocket_codec_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, str(HARNESS), "--write-seeds", str(corpus)], cwd=ROOT, check=True, timeout=60
    )
    assert len(list(corpus.iterdir())) > 50
    artifacts = tmp_path / "findings"
    artifacts.mkdir()
    command = [
        sys.executable,
        str(HARNESS),
        f"-max_total_time={RUN_S}",
        f"-timeout={INPUT_TIMEOUT_S}",
        "-rss_limit_mb=2048",
        "-max_len=8192",
        f"-dict={HERE / 'ws.dict'}",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_S + 60, check=False
    )
    findings = sorted(path.name for path in artifacts.iterdir())
    log = "\n".join(result.stderr.splitlines()[-40:])
    assert result.returncode == 0 and not findings, (
        f"the fuzzer stopped with status {result.returncode} and saved {findings}; "
        f"replay one with: python tests/fuzz/fuzz_websocket.py FILE\n{log}"
    )
    assert "Done" in result.stderr, log  # it ran to the end of its time, not to an early exit
