"""The TLS benchmark in loadtests/ runs, bounded, and reports: 200 idle TLS connections."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.tls_bench import markdown

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("openssl") is None, reason="needs wrk and openssl"
)
def test_tls_bench_quick_run_reports_throughput_cpu_and_idle_memory(tmp_path: Path) -> None:
    out = tmp_path / "tls.json"
    result = subprocess.run(
        [
            sys.executable,
            "loadtests/tls_bench.py",
            "--duration",
            "1",
            "--connections",
            "8",
            "--idle",
            "200",
            "--servers",
            "reactor",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"reactor +keep-alive +\d+", result.stdout), result.stdout
    assert re.search(r"reactor +new-connection +\d+", result.stdout), result.stdout
    idle = re.search(r"200 idle TLS connections: RSS \d+ -> \d+ KiB, ([\d.]+) KiB each", result.stdout)
    assert idle, result.stdout
    data = json.loads(out.read_text())
    figures = data["results"]["reactor"]
    assert figures["idle"]["server_alive"]
    assert 0 < figures["idle"]["kib_per_connection"] < 64  # loose: the benchmark measures the real figure
    for workload in ("keep-alive", "new-connection"):
        assert figures[workload]["requests"] > 0
        assert figures[workload]["errors"] == 0
    # The section docs/benchmarks.md draws from such a file (loadtests.bench.page).
    section = "\n".join(markdown(data))
    assert section.startswith("## TLS\n")
    assert re.search(r"^\| reactor \| keep-alive \| [\d,]+ \|", section, re.MULTILINE), section
    assert re.search(r"^\| reactor \| 200 \| [\d,]+ -> [\d,]+ \| [\d.]+ \|$", section, re.MULTILINE), section
