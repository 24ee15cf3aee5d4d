"""The page: ``docs/benchmarks.md`` and its charts in ``docs/img/``, from a results file alone.

Everything the page says comes from the JSON (and, for the instruction counts,
from ``docs/instructions.json``, which ``loadtests/instructions.py --out``
writes): re-making it from the same files gives the same page, on any machine.
The charts are drawn by the peers' virtualenv's python, which has matplotlib
(``python -m loadtests.bench.page JSON IMG_DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loadtests.bench import ROOT, progress
from loadtests.bench.report import python_costs
from loadtests.bench.servers import CHART_MODULES, REFERENCE, SERVERS, SUBJECT, has_modules, venv_python
from loadtests.bench.static import GOAL_CPU, GOAL_THROUGHPUT, STATIC_CONNECTIONS
from loadtests.bench.wrk import ALL_WORKLOADS, WORKLOADS
from loadtests.floor_bench import markdown as floor_markdown
from loadtests.tls_bench import markdown as tls_markdown
from loadtests.wsgi_bench import markdown as wsgi_markdown

DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
IMG_DIR = ROOT / "docs" / "img"
#: The instruction counts the page shows, beside it (written by loadtests/instructions.py --out).
INSTRUCTIONS_JSON = "instructions.json"
#: What ``loadtests/tls_bench.py --out docs/tls-bench.json`` wrote: the page's TLS section.
TLS_JSON = "tls-bench.json"
#: What ``loadtests/wsgi_bench.py --out docs/wsgi-bench.json`` wrote: the page's WSGI section.
WSGI_JSON = "wsgi-bench.json"
#: What ``loadtests/floor_bench.py --out docs/floor-bench.json`` wrote: the floor under wrk.
FLOOR_JSON = "floor-bench.json"


#: The goals of the issue: reactor over uvicorn-uvloop (CPU per keep-alive request,
#: at most; Connection: close requests/s, at least), KiB per idle connection (at
#: most), and the static file against nginx (the goals of :mod:`~loadtests.bench.static`).
GOAL_KEEPALIVE_CPU = 0.5
GOAL_CLOSE_RPS = 2.5
GOAL_IDLE_KIB = 1.0
GOAL_STATIC_THROUGHPUT = GOAL_THROUGHPUT
GOAL_STATIC_CPU = GOAL_CPU
#: Workloads whose wrk latencies are not figures. Pipelined: wrk records one
#: latency per batch of 16, then "corrects" the histogram for coordinated
#: omission with the interval between single answers (16 times too short); the
#: samples it adds fall below the histogram's recorded minimum, which its
#: percentile walk starts from, so high percentiles come out as 0 (or low).
NO_LATENCY_WORKLOADS = frozenset({"pipelined"})
CHARTS = ("bench-rps.png", "bench-cpu.png", "bench-p99.png", "bench-idle.png", "bench-static.png")
_SUBJECT_COLOUR = "#d62728"
_PEER_COLOUR = "#7f7f7f"
_REFERENCE_COLOUR = "#1f77b4"


def _colour(server: str) -> str:
    return {SUBJECT: _SUBJECT_COLOUR, REFERENCE: _REFERENCE_COLOUR}.get(server, _PEER_COLOUR)


def draw_charts(report: dict[str, Any], img_dir: Path) -> list[Path]:
    """PNG charts of a results file (needs matplotlib: run by the venv's python)."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    img_dir.mkdir(parents=True, exist_ok=True)
    medians = report["medians"]
    workloads = [name for name in report["args"]["workloads"] if name in WORKLOADS]
    written: list[Path] = []
    title = (
        f"{report['machine']['cpu_model']}, server on 1 core, wrk on the other; "
        f"medians of {report['args']['rounds']} x {report['args']['duration_s']} s"
    )

    def per_workload(
        filename: str, label: str, value: Callable[[dict[str, Any]], float], log: bool, shown: Sequence[str]
    ) -> None:
        if not shown:
            return
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4.2), squeeze=False)
        for ax, workload in zip(axes[0], shown, strict=True):
            rows = [m for m in medians if m["workload"] == workload]
            names = [m["server"] for m in rows]
            values = [value(m) for m in rows]
            ax.barh(names, values, color=[_colour(name) for name in names])
            ax.invert_yaxis()
            ax.set_title(workload)
            ax.set_xlabel(label)
            if log:
                ax.set_xscale("log")
            for y, v in enumerate(values):
                if not math.isnan(v):
                    ax.text(v, y, f" {v:,.0f}" if v >= 100 else f" {v:.1f}", va="center", fontsize=7)
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle(f"{label} -- {title}", fontsize=9)
        fig.tight_layout()
        path = img_dir / filename
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    per_workload("bench-rps.png", "requests/s", lambda m: m["requests_per_s"], False, workloads)
    per_workload(
        "bench-cpu.png", "server CPU us per request", lambda m: m["cpu_us_per_request"], False, workloads
    )
    per_workload(
        "bench-p99.png",
        "p99 latency, ms (log)",
        lambda m: m["p99_ms"],
        True,
        [name for name in workloads if name not in NO_LATENCY_WORKLOADS],
    )
    idle = [row for row in report.get("idle", []) if "kib_per_connection" in row]
    if idle:
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(idle) + 1.5))
        names = [f"{row['server']} ({row['connections']:,})" for row in idle]
        values = [row["kib_per_connection"] for row in idle]
        ax.barh(names, values, color=[_colour(row["server"]) for row in idle])
        ax.invert_yaxis()
        ax.axvline(GOAL_IDLE_KIB, color="black", linestyle="--", linewidth=1, label="goal: 1.0 KiB")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlabel("server RSS KiB per idle keep-alive connection (connections held)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = img_dir / "bench-idle.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    static = report.get("static") or {}
    if static.get("medians"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
        names = ["reactor", "nginx"]
        for ax, key, label in (
            (axes[0], "throughput_gib_s", "GiB/s"),
            (axes[1], "cpu_s_per_gib", "server CPU s per GiB"),
        ):
            values = [static["medians"][name][key] for name in names]
            ax.barh(names, values, color=[_SUBJECT_COLOUR, _REFERENCE_COLOUR])
            ax.invert_yaxis()
            ax.set_xlabel(label)
            for y, v in enumerate(values):
                ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
        fig.suptitle(f"a {static['size_bytes'] >> 20} MiB file, wrk -c{static['connections']}", fontsize=9)
        fig.tight_layout()
        path = img_dir / "bench-static.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _num(value: float | None, digits: int = 1, comma: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}" if comma else f"{value:.{digits}f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render_docs(
    report: dict[str, Any],
    json_path: Path,
    charts: Sequence[str],
    instructions: dict[str, Any] | None = None,
    tls: dict[str, Any] | None = None,
    wsgi: dict[str, Any] | None = None,
    floor: dict[str, Any] | None = None,
) -> str:
    """The markdown page for a results file (and the instruction counts, the
    TLS figures of ``loadtests/tls_bench.py``, the WSGI figures of
    ``loadtests/wsgi_bench.py`` and the floor's of ``loadtests/floor_bench.py``,
    if given)."""
    machine, versions, args = report["machine"], report["machine"]["versions"], report["args"]
    med = {(m["server"], m["workload"]): m for m in report["medians"]}
    runs: list[dict[str, Any]] = report["runs"]
    servers = list(report["servers"])
    try:
        shown_json = json_path.relative_to(ROOT)
    except ValueError:
        shown_json = json_path
    lines: list[str] = [
        "# Benchmarks",
        "",
        "reactor against eight Python HTTP servers (and nginx, for a big static file), every server "
        "on one core and the load generator on the other. This page, its tables and its charts are "
        f"written by `python3 -m loadtests.bench` from the results file `{shown_json}`; re-make them "
        f"with `python3 -m loadtests.bench --report {shown_json}` rather than editing by hand "
        "(`loadtests/results/` is not in git: keep the file to re-make the page elsewhere).",
        "",
        "## How to run it",
        "",
        "```sh",
        "python3 -m loadtests.bench            # all servers, all workloads, 3 rounds of 10 s (~30 min)",
        "python3 -m loadtests.bench --quick    # smoke: reactor and uvicorn-uvloop, 1 round of 2 s, no docs",
        "python3 -m loadtests.bench --servers reactor,aiohttp --workloads keepalive,close,idle",
        "python3 -m loadtests.bench --report loadtests/results/bench-XXXX.json  # re-write this page",
        "python3 loadtests/instructions.py --path all --out docs/instructions.json  # instruction counts",
        "```",
        "",
        "It needs Debian's `wrk`, `nginx-light` (for the static file) and `taskset`. The first run "
        "creates a private virtualenv, `loadtests/.venv-peers`, and installs the peers into it by "
        "package name with pip (nothing is pinned; the versions used are listed below), plus "
        "matplotlib for the charts; reactor itself runs on the system `python3` with the standard "
        "library only. A peer that fails to install or to start is left out, and the reason is "
        "written into the results and this page.",
        "",
        "| flag | meaning |",
        "| --- | --- |",
        "| `--duration S` | seconds per measured wrk run (default 10), after a 1 s warm-up |",
        "| `--rounds N` | interleaved rounds (default 3); every figure is the median of the rounds |",
        f"| `--servers a,b` | a subset of {', '.join(f'`{name}`' for name in SERVERS)} |",
        f"| `--workloads a,b` | a subset of {', '.join(f'`{name}`' for name in ALL_WORKLOADS)} |",
        "| `--idle N` | idle connections each server holds (default 5000) |",
        "| `--idle-subject N` | reactor also holds this many (default 15000; 0: don't) |",
        "| `--static-mib N` | size of the static file (default 256) |",
        "| `--quiet-wait S`, `--max-other P`, `--retries N` | wait for an idle machine before each run; "
        "redo a run during which other processes used more than P % of a core |",
        "| `--src DIR`, `--no-snapshot` | which reactor sources to run (default: a copy made at the start) |",
        "| `--out FILE`, `--docs FILE`, `--no-docs` | where the JSON and this page go |",
        "| `--report JSON` | measure nothing; re-write this page and `docs/img/bench-*.png` from a JSON |",
        "",
        "How it measures:",
        "",
        f"- every server runs as one process pinned to core {machine['server_cpu']} (`taskset -c "
        f"{machine['server_cpu']}`), wrk (`-t1`) is pinned to core {machine['client_cpu']}; all traffic "
        "is on 127.0.0.1;",
        "- a round starts each server afresh, checks that it answers every workload's request "
        "correctly, then runs the workloads; the order of the servers is reversed every other round;",
        "- **CPU us/req** is the server process's (and its children's) user+system CPU time, from "
        "`/proc/PID/stat` before and after the run, over the requests wrk completed. It is the "
        "figure that stays meaningful when wrk, not the server, is the bottleneck (server CPU % "
        "below 100); requests/s is only a server's capacity when its CPU % is near 100;",
        "- p50/p99 are wrk's latency percentiles; for `pipelined` they are per batch of 16 "
        "requests (wrk records one latency per batch), while requests/s and CPU us/req count "
        "every request of a batch (wrk counts each answer);",
        "- before each run the script waits for the machine to be idle, and redoes a run during "
        "which other processes used the machine (the `other CPU %` column: loopback softirq "
        "counts there too, so it is never quite 0).",
        "",
        "Workloads:",
        "",
        "| workload | what |",
        "| --- | --- |",
    ]
    for name, workload in report["workloads"].items():
        lines.append(f"| `{name}` | {workload['description']}, `wrk -t1 -c{workload['connections']}` |")
    if "static" in args["workloads"]:
        lines.append(
            f"| `static` | a {args['static_mib']} MiB file, reactor `--static` against nginx "
            f"(`sendfile on`, one process), `wrk -t1 -c{STATIC_CONNECTIONS}`: GiB/s and server CPU s/GiB |"
        )
    if "idle" in args["workloads"]:
        lines.append(
            f"| `idle` | {args['idle_connections']:,} connections (reactor also "
            f"{args['idle_connections_subject']:,}) from 16 source addresses in 127.0.0.0/8, each "
            "sends one GET, reads the answer and stays open: server RSS growth per connection |"
        )
    started, finished = report["started"], report["finished"] or "(unfinished)"
    lines += [
        "",
        "## The run on this page",
        "",
        f"- command: `{' '.join(_shown_command(report['command']))}`",
        f"- {started} to {finished}; {args['rounds']} rounds, {args['duration_s']} s per run",
        f"- machine: {machine['nproc']} cores, {machine['cpu_model']}, Linux {machine['kernel']}, "
        f"Python {machine['python']} (Debian 12)",
        f"- reactor {versions.get('reactor', '?')} at `{machine['git']}` (git describe of the work "
        f"tree measured; its `reactor/` sources hash to `{machine['reactor_sources_sha256']}`)",
        "",
        "| software | version |",
        "| --- | --- |",
    ]
    for name, version in versions.items():
        lines.append(f"| {name} | {version} |")
    lines += ["", "| server | how it runs |", "| --- | --- |"]
    for name, description in report["servers"].items():
        note = report.get("notes", {}).get(name)
        lines.append(f"| `{name}` | {description}" + (f"; {note}" if note else "") + " |")
    if report.get("failures"):
        lines += ["", "Left out or failed:", ""]
        for name, why in report["failures"].items():
            lines.append(f"- `{name}`: {why.splitlines()[0]}")

    # -- goals
    goals = _goals(report)
    lines += [
        "",
        "## Goals",
        "",
        f"Ratios are reactor over `{REFERENCE}` (uvicorn with uvloop and httptools) unless said otherwise.",
        "",
        "| goal | target | measured | |",
        "| --- | --- | --- | --- |",
    ]
    for goal in goals:
        lines.append(f"| {goal['goal']} | {goal['target']} | {goal['measured']} | {_met(goal['ok'])} |")

    # -- the wrk tables
    lines += ["", "## Requests/s, latency and CPU per request", ""]
    for workload, info in report["workloads"].items():
        subject = med.get((SUBJECT, workload))
        lines += [
            f"### {workload}",
            "",
            f"{info['description']}."
            + (
                " Latency: n/a, as wrk's figures for pipelined batches are not usable (see the "
                "notes at the end)."
                if workload in NO_LATENCY_WORKLOADS
                else ""
            ),
            "",
            "| server | req/s | req/s min-max | p50 ms | p99 ms | CPU us/req | user+sys | server CPU % | "
            "wrk CPU % | other CPU % | errors | reactor req/s, CPU/req ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for server in servers:
            m = med.get((server, workload))
            if m is None:
                continue
            wrk_cpu = statistics.median(
                r["wrk_cpu_percent"] for r in runs if r["server"] == server and r["workload"] == workload
            )
            vs = (
                f"{_num(subject['requests_per_s'] / m['requests_per_s'], 2)}x, "
                f"{_num(subject['cpu_us_per_request'] / m['cpu_us_per_request'], 2)}x"
                if subject is not None and server != SUBJECT
                else ""
            )
            name = f"**{server}**" if server == SUBJECT else server
            p50, p99 = m["p50_ms"], m["p99_ms"]
            if workload in NO_LATENCY_WORKLOADS:
                p50 = p99 = float("nan")
            lines.append(
                f"| {name} | {_num(m['requests_per_s'], 0, True)} | "
                f"{_num(m['requests_per_s_min'], 0, True)}-{_num(m['requests_per_s_max'], 0, True)} | "
                f"{_num(p50, 2)} | {_num(p99, 2)} | {_num(m['cpu_us_per_request'])} | "
                f"{_num(m['user_us_per_request'])}+{_num(m['system_us_per_request'])} | "
                f"{_num(m['server_cpu_percent'], 0)} | {_num(wrk_cpu, 0)} | "
                f"{_num(m['other_cpu_percent'], 0)} | {m['errors']} | {vs} |"
            )
        lines.append("")
    lines += [
        "user+sys: the split of CPU us/req into user and kernel time (each the median of its own). "
        "server CPU %: of one core; near 100 the server is saturated and req/s is its capacity, "
        "well below 100 wrk (one thread on one core) is the limit and CPU us/req is the figure to "
        "compare. errors: wrk's socket errors and non-2xx answers over all rounds.",
        "",
    ]
    for chart, caption in zip(
        CHARTS[:3], ("requests/s", "server CPU us per request", "p99 latency"), strict=True
    ):
        if chart in charts:
            lines += [f"![{caption}](img/{chart})", ""]

    # -- idle
    idle = report.get("idle") or []
    if idle:
        lines += [
            "## Idle connections",
            "",
            "Each server is started afresh, answers 50 requests, then N connections each send one "
            "GET, read the answer and stay open; after 2 s the server's RSS (the process and its "
            "children, from `/proc/PID/status`) is read again. uvicorn gets `--timeout-keep-alive "
            "600` and reactor `--max-connections 20000 --keepalive-timeout 600` here, so that "
            "their idle timeouts do not close the connections first.",
            "",
            "| server | connections | KiB per connection | RSS before -> after, KiB | opened in s | note |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in idle:
            if "kib_per_connection" in row:
                lines.append(
                    f"| {row['server']} | {row['connections']:,} | {row['kib_per_connection']:.2f} | "
                    f"{row['rss_before_kib']:,} -> {row['rss_after_kib']:,} | {row['open_s']} | |"
                )
            else:
                why = row.get("skipped") or f"failed: {row.get('failed', '?')}"
                lines.append(f"| {row['server']} | {row['connections']:,} | n/a | | | {why} |")
        lines.append("")
        if "bench-idle.png" in charts:
            lines += ["![KiB per idle connection](img/bench-idle.png)", ""]

    # -- static
    static = report.get("static") or {}
    if static.get("medians"):
        lines += [
            "## A big static file, against nginx",
            "",
            f"A {static['size_bytes'] >> 20} MiB file of random bytes (in the page cache), `wrk -t1 "
            f"-c{static['connections']}` for {static['duration_s']} s per round, {static['rounds']} "
            "interleaved rounds; nginx runs `master_process off`, `sendfile on`, access log off, "
            "pinned to the same core. Medians:",
            "",
            "| server | GiB/s | server CPU s per GiB | server CPU % | wrk CPU % | requests/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in ("reactor", "nginx"):
            m = static["medians"][name]
            lines.append(
                f"| {name} | {m['throughput_gib_s']:.2f} | {m['cpu_s_per_gib']:.3f} | "
                f"{100 * m['cpu_utilisation']:.0f} | {100 * m['client_cpu_utilisation']:.0f} | "
                f"{m['requests_per_s']:.1f} |"
            )
        lines += [
            "",
            f"reactor/nginx: throughput {static['ratios']['throughput']:.2f}x (goal at least "
            f"{GOAL_STATIC_THROUGHPUT}), CPU per GiB {static['ratios']['cpu_per_gib']:.2f}x (goal at most "
            f"{GOAL_STATIC_CPU}).",
            "",
        ]
        client = min(m["client_cpu_utilisation"] for m in static["medians"].values())
        if client >= 0.9:
            lines += [
                f"wrk used {100 * client:.0f} % or more of its core with both servers: it reads "
                "every byte into user space, so the GiB/s of both is wrk's limit more than theirs, "
                "and CPU s per GiB is the figure that compares the servers.",
                "",
            ]
        if "bench-static.png" in charts:
            lines += ["![static file](img/bench-static.png)", ""]

    if tls:
        lines += tls_markdown(tls)
    if wsgi:
        lines += wsgi_markdown(wsgi)
    lines += _instructions_section(instructions)
    lines += ["## Notes on the peers", "", *_peer_notes(report), ""]
    lines += ["## What stands in the way", "", *_counted(instructions), *_obstacles(report, goals), ""]
    if floor:
        lines += floor_markdown(floor)
    return "\n".join(lines)


def _shown_command(command: Sequence[str]) -> list[str]:
    """The command of a run, as it is typed now: results files made before the benchmark
    became a package name the script ``loadtests/bench.py``."""
    if len(command) > 1 and command[1] == "loadtests/bench.py":
        return [command[0], "-m", "loadtests.bench", *command[2:]]
    return list(command)


def _instructions_section(data: dict[str, Any] | None) -> list[str]:
    """The instruction counts of ``loadtests/instructions.py --out``, as a table."""
    if not data:
        return []
    figures: dict[str, int] = data["instructions_per_request"]
    descriptions: dict[str, str] = data.get("descriptions", {})
    floor = figures.get("floor")
    low, high = data["requests"]
    lines = [
        "## Instructions per request",
        "",
        "Counted by callgrind, a figure that noise on a shared machine cannot move: each path runs "
        f"{low:,} and then {high:,} requests under `valgrind --tool=callgrind`, and the difference of "
        f"the two counts over {high - low:,} is the figure, so that start-up, imports and warm-up "
        "cancel out, the same way for every path. The paths with a socket run the client's side in "
        "the same process (its `send` and `recv` are counted too) on a socket pair, one loop pass per "
        "send. It counts instructions, not time: a cache miss costs what one instruction does, and "
        "the kernel's side of a system call is not counted at all. Repeated runs of the same code "
        "agree to within 1 %.",
        "",
        f"Command: `{' '.join(data['command'])}`, Python {data['python']}, {data['valgrind']}, "
        f"reactor at `{data.get('git', '?')}` (its `reactor/` sources hash to "
        f"`{data.get('reactor_sources_sha256', '?')}`).",
        "",
        "| path | what runs | instructions per request | over the floor |",
        "| --- | --- | ---: | ---: |",
    ]
    for path, count in figures.items():
        times = f"{count / floor:.2f}x" if floor else ""
        lines.append(f"| `{path}` | {descriptions.get(path, '')} | {count:,} | {times} |")
    lines.append("")
    return lines


def _goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    med = {(m["server"], m["workload"]): m for m in report["medians"]}
    goals: list[dict[str, Any]] = []
    subject, reference = med.get((SUBJECT, "keepalive")), med.get((REFERENCE, "keepalive"))
    if subject and reference:
        ratio = subject["cpu_us_per_request"] / reference["cpu_us_per_request"]
        goals.append(
            {
                "key": "keepalive",
                "goal": "server CPU per keep-alive request, reactor/uvicorn-uvloop",
                "target": f"<= {GOAL_KEEPALIVE_CPU}",
                "measured": f"{ratio:.2f} ({subject['cpu_us_per_request']:.1f} / "
                f"{reference['cpu_us_per_request']:.1f} us)",
                "ok": ratio <= GOAL_KEEPALIVE_CPU,
                "ratio": ratio,
            }
        )
    subject, reference = med.get((SUBJECT, "close")), med.get((REFERENCE, "close"))
    if subject and reference:
        ratio = subject["requests_per_s"] / reference["requests_per_s"]
        goals.append(
            {
                "key": "close",
                "goal": "`Connection: close` requests/s, reactor/uvicorn-uvloop",
                "target": f">= {GOAL_CLOSE_RPS}",
                "measured": f"{ratio:.2f} ({subject['requests_per_s']:,.0f} / "
                f"{reference['requests_per_s']:,.0f} req/s)",
                "ok": ratio >= GOAL_CLOSE_RPS,
                "ratio": ratio,
            }
        )
    for row in report.get("idle") or []:
        if row["server"] == SUBJECT and "kib_per_connection" in row:
            goals.append(
                {
                    "key": "idle",
                    "goal": f"KiB per idle connection, reactor, {row['connections']:,} held",
                    "target": f"<= {GOAL_IDLE_KIB}",
                    "measured": f"{row['kib_per_connection']:.2f}",
                    "ok": row["kib_per_connection"] <= GOAL_IDLE_KIB,
                    "ratio": row["kib_per_connection"],
                }
            )
    static = report.get("static") or {}
    if static.get("ratios"):
        goals += [
            {
                "key": "static-throughput",
                "goal": "static file throughput, reactor/nginx",
                "target": f">= {GOAL_STATIC_THROUGHPUT}",
                "measured": f"{static['ratios']['throughput']:.2f}",
                "ok": static["ratios"]["throughput"] >= GOAL_STATIC_THROUGHPUT,
                "ratio": static["ratios"]["throughput"],
            },
            {
                "key": "static-cpu",
                "goal": "static file CPU per GiB, reactor/nginx",
                "target": f"<= {GOAL_STATIC_CPU}",
                "measured": f"{static['ratios']['cpu_per_gib']:.2f}",
                "ok": static["ratios"]["cpu_per_gib"] <= GOAL_STATIC_CPU,
                "ratio": static["ratios"]["cpu_per_gib"],
            },
        ]
    return goals


def _peer_notes(report: dict[str, Any]) -> list[str]:
    notes = [
        "- All peers answer the same two routes as `loadtests/hello.py` (`GET /` -> `Hello, World!`, "
        "`POST /echo` echoes) with their plainest API: `loadtests/peers/` holds the apps.",
        "- `gunicorn -k sync` does no keep-alive: it closes the connection after every answer, so wrk "
        "reconnects for every request in the keep-alive and POST workloads, and in `pipelined` only "
        "the first request of each batch is answered (wrk records no batch latency at all: n/a). "
        "It holds no idle connections either. This is how the sync worker is meant to run (behind "
        "a buffering proxy).",
        "- waitress runs with its defaults: 4 threads and `connection_limit` 100; beyond 100 "
        "connections it stops accepting, so it is not asked to hold thousands of idle ones.",
        "- the stdlib server (`ThreadingHTTPServer`, a thread per connection) sets "
        "`disable_nagle_algorithm = True`: it writes head and body in two `send`s, and with Nagle "
        "on each keep-alive answer waits for the client's delayed ACK (about 470 req/s in a trial). "
        "It also adds `Connection: close` to the answer when the request asked for it, as "
        "`http.server` closes without saying so and wrk counts every such close as a read error.",
        "- wrk's latencies for `pipelined` are left out: wrk records one latency per batch of 16 "
        "but corrects its histogram for coordinated omission with the interval between single "
        "answers, 16 times too short; the samples it adds fall below the histogram's minimum, "
        "where its percentile walk does not look, and p99 comes out as 0. Requests/s and CPU per "
        "request are not affected: wrk counts every answer of a batch.",
        "- tornado computes an `Etag` for every answer (its default), uvicorn runs the ASGI app "
        "without a framework, aiohttp and twisted.web run their own request objects; every server "
        "logs no access lines.",
    ]
    return notes


def _obstacles(report: dict[str, Any], goals: Sequence[dict[str, Any]]) -> list[str]:
    med = {(m["server"], m["workload"]): m for m in report["medians"]}
    out: list[str] = []
    missed = [goal for goal in goals if not goal["ok"]]
    if not missed:
        return ["Every goal was met in this run."]
    for goal in missed:
        if goal["key"] == "keepalive":
            out += _keepalive_obstacle(med, report)
        elif goal["key"] == "close":
            out += _close_obstacle(med, report["runs"])
        elif goal["key"] == "idle":
            out += [
                f"### KiB per idle connection: {goal['measured']} KiB",
                "",
                f"reactor's RSS grew by {goal['measured']} KiB per idle connection, above the "
                f"{GOAL_IDLE_KIB} KiB goal.",
                "",
            ]
        elif goal["key"].startswith("static"):
            static = report["static"]["medians"]
            out += [
                f"### Static file: {goal['goal']} {goal['measured']}",
                "",
                f"reactor {static['reactor']['throughput_gib_s']:.2f} GiB/s at "
                f"{static['reactor']['cpu_s_per_gib']:.3f} CPU s/GiB "
                f"({100 * static['reactor']['cpu_utilisation']:.0f} % of its core), nginx "
                f"{static['nginx']['throughput_gib_s']:.2f} GiB/s at {static['nginx']['cpu_s_per_gib']:.3f} "
                f"CPU s/GiB ({100 * static['nginx']['cpu_utilisation']:.0f} %); wrk used "
                f"{100 * static['reactor']['client_cpu_utilisation']:.0f} % and "
                f"{100 * static['nginx']['client_cpu_utilisation']:.0f} % of its core.",
                "",
            ]
    return out


def _keepalive_obstacle(med: dict[tuple[str, str], dict[str, Any]], report: dict[str, Any]) -> list[str]:
    r, u = med[(SUBJECT, "keepalive")], med[(REFERENCE, "keepalive")]
    total_r, user_r, sys_r = r["cpu_us_per_request"], r["user_us_per_request"], r["system_us_per_request"]
    total_u, user_u, sys_u = u["cpu_us_per_request"], u["user_us_per_request"], u["system_us_per_request"]
    budget = GOAL_KEEPALIVE_CPU * total_u
    left = budget - sys_r
    lines = [
        "### CPU per keep-alive request: half of uvicorn-uvloop's",
        "",
        f"Measured: reactor {total_r:.1f} us per request = {user_r:.1f} us user + {sys_r:.1f} us "
        f"kernel; uvicorn-uvloop {total_u:.1f} us = {user_u:.1f} us user + {sys_u:.1f} us kernel. "
        f"Half of uvicorn-uvloop's is a budget of **{budget:.1f} us** per request, all in.",
        "",
        f"- The kernel part is the same work for every server that reads a request with one "
        f"`recv` and answers with one `send` on an epoll loop: reactor's {sys_r:.1f} us against "
        f"uvicorn-uvloop's {sys_u:.1f} us. It alone is {100 * sys_r / budget:.0f} % of the budget.",
    ]
    if left <= 0:
        lines.append(
            f"- That leaves nothing ({left:.1f} us) for reactor's Python: the goal cannot be "
            "met even by a server that runs no user code at all."
        )
    else:
        lines.append(
            f"- That leaves {left:.1f} us for all of reactor's user-space work per request (now "
            f"{user_r:.1f} us): a cut of {100 * (1 - left / user_r):.0f} %, to "
            f"{100 * left / user_u:.0f} % of the user time of uvicorn-uvloop, whose event loop "
            "(uvloop, libuv) and HTTP parser (httptools, llhttp) are C; its Python part is the "
            "protocol callbacks and the ASGI app."
        )
    p = med.get((SUBJECT, "pipelined"))
    if p is not None:
        lines.append(
            f"- The pipelined workload shows reactor's floor with the system calls shared by 16 "
            f"requests: {p['cpu_us_per_request']:.1f} us per request ({p['user_us_per_request']:.1f} "
            f"user + {p['system_us_per_request']:.1f} kernel). The user part there is almost only "
            "the parse, the route, the app call and the answer's serialisation, in CPython"
            + (
                f"; at {p['user_us_per_request']:.1f} us it alone already exceeds the "
                f"{max(left, 0):.1f} us left."
                if p["user_us_per_request"] > left
                else f"; it fits in the {left:.1f} us left only if the per-wakeup cost of the loop "
                "(select, recv, send, the connection's state moves) drops to almost nothing."
            )
        )
    # Measured during the run (the JSON keeps them); an older results file has none.
    costs = report.get("python_costs") or python_costs()
    call_ns = costs["a call of a Python function that returns at once"]
    lines += [
        "- What CPython costs here (`timeit` on this machine when the page was written, "
        f"Python {report['machine']['python']}): "
        + "; ".join(f"{what}: {ns:.0f} ns" for what, ns in costs.items())
        + f". reactor's {user_r:.1f} us of user time per keep-alive request is the price of about "
        f"{1000 * user_r / call_ns:.0f} such calls; the {max(left, 0):.1f} us left would buy about "
        f"{1000 * max(left, 0) / call_ns:.0f}: not enough for a loop wake-up, a `recv`, a parse of "
        "the request line and headers, a route, the app's call and the answer's serialisation, "
        "each of which is several calls and lookups in pure Python.",
        "- uvicorn-uvloop pays for its own Python too (the protocol callbacks, the ASGI app), but "
        "not for its parser or its event loop. How much of reactor's own work is above what a "
        "pure-Python loop must do is counted, not timed, under *Where the instructions go* above.",
        "",
    ]
    return lines


def _counted(data: dict[str, Any] | None) -> list[str]:
    """Where the instructions of a keep-alive GET go, and what each change to the
    hot path saved: from ``docs/instructions.json`` (its figures and its steps)."""
    if not data:
        return []
    figures: dict[str, int] = data["instructions_per_request"]
    floor, parse, full = figures.get("floor"), figures.get("parse"), figures.get("full")
    lines = ["### Where the instructions go", ""]
    if floor and parse and full:
        rest = full - parse - floor
        lines += [
            f"Counted by callgrind (the table above): a keep-alive GET costs reactor {full:,} "
            f"instructions, {full / floor:.2f}x the {floor:,} of the floor, a bare `selectors` loop "
            "that reads the request and sends a fixed answer (the client's side included in both). "
            f"Of the {full - floor:,} above the floor, {parse:,} ({100 * parse / (full - floor):.0f} %) "
            "are the `parse` path: parsing the head, routing, the handler's `Response` and framing "
            f"it; the other {rest:,} are the connection's state moves, timers and metrics, the "
            "transport's buffers and the loop's pass.",
            "",
        ]
        if "full-log" in figures:
            lines += [
                f"With the access log on, a request costs {figures['full-log']:,} "
                f"({figures['full-log'] - full:+,} for formatting and writing its line); off, it "
                "costs nothing: one attribute test.",
                "",
            ]
    steps: list[dict[str, Any]] = data.get("steps", [])
    if steps:
        lines += [
            "Each change to the hot path, measured before and after (`--path full`, and the floor "
            "where it was measured with it; `loadtests/instructions.py --out docs/instructions.json "
            "--step CHANGE` adds a row; `close`, a new connection for each GET, where it was "
            "measured):",
            "",
            "| change | full | over the floor | saved | close |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        previous: int | None = None
        step_floor = floor
        for step in steps:
            counts = step["instructions_per_request"]
            step_floor = counts.get("floor", step_floor)
            count = counts["full"]
            times = f"{count / step_floor:.2f}x" if step_floor else ""
            saved = f"{previous - count:,}" if previous is not None else ""
            close = f"{counts['close']:,}" if "close" in counts else ""
            lines.append(f"| {step['change']} | {count:,} | {times} | {saved} | {close} |")
            previous = count
        lines += [
            "",
            "Some of the cost was in lookups that do not look like calls: an enum member looked up "
            "on its class (`Event.NEED_DATA`) goes through the enum's metaclass, about 900 "
            "instructions each (six a request cost 5,400), and a property is a Python call each "
            "time it is read. What is left above the floor is the parse (one match of the whole "
            "head, one `findall` of its framing fields, the `Host` check and the `Request`), 27 "
            "Python calls and about 1,600 bytecodes a request in the loop, the transport, the "
            "connection, the parser and the app (counted with `sys.settrace` opcode events), and the "
            "access log's line when it is on. Counted by callgrind, taking the call out of one "
            "small method (`_date.get()`, inlined) saved 190 instructions a request, and one "
            "`fullmatch` of a 15-character field line costs about 2,700: what remains is spread "
            "thin, and no single step left is worth more than a few thousand.",
            "",
            "A cache of parsed heads would go lower (a prototype measured 2.7x the floor with one), "
            "but reactor keeps none, not even per connection: behind a reverse proxy that reuses "
            "its upstream connections, a connection's last request may be another client's, and "
            "the shorter time of a cache hit would tell one client what another asked for "
            "(docs/http.md, *Parsing a head*).",
            "",
        ]
    return lines


def _close_obstacle(med: dict[tuple[str, str], dict[str, Any]], runs: Sequence[dict[str, Any]]) -> list[str]:
    r, u = med[(SUBJECT, "close")], med[(REFERENCE, "close")]
    wrk_r, wrk_u = (
        statistics.median(
            x["wrk_cpu_percent"] for x in runs if x["server"] == name and x["workload"] == "close"
        )
        for name in (SUBJECT, REFERENCE)
    )
    cap_r, cap_u = 1e6 / r["cpu_us_per_request"], 1e6 / u["cpu_us_per_request"]
    budget = u["cpu_us_per_request"] / GOAL_CLOSE_RPS  # what the goal's requests/s leave a request
    return [
        f"### `Connection: close`: {GOAL_CLOSE_RPS:g} times uvicorn-uvloop's requests/s",
        "",
        f"Measured: reactor {r['requests_per_s']:,.0f} req/s at {r['server_cpu_percent']:.0f} % of "
        f"its core, {r['cpu_us_per_request']:.1f} us per request ({r['user_us_per_request']:.1f} "
        f"user + {r['system_us_per_request']:.1f} kernel); uvicorn-uvloop {u['requests_per_s']:,.0f} "
        f"req/s at {u['server_cpu_percent']:.0f} %, {u['cpu_us_per_request']:.1f} us "
        f"({u['user_us_per_request']:.1f} + {u['system_us_per_request']:.1f}).",
        "",
        f"- A saturated core serves 1e6 / (CPU us per request): at most {cap_r:,.0f} req/s for "
        f"reactor and {cap_u:,.0f} for uvicorn-uvloop, a ratio of {cap_r / cap_u:.2f}. "
        f"{GOAL_CLOSE_RPS:g} times uvicorn-uvloop's rate would need at most {budget:.1f} us per request: "
        f"{r['cpu_us_per_request'] - budget:.1f} us "
        f"({100 * (1 - budget / r['cpu_us_per_request']):.0f} %) less than "
        "reactor spends now" + (" (it is already there)." if r["cpu_us_per_request"] <= budget else "."),
        f"- Of that, the kernel's share for accept, the TCP handshake, one `recv`, one `send` and "
        f"the close is already {r['system_us_per_request']:.1f} us for reactor: "
        f"{100 * r['system_us_per_request'] / budget:.0f} % of the "
        "budget, whatever the Python does.",
        f"- wrk opens a connection per request too, on its one core: it used {wrk_r:.0f} % of it "
        f"against reactor and {wrk_u:.0f} % against uvicorn-uvloop. Near 100 % the client, not "
        "the server, would set the rate, and the requests/s ratio would understate the capacity "
        "ratio above.",
        "",
    ]


def sections(docs: Path) -> tuple[dict[str, Any] | None, ...]:
    """The other tools' results in ``docs`` that :func:`render_docs` takes after the
    charts, in its order (instructions, TLS, WSGI, floor); None for a file not there."""
    return tuple(
        json.loads((docs / name).read_text()) if (docs / name).exists() else None
        for name in (INSTRUCTIONS_JSON, TLS_JSON, WSGI_JSON, FLOOR_JSON)
    )


def write_docs(json_path: Path, page: Path, venv_dir: Path) -> None:
    """Write ``page`` (and its charts in docs/img/) from the results file ``json_path``."""
    report = json.loads(json_path.read_text())
    img_dir = page.parent / "img"
    charts: list[str] = []
    python = venv_python(venv_dir)
    if has_modules(python, CHART_MODULES):
        # matplotlib is in the peers' virtualenv only: the charts are drawn there.
        done = subprocess.run(
            [str(python), "-m", "loadtests.bench.page", str(json_path), str(img_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            progress(f"charts failed:\n{done.stderr[-2000:]}")
        charts = [Path(line).name for line in done.stdout.splitlines() if line.endswith(".png")]
    else:
        progress(f"no matplotlib in {venv_dir}: no charts (run a benchmark once to install it)")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_docs(report, json_path, charts, *sections(page.parent)))
    progress(f"wrote {page} and {len(charts)} chart(s) in {img_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loadtests.bench.page JSON IMG_DIR``: draw the charts, print their paths."""
    parser = argparse.ArgumentParser(description="Draw the benchmark charts of a results file.")
    parser.add_argument("json", type=Path)
    parser.add_argument("img_dir", type=Path)
    args = parser.parse_args(argv)
    for path in draw_charts(json.loads(args.json.read_text()), args.img_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
