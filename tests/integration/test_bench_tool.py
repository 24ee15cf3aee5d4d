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
from loadtests.bench.page import CHARTS, INSTRUCTIONS_JSON, TLS_JSON, render_docs

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
    instructions_path = docs / INSTRUCTIONS_JSON
    instructions = json.loads(instructions_path.read_text()) if instructions_path.exists() else None
    tls_path = docs / TLS_JSON
    tls = json.loads(tls_path.read_text()) if tls_path.exists() else None
    page = render_docs(report, docs / "benchmarks.json", CHARTS, instructions, tls)
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
