"""The benchmark package in loadtests/bench/: the port a server got, and a page re-made from its JSON.

The benchmark itself needs wrk, the peers and minutes; these check the two
things every run relies on: that the port of a server which bound port 0 is
read back from /proc, and that docs/benchmarks.md is what its results file
makes of it (so it is never edited by hand out of step with the figures).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.bench.measurement import listening_ports, wait_listening
from loadtests.bench.page import CHARTS, render_docs, sections

ROOT = Path(__file__).resolve().parents[2]

# Binds port 0, prints the port it got, listens until killed.
LISTENER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
time.sleep(60)
"""


def test_the_port_of_a_server_that_bound_port_0_is_read_from_proc() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        printed = int(proc.stdout.readline())
        assert wait_listening(proc.pid, lambda: proc.poll() is not None, timeout_s=10.0) == printed
        assert listening_ports(os.getpid()) == set()  # this process listens on nothing
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_process_that_exits_without_listening_is_reported() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    with pytest.raises(RuntimeError, match="exited before it listened"):
        wait_listening(proc.pid, lambda: proc.poll() is not None, timeout_s=10.0)


def test_the_benchmarks_page_is_what_its_results_file_makes() -> None:
    docs = ROOT / "docs"
    report = json.loads((docs / "benchmarks.json").read_text())
    page = render_docs(report, docs / "benchmarks.json", CHARTS, *sections(docs))
    assert page == (docs / "benchmarks.md").read_text(), (
        "docs/benchmarks.md differs from what docs/benchmarks.json makes: "
        "re-make it with python3 -m loadtests.bench --report docs/benchmarks.json"
    )


def test_the_workloads_the_benchmark_is_run_with_are_known() -> None:
    # The command docs/benchmarks.md and the lead run: post is the 1 KiB POST,
    # pipelined the 16-deep pipeline, each a wrk run with its own Lua script.
    from loadtests.bench.__main__ import parse_args
    from loadtests.bench.wrk import PIPELINE_DEPTH, WORKLOADS

    workloads = "keepalive,close,post,pipelined"
    args = parse_args(["--servers", "reactor,uvicorn-uvloop", "--workloads", workloads])
    assert args.workloads == ["keepalive", "close", "pipelined", "post-1k"]
    post, pipelined = WORKLOADS["post-1k"], WORKLOADS["pipelined"]
    assert post.lua is not None and 'string.rep("x", 1024)' in post.lua and post.expect_body == b"x" * 1024
    assert pipelined.lua is not None and f"for i = 1, {PIPELINE_DEPTH} do" in pipelined.lua
    assert PIPELINE_DEPTH == 16
    with pytest.raises(SystemExit):
        parse_args(["--workloads", "keepalive,nosuch"])


def test_paired_runs_are_divided_pair_by_pair_and_summed_up_by_median_and_range() -> None:
    from loadtests.wsgi_bench import paired_line, paired_ratios

    def run(p99: float, rps: float) -> dict[str, float]:
        return {
            "p99_ms": p99,
            "p50_ms": 4.0,
            "requests_per_s": rps,
            "cpu_us_per_request": 80.0,
            "user_us_per_request": 60.0,
            "system_us_per_request": 20.0,
        }

    loaded = [run(12.0, 900.0), run(6.0, 1000.0), run(9.0, 1100.0)]
    bare = [run(6.0, 1000.0), run(6.0, 1000.0), run(10.0, 1000.0)]
    ratios = paired_ratios(loaded, bare)
    assert ratios["p99_ms"] == {"median": 1.0, "min": 0.9, "max": 2.0}
    assert ratios["requests_per_s"] == {"median": 1.0, "min": 0.9, "max": 1.1}
    assert ratios["p50_ms"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert paired_line(ratios).startswith(
        "p99 1.00x (0.90-2.00), p50 1.00x (1.00-1.00), req/s 1.00x (0.90-1.10)"
    )


def test_paired_runs_need_idle_connections_to_compare() -> None:
    from loadtests.wsgi_bench import main

    with pytest.raises(SystemExit) as exited:
        main(["--paired", "4", "--idle", "0"])
    assert exited.value.code == 2
