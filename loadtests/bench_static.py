#!/usr/bin/env python3
"""Download one big file from reactor and from nginx, interleaved, with wrk.

Usage (paths are relative to the repository)::

    python3 loadtests/bench_static.py                       # 3 rounds of 10 s, 256 MiB
    python3 loadtests/bench_static.py --rounds 1 --duration 3 --size-mib 64

What one run does
-----------------
A file of ``--size-mib`` MiB of random bytes is written to a temporary
directory (and so sits in the page cache). reactor (``python -m reactor
--static DIR --no-access-log``) and nginx (Debian's ``nginx-light``: one
process, ``master_process off``, ``sendfile on``, access log off, the same
directory as its root) are started on free ports on 127.0.0.1, both pinned to
core 0 with ``taskset -c 0``, and checked: each must answer a HEAD with the
file's length and a range with its first bytes. Each is warmed up with a
short wrk run. Then, for ``--rounds`` rounds, ``taskset -c 1 wrk -t1 -c4``
downloads the file from each for ``--duration`` seconds; the order alternates
every round (reactor first, then nginx first, ...) so that a drift of the
machine favours neither.

Figures per run
---------------
* throughput: the bytes wrk read over the time it ran, both exact (a small wrk
  Lua ``done`` hook prints them);
* server CPU per GiB: user+system CPU time of the server process
  (``/proc/PID/stat`` before and after the run, in ``SC_CLK_TCK`` ticks) over
  the GiB sent; and the server's and wrk's CPU use (CPU time over wall time:
  100 % is a saturated core, which tells which side is the bottleneck).

Output: a markdown table of the medians with the two ratios the goal is about
(throughput reactor/nginx, at least 0.9; CPU per GiB reactor/nginx, at most
1.5) on stdout, and every run in ``loadtests/results/bench-static-<time>.json``.

Both servers are stopped by their PID (SIGTERM, then SIGKILL) before the
script exits; all traffic goes to 127.0.0.1; every wait has a time limit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
GIB = 1 << 30
HOST = "127.0.0.1"
SERVER_CORE = "0"
CLIENT_CORE = "1"
WARMUP_S = 2
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
GOAL_THROUGHPUT = 0.9  # reactor/nginx, at least
GOAL_CPU = 1.5  # reactor/nginx CPU per GiB, at most

# Exact figures from wrk: its summary rounds bytes to two decimals of a unit.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT bytes=%d duration_us=%d requests=%d errors=%d\\n",
    summary.bytes, summary.duration, summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted after "pid (comm)".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process, pinned to the server core."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.port = port
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        # taskset execs the server: this PID is the server's own.
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited at start: {log.read_text()[-2000:]}")
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"{name} did not listen on {port}: {log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/big.bin"

    def check(self, size: int, head: bytes) -> None:
        """The server answers HEAD with the size and a range with the first bytes."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request("HEAD", "/big.bin")
            response = conn.getresponse()
            response.read()
            length = response.getheader("Content-Length")
            if response.status != 200 or length != str(size):
                raise SystemExit(f"{self.name}: HEAD /big.bin -> {response.status}, length {length}")
            conn.request("GET", "/big.bin", headers={"Range": f"bytes=0-{len(head) - 1}"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 206 or body != head:
                raise SystemExit(f"{self.name}: a range of /big.bin -> {response.status}")
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()


def start_nginx(conf_dir: Path, root: Path, log: Path) -> Server:
    """nginx-light serving ``root`` on a free loopback port, its config and pid in ``conf_dir``."""
    port = free_port()
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=conf_dir, host=HOST, port=port, root=root))
    command = ["nginx", "-c", str(conf), "-p", f"{conf_dir}/", "-e", str(conf_dir / "error.log")]
    return Server("nginx", command, port, log)


def median_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each server's median figures over its rounds."""
    medians: dict[str, dict[str, float]] = {}
    for name in ("reactor", "nginx"):
        mine = [run for run in runs if run["server"] == name]
        medians[name] = {
            key: statistics.median(run[key] for run in mine)
            for key in ("throughput_gib_s", "cpu_s_per_gib", "cpu_utilisation", "client_cpu_utilisation")
        }
        medians[name]["requests_per_s"] = statistics.median(run["requests"] / run["seconds"] for run in mine)
    return medians


def static_ratios(medians: dict[str, dict[str, float]]) -> dict[str, float]:
    """reactor over nginx: throughput, and CPU seconds per GiB."""
    return {
        "throughput": medians["reactor"]["throughput_gib_s"] / medians["nginx"]["throughput_gib_s"],
        "cpu_per_gib": medians["reactor"]["cpu_s_per_gib"] / medians["nginx"]["cpu_s_per_gib"],
    }


def wrk(url: str, duration: float, connections: int, script: Path) -> dict[str, Any]:
    argv = [
        "taskset",
        "-c",
        CLIENT_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "60s",
        "-s",
        str(script),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    match = re.search(r"RESULT bytes=(\d+) duration_us=(\d+) requests=(\d+) errors=(\d+)", result.stdout)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed ({result.returncode}): {result.stdout}\n{result.stderr}")
    read, micros, requests, errors = (int(group) for group in match.groups())
    seconds = micros / 1e6
    return {
        "bytes": read,
        "seconds": seconds,
        "requests": requests,
        "errors": errors,
        "client_cpu_utilisation": client_cpu / seconds,
    }


def measure(server: Server, args: argparse.Namespace, script: Path) -> dict[str, Any]:
    before = cpu_seconds(server.pid)
    run = wrk(server.url, args.duration, args.connections, script)
    cpu = cpu_seconds(server.pid) - before
    gib = run["bytes"] / GIB
    run.update(
        server=server.name,
        cpu_s=round(cpu, 3),
        throughput_gib_s=gib / run["seconds"],
        cpu_s_per_gib=cpu / gib if gib else float("inf"),
        cpu_utilisation=cpu / run["seconds"],
    )
    return run


def write_file(path: Path, size: int) -> bytes:
    """``size`` random bytes in ``path``; returns the first 64 of them."""
    piece = 1 << 20
    with path.open("wb") as handle:
        for _ in range(size // piece):
            handle.write(os.urandom(piece))
        handle.write(os.urandom(size % piece))
    with path.open("rb") as handle:
        return handle.read(64)


def versions() -> dict[str, str]:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "nginx": nginx,
        "wrk": (wrk_version.stdout + wrk_version.stderr).splitlines()[0] if wrk_version.stdout else "",
    }


def table(medians: dict[str, dict[str, float]], ratios: dict[str, float]) -> str:
    lines = [
        "| server | GiB/s | server CPU s per GiB | server CPU use | wrk CPU use | requests/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("reactor", "nginx"):
        m = medians[name]
        lines.append(
            f"| {name} | {m['throughput_gib_s']:.2f} | {m['cpu_s_per_gib']:.3f} | "
            f"{m['cpu_utilisation'] * 100:.0f} % | {m['client_cpu_utilisation'] * 100:.0f} % | "
            f"{m['requests_per_s']:.1f} |"
        )
    throughput_ok = "met" if ratios["throughput"] >= GOAL_THROUGHPUT else "NOT met"
    cpu_ok = "met" if ratios["cpu_per_gib"] <= GOAL_CPU else "NOT met"
    lines += [
        "",
        f"- throughput ratio reactor/nginx: **{ratios['throughput']:.2f}x** "
        f"(goal >= {GOAL_THROUGHPUT}: {throughput_ok})",
        f"- CPU-per-GiB ratio reactor/nginx: **{ratios['cpu_per_gib']:.2f}x** (goal <= {GOAL_CPU}: {cpu_ok})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default %(default)s)")
    parser.add_argument("--size-mib", type=int, default=256, help="size of the file (default %(default)s)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default %(default)s)")
    parser.add_argument("--out", type=Path, help="JSON results file (default loadtests/results/...)")
    args = parser.parse_args(argv)
    for tool in ("taskset", "wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the server, one for wrk")

    size = args.size_mib << 20
    runs: list[dict[str, Any]] = []
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="bench-static-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "root"
        root.mkdir()
        print(f"writing {args.size_mib} MiB to {root / 'big.bin'}", flush=True)
        head = write_file(root / "big.bin", size)
        script = tmp / "report.lua"
        script.write_text(WRK_SCRIPT)
        nginx_dir = tmp / "nginx"
        nginx_dir.mkdir()
        try:
            port = free_port()
            reactor = [sys.executable, "-m", "reactor", "--static", str(root), "--no-access-log"]
            servers["reactor"] = Server(
                "reactor",
                [*reactor, "--port", str(port)],
                port,
                tmp / "reactor.log",
                cwd=ROOT,
            )
            servers["nginx"] = start_nginx(nginx_dir, root, tmp / "nginx.log")
            for server in servers.values():
                server.check(size, head)
                wrk(server.url, WARMUP_S, args.connections, script)  # warm up
            for round_number in range(args.rounds):
                order = ["reactor", "nginx"] if round_number % 2 == 0 else ["nginx", "reactor"]
                for name in order:
                    run = measure(servers[name], args, script)
                    run["round"] = round_number + 1
                    runs.append(run)
                    print(
                        f"round {round_number + 1} {name:8} {run['throughput_gib_s']:6.2f} GiB/s  "
                        f"{run['cpu_s_per_gib']:.3f} CPU s/GiB  {run['requests']} requests  "
                        f"{run['errors']} errors",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()

    medians = median_runs(runs)
    ratios = static_ratios(medians)
    report = table(medians, ratios)
    print()
    print(
        f"{args.size_mib} MiB file, wrk -t1 -c{args.connections} -d{args.duration:g}s, "
        f"{args.rounds} interleaved rounds, medians:"
    )
    print()
    print(report)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"bench-static-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
                "size_bytes": size,
                "rounds": args.rounds,
                "duration_s": args.duration,
                "connections": args.connections,
                "environment": versions(),
                "runs": runs,
                "medians": medians,
                "ratios": ratios,
                "goals": {"throughput_at_least": GOAL_THROUGHPUT, "cpu_per_gib_at_most": GOAL_CPU},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
