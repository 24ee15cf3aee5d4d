"""One Flask app under reactor, waitress, gunicorn gthread and cheroot, in one run.

    python -m loadtests.wsgi_bench                  # 10 s per measurement
    python -m loadtests.wsgi_bench --duration 3     # a short run
    python -m loadtests.wsgi_bench --idle 0         # without the idle-connection runs
    python -m loadtests.wsgi_bench --rounds 3       # the servers in turn, 3 times: medians
    python -m loadtests.wsgi_bench --paired 16 --duration 3 --servers reactor
                                                    # twins: with and without idle connections

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

``--paired N`` asks one question only, whether a server's figures move with
idle connections, in a way that the machine's drift cannot answer for it. The
sequential runs above measure a server without the idle connections, then
with them, a minute apart; on a shared machine the speed changes by more than
the effect in a minute. Paired, each server runs as two processes of the same
command (twins, both on core 0): one is given the ``--idle`` connections and
the other none, and then short wrk runs go to each in turn, alternating which
goes first, so that both see the same machine within seconds; new twins come
every 4 pairs, N pairs in all (two processes differ a little by themselves,
see :func:`bench_paired`). Each
pair's figures are divided (loaded twin over bare twin), and the tool prints
the median of those ratios with their range: 1.00 is no effect.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loadtests.bench import LOADTESTS, ROOT, progress
from loadtests.bench.idle import open_idle
from loadtests.bench.measurement import CLK_TCK, cpu_ticks
from loadtests.bench.report import run_about
from loadtests.bench.servers import Env, ServerDef, ServerProcess, ensure_venv, http_request, running
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
    user_before, system_before = cpu_ticks(pid)
    output = run_wrk(wrk_argv(workload, port, duration_s, None), duration_s)
    user_after, system_after = cpu_ticks(pid)
    result = parse_wrk(output)
    per_request = 1e6 / CLK_TCK / result.requests if result.requests else float("nan")
    user = (user_after - user_before) * per_request
    system = (system_after - system_before) * per_request
    return {
        "requests_per_s": result.requests_per_s,
        "p99_ms": result.latency_ms["99"],
        "p50_ms": result.latency_ms["50"],
        "errors": result.errors,
        "cpu_us_per_request": user + system,
        # The two parts: the process's own code, and the kernel's work for it.
        "user_us_per_request": user,
        "system_us_per_request": system,
    }


def _ready(process: ServerProcess, connections: int) -> None:
    """Wait until the server answers; refuse one that answers wrongly; warm each path up."""
    process.wait_ready()
    for path in PATHS:
        status, body = http_request(process.port, "GET", path, None)
        if (status, body) != (200, HELLO):
            raise RuntimeError(f"{process.name} answered {status} {body[:80]!r} to GET {path}")
        measure(process.port, process.pid, path, 1, connections)  # warm up


def bench_server(
    server: ServerDef, env: Env, log_dir: Path, duration_s: int, connections: int, idle: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": server.description}
    with running(server, env, log_dir) as process:
        _ready(process, connections)
        for path in PATHS:
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


#: Pairs of runs a pair of twin processes gives before new twins are started.
PAIRS_PER_TWINS = 4


def bench_paired(
    server: ServerDef, env: Env, log_dir: Path, duration_s: int, connections: int, idle: int, pairs: int
) -> dict[str, Any]:
    """Twin processes of ``server``, one holding ``idle`` idle connections; ``pairs``
    alternating wrk runs on each path to each twin (see the module's text).

    New twins are started every :data:`PAIRS_PER_TWINS` pairs: two processes of
    one command differ by a few percent by themselves (where their memory and
    their hash seeds fell), which more pairs on the same two would not average out.
    """
    out: dict[str, Any] = {"description": server.description, "pairs": pairs}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {path: {"idle": [], "bare": []} for path in PATHS}
    opened = []
    for first in range(0, pairs, PAIRS_PER_TWINS):
        with running(server, env, log_dir) as loaded, running(server, env, log_dir) as bare:
            for process in (loaded, bare):
                _ready(process, connections)
            socks, answered = open_idle(loaded.port, idle, time.monotonic() + 180)
            opened.append(answered)
            try:
                time.sleep(2.0)
                for path in PATHS:
                    for number in range(first, min(pairs, first + PAIRS_PER_TWINS)):
                        twins = [("idle", loaded), ("bare", bare)]
                        for name, process in twins if number % 2 == 0 else twins[::-1]:
                            run = measure(process.port, process.pid, path, duration_s, connections)
                            runs[path][name].append(run)
            except (RuntimeError, OSError) as error:
                out["idle_error"] = f"{error}".splitlines()[0] + f" (log: {loaded.log_path})"
                progress(f"{server.name} with idle connections: {out['idle_error']}")
                break
            finally:
                for sock in socks:
                    sock.close()
        progress(f"{server.name}: {len(runs[PATHS[-1]]['idle'])} of {pairs} pairs done")
    out["idle_open"] = min(opened, default=0)
    for path in PATHS:
        if runs[path]["idle"]:
            out[path] = {**runs[path], "ratios": paired_ratios(runs[path]["idle"], runs[path]["bare"])}
            progress(f"{server.name} {path}: {paired_line(out[path]['ratios'])}")
    return out


#: The figures that ``--paired`` compares, and how they are shown.
PAIRED_FIELDS = {
    "p99_ms": "p99",
    "p50_ms": "p50",
    "requests_per_s": "req/s",
    "cpu_us_per_request": "CPU/req",
    "user_us_per_request": "user",
    "system_us_per_request": "system",
}


def paired_ratios(loaded: list[dict[str, Any]], bare: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """For each of :data:`PAIRED_FIELDS`: the median, least and greatest of the pairs'
    ratios (the loaded twin's figure over the bare twin's, run for run)."""
    summary = {}
    for field in PAIRED_FIELDS:
        ratios = [one[field] / other[field] for one, other in zip(loaded, bare, strict=True) if other[field]]
        if ratios:
            summary[field] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return summary


def paired_line(ratios: dict[str, dict[str, float]]) -> str:
    """``p99 0.99x (0.70-1.39), ...``: each ratio's median and range."""
    return ", ".join(
        f"{PAIRED_FIELDS[field]} {one['median']:.2f}x ({one['min']:.2f}-{one['max']:.2f})"
        for field, one in ratios.items()
    )


def table(results: dict[str, dict[str, Any]]) -> str:
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
                why = result["idle_error"].split(" (log: ")[0]  # the log's path is this machine's
                idle_p99 = f"failed with {result.get('idle_open', 0)} open: {why}"
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
    parser.add_argument(
        "--paired", type=int, default=0, metavar="N", help="N pairs of runs on twins, with and without --idle"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.paired and args.idle <= 0:
        parser.error("--paired compares with and without --idle connections: --idle must be above 0")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the idle connections' descriptors
    chosen = [server for server in SERVERS if server.name in args.servers.split(",")]
    peer_python, failures = ensure_venv(args.venv, [s for s in chosen if s.needs_venv], charts=False)
    env = Env(python=sys.executable, peer_python=str(peer_python), src=ROOT, origin=ROOT)
    # Kept after the run: each server's log is there, for a server that failed.
    scratch = tempfile.mkdtemp(prefix="wsgi-bench-")
    progress(f"server logs in {scratch}")
    os.environ["WSGI_BENCH_DB"] = str(Path(scratch) / "bench.sqlite3")
    if args.paired:
        return _main_paired(args, argv, chosen, failures, env, Path(scratch))
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(max(1, args.rounds)):
        rounds.append(
            _each(
                chosen,
                failures,
                f"round {number + 1}",
                lambda server: bench_server(
                    server, env, Path(scratch), args.duration, args.connections, args.idle
                ),
            )
        )
    merged = median_results(rounds) if len(rounds) > 1 else rounds[0]
    print(table(merged))
    for line in ratios(rounds):
        print(line)
    if args.out is not None:
        about = run_about("loadtests.wsgi_bench", argv)
        _write(args.out, {"medians": merged, "rounds": rounds, "run": about})
    return 0


def _each(
    chosen: list[ServerDef],
    failures: dict[str, str],
    what: str,
    bench: Callable[[ServerDef], dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """``bench(server)`` for each server, in turn; a server that could not be
    installed, or that failed, gets ``{"error": why}`` instead."""
    results: dict[str, dict[str, Any]] = {}
    for server in chosen:
        if server.name in failures:
            results[server.name] = {"error": failures[server.name]}
            continue
        progress(f"{what}: {server.name}")
        try:
            results[server.name] = bench(server)
        except (RuntimeError, OSError) as error:
            results[server.name] = {"error": str(error).splitlines()[0]}
            progress(f"{server.name}: {error}")
    return results


def _main_paired(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    chosen: list[ServerDef],
    failures: dict[str, str],
    env: Env,
    scratch: Path,
) -> int:
    results = _each(
        chosen,
        failures,
        "paired",
        lambda server: bench_paired(
            server, env, scratch, args.duration, args.connections, args.idle, args.paired
        ),
    )
    for name, result in results.items():
        if "error" in result or "idle_error" in result:
            print(f"{name}: {result.get('error') or result['idle_error']}")
        for path in PATHS:
            if path in result:
                pairs = f"medians of {args.paired} pairs of {args.duration} s"
                print(
                    f"{name} {path}, with {result['idle_open']} idle connections over without, "
                    f"{pairs}: {paired_line(result[path]['ratios'])}"
                )
    if args.out is not None:
        about = run_about("loadtests.wsgi_bench", argv)
        # Keyed by server and idle count: a run with fewer connections (for a server
        # that cannot hold the rest) keeps the others' figures.
        done = {
            f"{name}/{args.idle}": {**result, "server": name, "idle": args.idle, "run": about}
            for name, result in results.items()
        }
        old = json.loads(args.out.read_text()).get("paired", {}) if args.out.exists() else {}
        _write(args.out, {"paired": {**old, **done}})
    return 0


def _write(out: Path, fields: dict[str, Any]) -> None:
    """Write ``fields`` to ``out``, keeping what an earlier run of the other kind left
    there: one file holds the sequential rounds and the paired runs (docs/wsgi-bench.json)."""
    data = json.loads(out.read_text()) if out.exists() else {}
    data.update(fields)
    out.write_text(json.dumps(data, indent=2) + "\n")


def markdown(data: dict[str, Any]) -> list[str]:
    """The WSGI section of docs/benchmarks.md, from the JSON of ``--out``."""
    lines = [
        "## WSGI: a Flask app on the thread pool",
        "",
        "`loadtests/wsgi_bench.py` runs one Flask app (`loadtests/peers/flask_hello.py`: `GET /`, "
        "hello world; `GET /row`, one row read from SQLite) under reactor (`--threads 4`), waitress "
        "(its default 4 threads), gunicorn (`-w 1 -k gthread --threads 4`) and cheroot "
        "(`numthreads=4`), each pinned to core 0 and wrk (`-t1 -c50`) on core 1; then again with "
        "idle keep-alive connections open. docs/wsgi.md says what each figure means and what blocks what.",
        "",
    ]
    if "medians" in data:
        run = data["run"]
        lines += [
            f"`{' '.join(run['command'])}`, {run['date']}, reactor at `{run['git']}`, Python "
            f"{run['python']}; load average {run['load_average'][0]:.1f} when it ended. Medians of "
            f"{len(data['rounds'])} round(s):",
            "",
            *table(data["medians"]).splitlines(),
            "",
            *(f"- {line}" for line in ratios(data["rounds"])),
            "",
        ]
    paired = data.get("paired", {})
    if paired:
        shown_fields = ("p99_ms", "p50_ms", "requests_per_s", "cpu_us_per_request", "system_us_per_request")
        lines += [
            "Whether the figures move with idle connections, paired (`--paired`: twin processes of one "
            "server, one holding the idle connections; short wrk runs alternate between them, and each "
            "pair's figures are divided). 1.00x is no effect; the range is the pairs' least and greatest:",
            "",
            "| server | path | idle | pairs | p99 | p50 | req/s | CPU/req | system CPU/req |",
            "| --- | --- | ---: | ---: | --- | --- | --- | --- | --- |",
        ]
        commands: dict[str, None] = {}
        for result in paired.values():
            name = result["server"]
            # The command without its --out: what to run to measure it again.
            argv = result["run"]["command"]
            cut = argv.index("--out") if "--out" in argv else len(argv)
            commands[f"`{' '.join(argv[:cut] + argv[cut + 2 :])}` ({result['run']['date']})"] = None
            if "error" in result or "idle_error" in result:
                why = (result.get("error") or result["idle_error"]).split(" (log: ")[0]
                lines.append(f"| {name} | | {result['idle']:,} | | {why} | | | | |")
            for path in PATHS:
                if path in result:
                    got = result[path]["ratios"]
                    shown = [
                        f"{got[field]['median']:.2f}x ({got[field]['min']:.2f}-{got[field]['max']:.2f})"
                        if field in got
                        else "-"
                        for field in shown_fields
                    ]
                    row = [name, path, f"{result['idle_open']:,}", str(result["pairs"]), *shown]
                    lines.append(f"| {' | '.join(row)} |")
        lines += ["", "Commands: " + ", ".join(commands) + ".", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
