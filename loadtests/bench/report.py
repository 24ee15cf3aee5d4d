"""The results: one measurement, medians over rounds, ratios, the machine, the JSON file.

The JSON (:class:`Report`, ``loadtests/results/bench-<time>.json``) holds every
raw run and everything the page (:mod:`~loadtests.bench.page`) says, so that
the page can be re-made from it alone, anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench import CLIENT_CPU, ROOT, SERVER_CPU
from loadtests.bench.measurement import CLK_TCK
from loadtests.bench.servers import SUBJECT, Env, ServerDef, reactor_fingerprint

# -- one measurement, medians, ratios ---------------------------------------------------


@dataclass
class Measurement:
    """One (round, server, workload) measurement."""

    round: int
    server: str
    workload: str
    requests: int
    elapsed_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    socket_errors: dict[str, int]
    non_2xx: int
    server_cpu_s: float
    cpu_us_per_request: float
    user_us_per_request: float
    system_us_per_request: float
    server_cpu_percent: float
    #: wrk's own CPU over the run's wall time.
    wrk_cpu_percent: float
    #: Busy CPU on the machine that is neither the server's nor wrk's (other
    #: processes, interrupts, steal), over wall time; 100 is one whole core.
    #: Loopback networking in softirq counts here, so it is never 0; a value far
    #: above that of the other runs means something else ran during this one.
    other_cpu_percent: float
    steal_percent: float
    #: 1 for the first measurement, 2 and up for one redone (see ``--max-other``).
    attempt: int
    #: Seconds spent waiting for the machine to go quiet before the warm-up.
    quiet_wait_s: float
    server_rss_kib: int | None
    wrk_argv: list[str]


@dataclass
class Summary:
    """Medians over the rounds for one (server, workload)."""

    server: str
    workload: str
    rounds: int
    requests_per_s: float
    requests_per_s_min: float
    requests_per_s_max: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    user_us_per_request: float
    system_us_per_request: float
    server_cpu_percent: float
    other_cpu_percent: float
    errors: int  # socket errors and non-2xx responses, all rounds together


def summarize(runs: Sequence[Measurement]) -> Summary:
    rps = [run.requests_per_s for run in runs]
    return Summary(
        server=runs[0].server,
        workload=runs[0].workload,
        rounds=len(runs),
        requests_per_s=statistics.median(rps),
        requests_per_s_min=min(rps),
        requests_per_s_max=max(rps),
        p50_ms=statistics.median(run.latency_ms["50"] for run in runs),
        p99_ms=statistics.median(run.latency_ms["99"] for run in runs),
        cpu_us_per_request=statistics.median(run.cpu_us_per_request for run in runs),
        user_us_per_request=statistics.median(run.user_us_per_request for run in runs),
        system_us_per_request=statistics.median(run.system_us_per_request for run in runs),
        server_cpu_percent=statistics.median(run.server_cpu_percent for run in runs),
        other_cpu_percent=statistics.median(run.other_cpu_percent for run in runs),
        errors=sum(sum(run.socket_errors.values()) + run.non_2xx for run in runs),
    )


@dataclass
class Ratio:
    """The subject's medians over a peer's, for one workload."""

    workload: str
    subject: str
    peer: str
    requests_per_s: float  # > 1: the subject serves more
    cpu_us_per_request: float  # > 1: the subject spends more CPU per request
    p99_ms: float


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def ratios(summaries: Sequence[Summary]) -> list[Ratio]:
    by_key = {(s.server, s.workload): s for s in summaries}
    found: list[Ratio] = []
    for summary in summaries:
        if summary.server == SUBJECT:
            continue
        subject = by_key.get((SUBJECT, summary.workload))
        if subject is None:
            continue
        found.append(
            Ratio(
                workload=summary.workload,
                subject=SUBJECT,
                peer=summary.server,
                requests_per_s=_ratio(subject.requests_per_s, summary.requests_per_s),
                cpu_us_per_request=_ratio(subject.cpu_us_per_request, summary.cpu_us_per_request),
                p99_ms=_ratio(subject.p99_ms, summary.p99_ms),
            )
        )
    return found


# -- the machine -------------------------------------------------------------


def run_about(module: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """What a run of ``python -m MODULE`` was, for its JSON: the command, the
    day, the checkout and the reactor sources it ran, and the load after it."""
    return {
        "command": ["python", "-m", module, *(sys.argv[1:] if argv is None else argv)],
        "date": time.strftime("%Y-%m-%d"),
        "git": _first_line(["git", "describe", "--always", "--dirty"]),
        # Which reactor ran, whatever else the checkout had uncommitted.
        "reactor_sources_sha256": reactor_fingerprint(ROOT),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def _first_line(argv: list[str], cwd: Path = ROOT) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info(env: Env, servers: Sequence[ServerDef]) -> dict[str, Any]:
    """What the figures depend on: the machine, the interpreters, the versions."""
    versions: dict[str, str] = {
        "reactor": _first_line([env.python, "-c", "import reactor; print(reactor.__version__)"], env.src),
        # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer": name, version, backend.
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
        "nginx": _first_line(["nginx", "-v"]).removeprefix("nginx version: "),
    }
    packages = sorted({package for server in servers for package in server.packages} | {"matplotlib"})
    if packages:
        script = (
            "import importlib.metadata as m\n"
            f"for name in {packages!r}:\n"
            "    try:\n"
            "        print(name, m.version(name))\n"
            "    except m.PackageNotFoundError:\n"
            "        pass\n"
        )
        done = subprocess.run(
            [env.peer_python, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        for line in done.stdout.splitlines():
            name, _, version = line.partition(" ")
            versions[name] = version
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": env.python,
        "versions": versions,
        "git": _first_line(["git", "describe", "--always", "--dirty"], env.origin),
        "reactor_sources_sha256": reactor_fingerprint(env.src),
        "servers_run_from": str(env.src),
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "clk_tck": CLK_TCK,
    }
    if any(server.needs_venv for server in servers):
        info["peer_python"] = _first_line(
            [env.peer_python, "-c", "import platform; print(platform.python_version())"]
        )
    return info


def python_costs() -> dict[str, float]:
    """Nanoseconds per operation of CPython on this machine (best of 5 ``timeit`` runs)."""
    import timeit

    setup = (
        "def f():\n    return None\n"
        "class C:\n    __slots__ = ('a',)\n    def m(self):\n        return self.a\n"
        "c = C(); c.a = 1; d = {'host': b'x'}\n"
        "line = b'GET / HTTP/1.1'\n"
    )
    cases = {
        "a call of a Python function that returns at once": "f()",
        "a method call reading one slot": "c.m()",
        "a dict lookup": "d['host']",
        "splitting a request line": "line.split(b' ', 2)",
    }
    costs: dict[str, float] = {}
    for what, statement in cases.items():
        timer = timeit.Timer(statement, setup)
        number = 200_000
        costs[what] = min(timer.repeat(5, number)) / number * 1e9
    return costs


# -- the run as a whole ------------------------------------------------------


@dataclass
class Report:
    started: str
    finished: str = ""
    command: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Servers (or parts of the run) left out, and why: a failed install, start or run.
    failures: dict[str, str] = field(default_factory=dict)
    starts: list[dict[str, Any]] = field(default_factory=list)
    runs: list[Measurement] = field(default_factory=list)
    #: Measurements redone because other processes used the machine meanwhile.
    discarded: list[Measurement] = field(default_factory=list)
    medians: list[Summary] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    idle: list[dict[str, Any]] = field(default_factory=list)
    static: dict[str, Any] = field(default_factory=dict)
    #: What CPython costs on this machine (see :func:`python_costs`): the page quotes it.
    python_costs: dict[str, float] = field(default_factory=dict)
    path: str = ""


def save(report: Report) -> None:
    """Write the JSON file (again): a run cut short still leaves what it measured."""
    out = Path(report.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(report), indent=2) + "\n")


def markdown(
    summaries: Sequence[Summary], found: Sequence[Ratio], info: dict[str, Any], args: argparse.Namespace
) -> str:
    versions = info["versions"]
    peer_versions = ", ".join(
        f"{name} {versions[name]}" for name in ("uvicorn", "uvloop", "httptools") if name in versions
    )
    lines = [
        f"### Benchmark: medians of {args.rounds} round(s), {args.duration} s per run",
        "",
        f"Machine: nproc {info['nproc']}, CPU {info['cpu_model']}, kernel {info['kernel']}, "
        f"Python {info['python']}"
        + (f"; {peer_versions}" if peer_versions else "")
        + f"; {versions['wrk']}.",
        f"Server pinned to core {SERVER_CPU}, wrk to core {CLIENT_CPU}; reactor {versions['reactor']} "
        f"at {info['git']} (sources {info['reactor_sources_sha256']}).",
        "",
        "| workload | server | req/s | req/s min-max | p50 ms | p99 ms | CPU us/req | user+sys us/req "
        "| server CPU % | other CPU % | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        lines.append(
            f"| {s.workload} | {s.server} | {s.requests_per_s:,.0f} | "
            f"{s.requests_per_s_min:,.0f}-{s.requests_per_s_max:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | "
            f"{s.cpu_us_per_request:.1f} | {s.user_us_per_request:.1f}+{s.system_us_per_request:.1f} | "
            f"{s.server_cpu_percent:.0f} | {s.other_cpu_percent:.0f} | {s.errors} |"
        )
    if found:
        lines += [
            "",
            "| workload | ratio | req/s ratio | CPU us/req ratio | p99 ratio |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for r in found:
            lines.append(
                f"| {r.workload} | {r.subject}/{r.peer} | {r.requests_per_s:.2f} | "
                f"{r.cpu_us_per_request:.2f} | {r.p99_ms:.2f} |"
            )
    lines += [
        "",
        "CPU us/req: user+system CPU of the server process (and children) over requests completed; "
        "user+sys: its split (each a median of its own). other CPU %: busy CPU on the machine that "
        "is neither the server's nor wrk's (loopback softirq, other processes), in % of one core. "
        "errors: socket errors and non-2xx responses, all rounds together.",
    ]
    return "\n".join(lines)
