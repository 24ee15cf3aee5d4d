#!/usr/bin/env python3
"""CPU per request with one process, ``--workers 1`` and ``--workers 2``, measured with wrk.

Usage (from the repository root)::

    python3 loadtests/workers.py                    # 3 rounds of 10 s per mode, interleaved
    python3 loadtests/workers.py --rounds 1 --duration 2    # a smoke run
    python3 loadtests/workers.py --close            # Connection: close: one accept per request

On a two-core machine wrk needs one core, so the server and all its processes
are pinned to core 0 (``taskset -c 0``; the workers inherit it) and wrk to
core 1. More workers on one core cannot serve more requests/s; the point is
that they must not cost more CPU per request: the shared listening socket
wakes every idle worker for each new connection (see ``reactor/master.py``).

For each run: start ``python -m reactor --app loadtests.hello:app`` in the
mode, warm it up with wrk for 2 s, then read utime+stime of every worker
(``/proc/PID/stat``, clock ticks) and of the master, run wrk for
``--duration`` seconds, and read them again. CPU per request is the workers'
CPU time over the requests wrk completed; the master's is shown apart.
Modes alternate within each round (the order reversed every other round) so
that a drift of the machine favours none. "two processes" is a control:
two independent single-process servers on two ports, each loaded by its own
wrk with half the connections; what it costs over one process is what two
processes sharing one core cost, with no master and no shared socket.
Medians over the rounds are printed, as a Markdown table, with the
commands. Context switches per request (``/proc/PID/status``, voluntary and
not) show how often the serving processes gave up the core.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
#: Each mode: how many servers, and their flags. "two processes" is the
#: control: two independent servers on two ports (no shared socket, no
#: master), each with half of wrk's connections.
MODES: dict[str, tuple[int, list[str]]] = {
    "one process": (1, []),
    "two processes": (2, []),
    "--workers 1": (1, ["--workers", "1"]),
    "--workers 2": (1, ["--workers", "2"]),
}
WARMUP_S = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid``, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def switches(pid: int) -> int:
    """Context switches of ``pid`` so far, voluntary (it waited) and not (it was preempted)."""
    total = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                total += int(value)
    return total


def children(ppid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def wrk(urls: list[str], duration_s: int, connections: int, close: bool) -> tuple[str, int, float]:
    """wrk on core 1, one per URL at once (connections split); the command, requests and requests/s."""
    each = max(1, connections // len(urls))
    header = ["-H", "Connection: close"] if close else []
    commands = [
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{each}", f"-d{duration_s}s", *header, url] for url in urls
    ]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for command in commands]
    requests, rate = 0, 0.0
    for run in runs:
        out, _ = run.communicate(timeout=duration_s + 30)
        done = re.search(r"(\d+) requests in", out)
        per_s = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
        if run.returncode or not done or not per_s or errors:
            raise RuntimeError(f"wrk: {out}")
        requests += int(done.group(1))
        rate += float(per_s.group(1))
    return "  &  ".join(shlex.join(command) for command in commands), requests, rate


@dataclass
class Run:
    requests_per_s: float
    cpu_us_per_request: float  # the workers' (or the one process's) CPU time
    master_cpu_s: float
    switches_per_request: float  # the workers' context switches
    command: str


def start_server(flags: list[str]) -> tuple[subprocess.Popen[str], list[int], str, str]:
    """A server on core 0: the process, the pids that serve, its URL and its command."""
    port = free_port()
    server = [sys.executable, "-m", "reactor", "--app", "loadtests.hello:app", "--port", str(port)]
    server += ["--no-access-log", *flags]
    proc = subprocess.Popen(["taskset", "-c", "0", *server], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "serving ...": listening
    want = int(flags[1]) if flags else 0
    deadline = time.monotonic() + 10
    while len(children(proc.pid)) < want:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    serving = children(proc.pid) if want else [proc.pid]
    shown = " ".join(["taskset", "-c", "0", "python", "-m", "reactor", *server[3:]])
    return proc, serving, f"http://127.0.0.1:{port}/", shown


def measure(mode: str, duration_s: int, connections: int, close: bool) -> Run:
    count, flags = MODES[mode]
    procs: list[subprocess.Popen[str]] = []
    try:
        servers = []
        for _ in range(count):
            server = start_server(flags)
            procs.append(server[0])
            servers.append(server)
        serving = [pid for _, pids, _, _ in servers for pid in pids]
        urls = [url for _, _, url, _ in servers]
        wrk(urls, WARMUP_S, connections, close)
        before = sum(cpu_s(pid) for pid in serving)
        switched = sum(switches(pid) for pid in serving)
        master_before = cpu_s(procs[0].pid)
        command, requests, rate = wrk(urls, duration_s, connections, close)
        worker_s = sum(cpu_s(pid) for pid in serving) - before
        switched = sum(switches(pid) for pid in serving) - switched
        master_s = cpu_s(procs[0].pid) - master_before if flags else 0.0
        shown = "  &  ".join(server[3] for server in servers)
        return Run(rate, worker_s / requests * 1e6, master_s, switched / requests, f"{shown}  &  {command}")
    finally:
        for proc in procs:
            stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument(
        "--close",
        action="store_true",
        help="a new connection per request: the accept path, where workers share",
    )
    parser.add_argument(
        "--modes",
        default="one,two,1,2",
        help="which to run: one or two (independent processes), 1 and 2 (--workers); default %(default)s",
    )
    args = parser.parse_args()
    names = {"one": "one process", "two": "two processes", "1": "--workers 1", "2": "--workers 2"}
    modes = [names[key] for key in args.modes.split(",")]
    results: dict[str, list[Run]] = {mode: [] for mode in modes}
    for round_number in range(args.rounds):
        order = modes if round_number % 2 == 0 else modes[::-1]
        for mode in order:
            result = measure(mode, args.duration, args.connections, args.close)
            results[mode].append(result)
            print(
                f"round {round_number + 1} {mode}: {result.requests_per_s:.0f} req/s, "
                f"{result.cpu_us_per_request:.1f} µs CPU/request, "
                f"{result.switches_per_request:.3f} switches/request, "
                f"master {result.master_cpu_s:.2f} s",
                file=sys.stderr,
            )
    print("| mode | requests/s | CPU per request | context switches per request | master CPU in the run |")
    print("|---|---|---|---|---|")
    for mode, runs in results.items():
        rate = statistics.median(run.requests_per_s for run in runs)
        cpu = statistics.median(run.cpu_us_per_request for run in runs)
        master = statistics.median(run.master_cpu_s for run in runs)
        switched = statistics.median(run.switches_per_request for run in runs)
        print(f"| {mode} | {rate:.0f} | {cpu:.1f} µs | {switched:.3f} | {master:.2f} s |")
    print()
    for mode, runs in results.items():
        print(f"- {mode}: `{runs[0].command}`")


if __name__ == "__main__":
    main()
