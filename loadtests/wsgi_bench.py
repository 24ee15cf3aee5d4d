"""One Flask app under reactor, waitress, gunicorn gthread and cheroot, in one run.

    python -m loadtests.wsgi_bench                  # 10 s per measurement
    python -m loadtests.wsgi_bench --duration 3     # a short run
    python -m loadtests.wsgi_bench --idle 0         # without the idle-connection runs
    python -m loadtests.wsgi_bench --rounds 3       # the servers in turn, 3 times: medians

The app is ``loadtests/peers/flask_hello.py``: ``GET /`` (hello world) and
``GET /row`` (one row read from SQLite). Each server gets 4 threads (waitress's
default; gunicorn ``-w 1 -k gthread --threads 4``; cheroot ``numthreads=4``;
reactor ``--threads 4``, its default), is pinned to core 0 with taskset, and
wrk runs on core 1 (:mod:`loadtests.bench`). For each server and path: wrk's
requests/s and p99 latency, and the server's CPU time per request (from
``/proc/PID/stat``, user + system, over the wrk run); then the same with
``--idle`` keep-alive connections open and idle (10,000 by default; each sent
one request and read its answer). The peers run from the peers' virtualenv
(``loadtests/.venv-peers``, made and filled with pip by package name if
needed); reactor runs from this interpreter, which must have Flask.

With ``--rounds N`` the servers take turns N times (reactor, waitress, ...,
then again), so that a change in the machine's load falls on all of them; the
table gives each figure's median over the rounds, and each peer's requests/s
as a multiple of reactor's, round by round. Results go to standard output as
a table and, with ``--out FILE``, as JSON (every round's figures too).
The machine's noise is not removed here: run it on a quiet machine for the
figures that count (``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.bench import LOADTESTS, ROOT, progress
from loadtests.bench.idle import open_idle
from loadtests.bench.measurement import cpu_seconds
from loadtests.bench.servers import Env, ServerDef, ensure_venv, http_request, running
from loadtests.bench.wrk import Workload, parse_wrk, run_wrk, wrk_argv

APP = "loadtests.peers.flask_hello:app"
THREADS = 4
HELLO = b"Hello, World!"
PATHS = ("/", "/row")
IDLE_TIMEOUT_S = 900  # keep-alive: longer than any run, so that idle connections stay open
FLASK = ("flask",)


def _reactor(env: Env) -> list[str]:
    return [
        env.python, "-m", "reactor", "--app", APP, "--host", "127.0.0.1", "--port", "0",
        "--no-access-log", "--threads", str(THREADS),
        "--max-connections", "20000", "--keepalive-timeout", str(IDLE_TIMEOUT_S),
    ]  # fmt: skip


def _waitress(env: Env) -> list[str]:
    return [
        env.peer_python, "-m", "waitress", "--host=127.0.0.1", "--port=0", f"--threads={THREADS}",
        "--backlog=1024", "--connection-limit=20000", f"--channel-timeout={IDLE_TIMEOUT_S}", APP,
    ]  # fmt: skip


def _gunicorn(env: Env) -> list[str]:
    return [
        env.peer_python, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
        "--threads", str(THREADS), "--worker-connections", "20000", "--keep-alive", str(IDLE_TIMEOUT_S),
        "--bind", "127.0.0.1:0", "--backlog", "1024", "--log-level", "warning", APP,
    ]  # fmt: skip


def _cheroot(env: Env) -> list[str]:
    return [
        env.peer_python, "-m", "loadtests.peers.cheroot_run", APP, "--port", "0",
        "--threads", str(THREADS), "--timeout", str(IDLE_TIMEOUT_S),
    ]  # fmt: skip


SERVERS = (
    ServerDef("reactor", "python -m reactor --app (WSGI), --threads 4", _reactor, needs_venv=False),
    ServerDef(
        "waitress",
        "waitress, 4 threads (its default)",
        _waitress,
        needs_venv=True,
        packages=("waitress",),
        requirements=("waitress", *FLASK),
        modules=("waitress", "flask"),
    ),
    ServerDef(
        "gunicorn-gthread",
        "gunicorn -w 1 -k gthread --threads 4",
        _gunicorn,
        needs_venv=True,
        packages=("gunicorn",),
        requirements=("gunicorn", *FLASK),
        modules=("gunicorn", "flask"),
    ),
    ServerDef(
        "cheroot",
        "cheroot.wsgi.Server, numthreads=4",
        _cheroot,
        needs_venv=True,
        packages=("cheroot",),
        requirements=("cheroot", *FLASK),
        modules=("cheroot", "flask"),
    ),
)


def measure(port: int, pid: int, path: str, duration_s: int, connections: int) -> dict[str, Any]:
    """One wrk run on ``path``: requests/s, p99, errors, and the server's CPU per request."""
    workload = Workload(f"get{path}", f"GET {path}", path=path, connections=connections)
    cpu_before = cpu_seconds(pid)
    output = run_wrk(wrk_argv(workload, port, duration_s, None), duration_s)
    cpu = cpu_seconds(pid) - cpu_before
    result = parse_wrk(output)
    return {
        "requests_per_s": result.requests_per_s,
        "p99_ms": result.latency_ms["99"],
        "p50_ms": result.latency_ms["50"],
        "errors": result.errors,
        "cpu_us_per_request": cpu / result.requests * 1e6 if result.requests else float("nan"),
    }


def bench_server(
    server: ServerDef, env: Env, log_dir: Path, duration_s: int, connections: int, idle: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": server.description}
    with running(server, env, log_dir) as process:
        process.wait_ready()
        for path in PATHS:
            status, body = http_request(process.port, "GET", path, None)
            if (status, body) != (200, HELLO):
                raise RuntimeError(f"{server.name} answered {status} {body[:80]!r} to GET {path}")
            measure(process.port, process.pid, path, 1, connections)  # warm up
            out[path] = measure(process.port, process.pid, path, duration_s, connections)
            progress(f"{server.name} {path}: {out[path]}")
        if idle:
            socks, answered = open_idle(process.port, idle, time.monotonic() + 180)
            try:
                out["idle_open"] = answered
                time.sleep(2.0)
                for path in PATHS:
                    out[f"{path} idle"] = measure(process.port, process.pid, path, duration_s, connections)
                    progress(f"{server.name} {path} with {answered} idle: {out[f'{path} idle']}")
            except (RuntimeError, OSError) as error:
                # What it measured without them stands; say why this part has no figure.
                out["idle_error"] = f"{error}".splitlines()[0] + f" (log: {process.log_path})"
                progress(f"{server.name} with idle connections: {out['idle_error']}")
            finally:
                for sock in socks:
                    sock.close()
    return out


def table(results: dict[str, dict[str, Any]], idle: int) -> str:
    lines = [
        "| server | path | req/s | CPU µs/req | p99 ms | p99 ms, idle open | req/s, idle open | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {name} | | {result['error']} | | | | | |")
            continue
        for path in PATHS:
            row = result[path]
            under = result.get(f"{path} idle")
            idle_p99 = f"{under['p99_ms']:.2f} ({result['idle_open']})" if under else "-"
            if "idle_error" in result:
                idle_p99 = f"failed with {result.get('idle_open', 0)} open: {result['idle_error']}"
            idle_rps = f"{under['requests_per_s']:.0f}" if under else "-"
            errors = int(row["errors"] + (under["errors"] if under else 0))
            lines.append(
                f"| {name} | {path} | {row['requests_per_s']:.0f} | {row['cpu_us_per_request']:.0f} | "
                f"{row['p99_ms']:.2f} | {idle_p99} | {idle_rps} | {errors} |"
            )
    return "\n".join(lines)


def median_results(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each server's figures as medians over the rounds that measured them."""
    merged: dict[str, dict[str, Any]] = {}
    for name in rounds[0]:
        runs = [one[name] for one in rounds if name in one]
        good = [run for run in runs if "error" not in run]
        if not good:
            merged[name] = runs[0]
            continue
        out: dict[str, Any] = {"description": good[0]["description"], "rounds": len(good)}
        for key in {key for run in good for key, value in run.items() if isinstance(value, dict)}:
            measured = [run[key] for run in good if key in run]
            out[key] = {field: statistics.median(m[field] for m in measured) for field in measured[0]}
        if any("idle_open" in run for run in good):
            out["idle_open"] = min(run.get("idle_open", 0) for run in good)
        errors = [run["idle_error"] for run in good if "idle_error" in run]
        if errors:
            out["idle_error"] = errors[0]
        merged[name] = out
    return merged


def ratios(rounds: list[dict[str, dict[str, Any]]], subject: str = "reactor") -> list[str]:
    """Lines: reactor's requests/s over each peer's, round by round and their median."""
    lines = []
    for name in rounds[0]:
        if name == subject:
            continue
        for path in PATHS:
            per_round = [
                one[subject][path]["requests_per_s"] / one[name][path]["requests_per_s"]
                for one in rounds
                if path in one.get(subject, {}) and path in one.get(name, {})
            ]
            if per_round:
                shown = ", ".join(f"{ratio:.2f}" for ratio in per_round)
                lines.append(
                    f"reactor / {name} req/s on {path}: median {statistics.median(per_round):.2f}x ({shown})"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--idle", type=int, default=10000, help="idle keep-alive connections (0: none)")
    parser.add_argument("--servers", default=",".join(s.name for s in SERVERS), help="comma-separated")
    parser.add_argument("--venv", type=Path, default=LOADTESTS / ".venv-peers", help="the peers' virtualenv")
    parser.add_argument("--rounds", type=int, default=1, help="the servers in turn this many times (medians)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the idle connections' descriptors
    chosen = [server for server in SERVERS if server.name in args.servers.split(",")]
    peer_python, failures = ensure_venv(args.venv, [s for s in chosen if s.needs_venv], charts=False)
    env = Env(python=sys.executable, peer_python=str(peer_python), src=ROOT, origin=ROOT)
    # Kept after the run: each server's log is there, for a server that failed.
    scratch = tempfile.mkdtemp(prefix="wsgi-bench-")
    progress(f"server logs in {scratch}")
    os.environ["WSGI_BENCH_DB"] = str(Path(scratch) / "bench.sqlite3")
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(max(1, args.rounds)):
        results: dict[str, dict[str, Any]] = {}
        for server in chosen:
            if server.name in failures:
                results[server.name] = {"error": failures[server.name]}
                continue
            progress(f"round {number + 1}: {server.name}")
            try:
                results[server.name] = bench_server(
                    server, env, Path(scratch), args.duration, args.connections, args.idle
                )
            except (RuntimeError, OSError) as error:
                results[server.name] = {"error": str(error).splitlines()[0]}
                progress(f"{server.name}: {error}")
        rounds.append(results)
    merged = median_results(rounds) if len(rounds) > 1 else rounds[0]
    print(table(merged, args.idle))
    for line in ratios(rounds):
        print(line)
    if args.out is not None:
        args.out.write_text(json.dumps({"medians": merged, "rounds": rounds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
