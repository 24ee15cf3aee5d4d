"""reactor, the pure-Python floor and uvicorn-uvloop under wrk: how far any pure-Python server can go.

    python -m loadtests.floor_bench                 # 5 rounds of 5 s per workload
    python -m loadtests.floor_bench --rounds 3 --duration 3

Issue 15's goals are ratios to uvicorn-uvloop (uvloop's event loop and
httptools' parser, both C): a keep-alive request at half its server CPU, and
``Connection: close`` at 2.5 times its requests/s. This runs the same wrk
workloads as ``loadtests.bench`` (``keepalive`` and ``close``, 50 connections)
on three servers, each pinned to core 0 and wrk to core 1, taking turns for
``--rounds`` rounds: reactor (``loadtests/hello.py``), uvicorn-uvloop
(``loadtests/peers/asgi_hello.py``) and the floor
(``loadtests/peers/floor_hello.py``: a bare ``selectors`` loop that finds the
end of each head and sends a fixed answer: the least Python a server must run
for a request). For each: requests/s and the server's CPU a request (user
and system, from ``/proc``), medians of the rounds; then the ratios the goals
are about, for reactor and for the floor. The floor bounds the user time a
request needs in pure Python; with ``Connection: close`` the limit is wrk, which
makes a connection per request on its one core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.bench import LOADTESTS, ROOT, progress
from loadtests.bench.report import run_about
from loadtests.bench.rounds import measure
from loadtests.bench.servers import HOST, SERVERS, Env, ServerDef, ensure_venv, running
from loadtests.bench.wrk import WORKLOADS


def _floor_command(env: Env) -> list[str]:
    return [env.python, "-m", "loadtests.peers.floor_hello", "--host", HOST, "--port", "0"]


FLOOR = ServerDef(
    "floor", "a bare selectors loop, loadtests/peers/floor_hello.py", _floor_command, needs_venv=False
)
PEER = "uvicorn-uvloop"
CHOSEN = ("reactor", "floor", PEER)
MEASURED = ("keepalive", "close")


#: What is kept of each of the bench's measurements (loadtests/bench/rounds.py).
FIELDS = (
    "requests_per_s",
    "cpu_us_per_request",
    "user_us_per_request",
    "system_us_per_request",
    "wrk_cpu_percent",
)


def summary(medians: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The goals' ratios, for reactor and for the floor, from the medians."""
    peer = medians[PEER]
    lines = []
    for name in ("reactor", "floor"):
        keep, close = medians[name]["keepalive"], medians[name]["close"]
        cpu = keep["cpu_us_per_request"] / peer["keepalive"]["cpu_us_per_request"]
        rate = close["requests_per_s"] / peer["close"]["requests_per_s"]
        bound = 1e6 / close["cpu_us_per_request"] / peer["close"]["requests_per_s"]
        lines += [
            f"{name}: keep-alive CPU a request {cpu:.2f}x {PEER}'s (goal: 0.50x or less)",
            f"{name}: close requests/s {rate:.2f}x {PEER}'s (goal: 2.50x or more); "
            f"at a saturated core (1e6 / CPU a request) {bound:.2f}x",
        ]
    return lines


def markdown(data: dict[str, Any]) -> list[str]:
    """The floor's part of docs/benchmarks.md's "What stands in the way", from the JSON of ``--out``."""
    medians = data["medians"]
    lines = [
        "### The pure-Python floor under wrk",
        "",
        "`loadtests/floor_bench.py` runs reactor, uvicorn-uvloop and the floor "
        "(`loadtests/peers/floor_hello.py`, a bare `selectors` loop that finds the end of each head and "
        "sends a fixed answer: the least Python any server must run for a request) under the same wrk "
        f"workloads, taking turns: `{' '.join(data['command'])}`, {data['date']}, reactor at "
        f"`{data['git']}`. Medians of {data['rounds']} rounds:",
        "",
        "| server | workload | req/s | CPU µs a request | user | system |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, by in medians.items():
        for workload, m in by.items():
            lines.append(
                f"| {name} | {workload} | {m['requests_per_s']:,.0f} | {m['cpu_us_per_request']:.1f} | "
                f"{m['user_us_per_request']:.1f} | {m['system_us_per_request']:.1f} |"
            )
    return [
        *lines,
        "",
        *(f"- {line}" for line in data["summary"]),
        "",
        "The floor bounds the user time a request needs in pure Python, not the kernel's: reactor "
        "spends less system time on a `Connection: close` request than the floor does. With "
        "`Connection: close`, wrk on its one core is the limit for both: it makes a connection per "
        "request, and it used 98% of its core against the floor (4.9 s of CPU in 5 s, "
        "`/usr/bin/time taskset -c 1 wrk -t1 -c50 -d5s -H 'Connection: close'`), so the requests/s "
        "this machine can show for any server stay near 20,000, and the rate at a saturated core "
        "(1e6 / CPU a request) is the figure that compares the servers.",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="the servers in turn this many times (medians)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--venv", type=Path, default=LOADTESTS / ".venv-peers", help="the peers' virtualenv")
    parser.add_argument("--out", type=Path, help="write every round's figures and the medians as JSON here")
    args = parser.parse_args(argv)
    servers = {**SERVERS, "floor": FLOOR}
    peer_python, failures = ensure_venv(args.venv, [SERVERS[PEER]], charts=False)
    if failures:
        raise SystemExit(f"{PEER} could not be installed: {failures[PEER]}")
    env = Env(python=sys.executable, peer_python=str(peer_python), src=ROOT, origin=ROOT)
    log_dir = Path(tempfile.mkdtemp(prefix="floor-bench-"))
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {w: [] for w in MEASURED} for n in CHOSEN}
    for number in range(max(1, args.rounds)):
        for name in CHOSEN:
            with running(servers[name], env, log_dir) as process:
                process.wait_ready()
                for workload in MEASURED:
                    # The bench's own measurement: a 1 s warm-up, then the run.
                    measured = measure(process, WORKLOADS[workload], args.duration, number + 1, {}, 0.0)
                    figures = {field: getattr(measured, field) for field in FIELDS}
                    runs[name][workload].append(figures)
                    progress(f"round {number + 1}: {name} {workload}: {figures}")
    medians = {
        name: {w: {k: statistics.median(run[k] for run in got) for k in got[0]} for w, got in by.items()}
        for name, by in runs.items()
    }
    for name, by in medians.items():
        for workload, m in by.items():
            cpu = f"{m['user_us_per_request']:.1f} user + {m['system_us_per_request']:.1f} system"
            print(
                f"{name:15} {workload:9} {m['requests_per_s']:8,.0f} req/s, "
                f"CPU {m['cpu_us_per_request']:5.1f} µs a request ({cpu})"
            )
    lines = summary(medians)
    print("\n".join(lines))
    if args.out is not None:
        about = {**run_about("loadtests.floor_bench", argv), "rounds": max(1, args.rounds)}
        report = {**about, "medians": medians, "runs": runs, "summary": lines}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
