"""Download one big file from reactor and from nginx, interleaved, with wrk.

Usage (from the repository's root)::

    python3 -m loadtests.bench.static                      # 3 rounds of 10 s, 256 MiB
    python3 -m loadtests.bench.static --rounds 1 --duration 3 --size-mib 64

(``python3 -m loadtests.bench --workloads static`` runs the same, inside a
benchmark run and its report.)

What one run does
-----------------
A file of ``--size-mib`` MiB of random bytes is written to a temporary
directory (and so sits in the page cache). reactor (``python -m reactor
--static DIR --no-access-log --port 0``) and nginx (Debian's ``nginx-light``:
one process, ``master_process off``, ``sendfile on``, access log off, the same
directory as its root) are started on 127.0.0.1, both pinned to core 0 with
``taskset -c 0``, and checked: each must answer a HEAD with the file's length
and a range with its first bytes. Each is warmed up with a short wrk run.
Then, for ``--rounds`` rounds, ``taskset -c 1 wrk -t1 -c4`` downloads the file
from each for ``--duration`` seconds; the order alternates every round
(reactor first, then nginx first, ...) so that a drift of the machine favours
neither.

nginx cannot bind port 0 (its ``listen`` refuses it): it gets a port that was
free a moment before, and is started again on another if it could not bind it.

Figures per run
---------------
* throughput: the bytes wrk read over the time it ran, both exact (a small wrk
  Lua ``done`` hook prints them);
* server CPU per GiB: user+system CPU time of the server process
  (``/proc/PID/stat`` before and after the run) over the GiB sent; and the
  server's and wrk's CPU use (CPU time over wall time: 100 % is a saturated
  core, which tells which side is the bottleneck).

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
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtests.bench import HOST, RESULTS, ROOT, WARMUP_S, progress
from loadtests.bench.measurement import cpu_seconds, probe_free_port, wait_quiet
from loadtests.bench.servers import Env, ServerProcess
from loadtests.bench.wrk import DONE_SCRIPT, download

GIB = 1 << 30
STATIC_CONNECTIONS = 4
#: Warm-up of the command on its own (a benchmark run uses :data:`~loadtests.bench.WARMUP_S`).
STANDALONE_WARMUP_S = 2
NGINX_STARTS = 3
GOAL_THROUGHPUT = 0.9  # reactor/nginx, at least
GOAL_CPU = 1.5  # reactor/nginx CPU per GiB, at most

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


def start_reactor(python: str, src: Path, root: Path, log_dir: Path) -> ServerProcess:
    """reactor ``--static root`` on port 0, listening."""
    argv = [python, "-m", "reactor", "--static", str(root), "--no-access-log", "--host", HOST, "--port", "0"]
    process = ServerProcess("reactor", argv, log_dir, src)
    try:
        process.wait_listening()
    except RuntimeError:
        process.stop()
        raise
    return process


def start_nginx(conf_dir: Path, root: Path, log_dir: Path) -> ServerProcess:
    """nginx-light serving ``root`` on a loopback port, its config and pid in ``conf_dir``."""
    failures: list[str] = []
    for _ in range(NGINX_STARTS):
        port = probe_free_port(HOST)
        conf = conf_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=conf_dir, host=HOST, port=port, root=root))
        command = ["nginx", "-c", str(conf), "-p", f"{conf_dir}/", "-e", str(conf_dir / "error.log")]
        process = ServerProcess("nginx", command, log_dir, ROOT)
        try:
            if process.wait_listening() == port:
                return process
            failures.append(f"listens on {process.port}, not on {port}")
        except RuntimeError as error:  # another process took the port first: try another
            failures.append(str(error).strip().splitlines()[-1])
        process.stop()
    raise RuntimeError(f"nginx did not start in {NGINX_STARTS} tries: {'; '.join(failures)}")


def url(process: ServerProcess) -> str:
    return f"http://{HOST}:{process.port}/big.bin"


def check(process: ServerProcess, size: int, head: bytes) -> None:
    """The server answers HEAD with the size and a range with the first bytes."""
    conn = http.client.HTTPConnection(HOST, process.port, timeout=10)
    try:
        conn.request("HEAD", "/big.bin")
        response = conn.getresponse()
        response.read()
        length = response.getheader("Content-Length")
        if response.status != 200 or length != str(size):
            raise RuntimeError(f"{process.name}: HEAD /big.bin -> {response.status}, length {length}")
        conn.request("GET", "/big.bin", headers={"Range": f"bytes=0-{len(head) - 1}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 206 or body != head:
            raise RuntimeError(f"{process.name}: a range of /big.bin -> {response.status}")
    finally:
        conn.close()


def measure(process: ServerProcess, duration_s: float, connections: int, script: Path) -> dict[str, Any]:
    """One download run against a server: wrk's figures and the server's CPU."""
    before = cpu_seconds(process.pid)
    run = download(url(process), duration_s, connections, script)
    cpu = cpu_seconds(process.pid) - before
    gib = run["bytes"] / GIB
    run.update(
        server=process.name,
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


def interleaved(
    python: str,
    src: Path,
    temp_dir: Path,
    size_mib: int,
    rounds: int,
    duration_s: float,
    connections: int,
    warmup_s: float,
    before_each: Callable[[], object] = lambda: None,
) -> list[dict[str, Any]]:
    """Both servers on one file, checked, warmed up, then ``rounds`` interleaved runs each."""
    size = size_mib << 20
    root = temp_dir / "static-root"
    root.mkdir()
    progress(f"static: writing a {size_mib} MiB file")
    head = write_file(root / "big.bin", size)
    script = temp_dir / "static-report.lua"
    script.write_text(DONE_SCRIPT)
    nginx_dir = temp_dir / "nginx"
    nginx_dir.mkdir()
    servers: dict[str, ServerProcess] = {}
    runs: list[dict[str, Any]] = []
    try:
        servers["reactor"] = start_reactor(python, src, root, temp_dir)
        servers["nginx"] = start_nginx(nginx_dir, root, temp_dir)
        for server in servers.values():
            check(server, size, head)
            download(url(server), warmup_s, connections, script)
        for round_no in range(1, rounds + 1):
            order = ["reactor", "nginx"] if round_no % 2 else ["nginx", "reactor"]
            for name in order:
                before_each()
                run = measure(servers[name], duration_s, connections, script)
                run["round"] = round_no
                runs.append(run)
                progress(
                    f"round {round_no}/{rounds}: {name:<8} static {run['throughput_gib_s']:.2f} GiB/s  "
                    f"{run['cpu_s_per_gib']:.3f} CPU s/GiB  CPU {100 * run['cpu_utilisation']:.0f}%  "
                    f"wrk {100 * run['client_cpu_utilisation']:.0f}%  {run['errors']} errors"
                )
    finally:
        for server in servers.values():
            server.stop()
    return runs


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


def run_static(args: argparse.Namespace, env: Env, temp_dir: Path) -> dict[str, Any]:
    """The ``static`` workload of a benchmark run: the part of its report."""
    runs = interleaved(
        env.python,
        env.src,
        temp_dir,
        args.static_mib,
        args.rounds,
        args.duration,
        STATIC_CONNECTIONS,
        WARMUP_S,
        before_each=(lambda: wait_quiet(args.quiet_wait)) if args.quiet_wait > 0 else lambda: None,
    )
    medians = median_runs(runs)
    return {
        "size_bytes": args.static_mib << 20,
        "connections": STATIC_CONNECTIONS,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "nginx_conf": NGINX_CONF,
        "runs": runs,
        "medians": medians,
        "ratios": static_ratios(medians),
    }


# -- the command on its own -------------------------------------------------------


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
    parser = argparse.ArgumentParser(
        description="Download one big file from reactor and from nginx, with wrk."
    )
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

    with tempfile.TemporaryDirectory(prefix="bench-static-") as tmp_name:
        try:
            runs = interleaved(
                sys.executable,
                ROOT,
                Path(tmp_name),
                args.size_mib,
                args.rounds,
                args.duration,
                args.connections,
                STANDALONE_WARMUP_S,
            )
        except RuntimeError as error:
            raise SystemExit(str(error)) from None

    medians = median_runs(runs)
    ratios = static_ratios(medians)
    print()
    print(
        f"{args.size_mib} MiB file, wrk -t1 -c{args.connections} -d{args.duration:g}s, "
        f"{args.rounds} interleaved rounds, medians:"
    )
    print()
    print(table(medians, ratios))

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"bench-static-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": [
                    "python3",
                    "-m",
                    "loadtests.bench.static",
                    *(argv if argv is not None else sys.argv[1:]),
                ],
                "size_bytes": args.size_mib << 20,
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
