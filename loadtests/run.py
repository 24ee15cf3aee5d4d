#!/usr/bin/env python3
"""Run one locust scenario against a reactor server it starts, and judge the result.

Usage (from anywhere; paths are relative to the repository)::

    python loadtests/run.py hello                       # 30 s, the scenario's users
    python loadtests/run.py mixed --run-time 10s --users 20
    python loadtests/run.py idle --shape step --run-time 2m
    python loadtests/run.py hello --processes 2         # 1 locust master + 2 workers

What one run does
-----------------
1. Starts ``python -m reactor --app APP --host 127.0.0.1 --port 0
   --no-access-log`` (APP from :data:`SCENARIOS`), reads the port it bound
   from the line it prints, and waits until it answers ``GET CHECK_PATH``.
2. Runs locust headless against ``http://127.0.0.1:PORT`` with
   ``loadtests/locustfiles/SCENARIO.py``, always with ``--run-time``. With
   ``--processes N`` it starts a ``--master`` (``--expect-workers N``) and N
   ``--worker`` processes, all bound to 127.0.0.1. ``--shape NAME`` sets
   ``$LOADTEST_SHAPE``, which the scenario turns into a load shape (see
   ``loadtests/locustfiles/shapes.py``).
3. Samples the CPU time of the server, of each locust process and of the
   machine once a second (from ``/proc``) while locust runs.
4. Stops the server by its PID: SIGTERM, then SIGKILL after
   :data:`STOP_TIMEOUT_S`. Every process it started is stopped the same way
   if it is still running, whatever happened (an interrupt, the timeout).
5. Reads locust's CSV report and prints a summary: requests, failures,
   requests/s, p50/p95/p99, per request name; the CPU the server and the
   generator used per second (to tell which one was the bottleneck);
   locust's CPU warnings; and the report files under ``loadtests/results/``.

Exit status: 0 if every request succeeded and p95 is within the scenario's
threshold (``--p95-ms`` overrides it); 1 if not, or if there were no requests,
the server died, or the run hit the hard timeout (``--timeout``, by default
the run time plus :data:`TIMEOUT_MARGIN_S`); 2 if the run could not start.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import importlib.util
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILES = ROOT / "loadtests" / "locustfiles"
RESULTS = ROOT / "loadtests" / "results"
HOST = "127.0.0.1"
SHAPES = ("step", "spike", "soak")
SHAPE_ENV = "LOADTEST_SHAPE"

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
SAMPLE_INTERVAL_S = 1.0
#: Added to the run time for the default hard timeout: locust's start-up, the
#: workers connecting, writing the reports.
TIMEOUT_MARGIN_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVING = re.compile(r"serving http://127\.0\.0\.1:(\d+)/ \(pid (\d+)\)")


@dataclass(frozen=True)
class Scenario:
    """One locustfile, the app it runs against and the defaults of its run."""

    app: str
    check_path: str
    users: int
    spawn_rate: float
    #: Above this p95 over all requests, in milliseconds, the run fails.
    p95_ms: float
    about: str


# The p95 thresholds are ten times or more what the runs in docs/loadtesting.md
# measured on a shared 2-core machine, so that only a real regression (or a
# machine saturated by something else) trips them.
SCENARIOS: dict[str, Scenario] = {
    "hello": Scenario("loadtests.hello:app", "/", 10, 10.0, 50.0, "GET / back to back, kept alive"),
    "mixed": Scenario(
        "loadtests.site:app", "/", 50, 25.0, 200.0, "JSON API, downloads with Range and 304, 404s"
    ),
    "idle": Scenario(
        "loadtests.hello:app", "/", 300, 100.0, 100.0, "hundreds of idle kept-alive users, 5 busy ones"
    ),
    "churn": Scenario("loadtests.hello:app", "/", 10, 10.0, 50.0, "GET / on a new connection each time"),
    "websocket": Scenario(
        "loadtests.ws_apps:app", "/", 200, 50.0, 100.0, "held WebSockets on /ws/echo, 5 sending back to back"
    ),
}


# -- small helpers ---------------------------------------------------------------


def progress(message: str) -> None:
    """A progress line on stdout, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_timespan(text: str) -> int:
    """Seconds in ``30``, ``30s``, ``2m``, ``1h30m`` (as locust's --run-time)."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a time span: {text!r} (use e.g. 30s, 2m, 1h30m)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds of a live process, from /proc; None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float | None:
    """Resident set size of a live process in MiB, from /proc; None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / CLK_TCK


@dataclass
class CpuSampler:
    """CPU seconds of some counters, sampled about once a second while locust runs.

    Utilisation per interval (CPU seconds over wall seconds) shows whether a
    process was saturated while the load ran; an average over the whole run
    would be diluted by locust's start-up and shut-down, when the server idles.
    """

    counters: dict[str, Callable[[], float | None]]
    times: list[float] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def sample(self) -> None:
        self.times.append(time.monotonic())
        for name, counter in self.counters.items():
            self.values.setdefault(name, []).append(counter())

    def total(self, name: str) -> float | None:
        """CPU seconds between the first and the last sample in which ``name`` was alive."""
        known = [value for value in self.values.get(name, []) if value is not None]
        return known[-1] - known[0] if len(known) >= 2 else None

    def utilisation(self, name: str) -> list[float]:
        """Per-interval utilisation of ``name``, 1.0 being one core busy."""
        values = self.values.get(name, [])
        rates = []
        for i in range(1, len(values)):
            before, after = values[i - 1], values[i]
            elapsed = self.times[i] - self.times[i - 1]
            if before is not None and after is not None and elapsed > 0:
                rates.append((after - before) / elapsed)
        return rates


def _median_peak(rates: list[float]) -> tuple[float, float] | None:
    return (statistics.median(rates), max(rates)) if rates else None


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived: clean up and stop."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# -- processes ---------------------------------------------------------------------


class Child:
    """A process this script started, logging to a file, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        # taskset (if any) execs the command, so this PID is the command's own.
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, limit: int = 2000) -> str:
        return self.log_text()[-limit:]

    def wait(self, deadline: float) -> int | None:
        """Wait until it exits or ``deadline`` (monotonic) passes; its status, or None."""
        try:
            return self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    progress(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout_s:.0f} s: SIGKILL")
                    self.proc.kill()
                    self.proc.wait(timeout_s)
            return self.proc.returncode
        finally:
            self._log.close()


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def answers(port: int, path: str) -> bool:
    """Whether ``GET path`` on 127.0.0.1:``port`` answers 200 (no proxy is ever consulted)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def start_server(scenario: Scenario, log_path: Path, cpus: str | None) -> tuple[Child, int]:
    """Start reactor on a free port; returns it and its port once it answers."""
    argv = [sys.executable, "-m", "reactor", "--app", scenario.app, "--host", HOST, "--port", "0"]
    server = Child("reactor", pinned([*argv, "--no-access-log"], cpus), log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    port = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"reactor exited with status {server.proc.returncode}:\n{server.log_tail()}")
        if port is None and (match := SERVING.search(server.log_text())) is not None:
            port = int(match.group(1))
            if int(match.group(2)) != server.pid:
                raise RuntimeError(f"reactor printed pid {match.group(2)}, but its pid is {server.pid}")
        if port is not None and answers(port, scenario.check_path):
            return server, port
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"reactor did not answer within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


@dataclass
class LocustRun:
    """The locust processes of one run: one standalone or master, and its workers."""

    main: Child
    workers: list[Child] = field(default_factory=list)

    @property
    def children(self) -> list[Child]:
        return [self.main, *self.workers]


def start_locust(args: argparse.Namespace, port: int, prefix: Path) -> LocustRun:
    """Start locust (a standalone process, or a master and workers) against ``port``."""
    locustfile = str(LOCUSTFILES / f"{args.scenario}.py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop(SHAPE_ENV, None)
    if args.shape:
        env[SHAPE_ENV] = args.shape
    base = [sys.executable, "-m", "locust", "-f", locustfile, "--host", f"http://{HOST}:{port}"]
    main_argv = [
        *base,
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.run_time}s",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        "--exit-code-on-error",
        "1",
    ]
    if not args.processes:
        main = Child(
            "locust", pinned(main_argv, args.locust_cpus), prefix.with_name(f"{prefix.name}-locust.log"), env
        )
        return LocustRun(main)
    master_port = free_port()
    main_argv += [
        "--master",
        "--master-bind-host",
        HOST,
        "--master-bind-port",
        str(master_port),
        "--expect-workers",
        str(args.processes),
        "--expect-workers-max-wait",
        str(int(START_TIMEOUT_S)),
    ]
    run = LocustRun(
        Child(
            "locust master",
            pinned(main_argv, args.locust_cpus),
            prefix.with_name(f"{prefix.name}-locust.log"),
            env,
        )
    )
    worker_argv = [*base, "--worker", "--master-host", HOST, "--master-port", str(master_port)]
    for number in range(1, args.processes + 1):
        log_path = prefix.with_name(f"{prefix.name}-worker{number}.log")
        run.workers.append(
            Child(f"locust worker {number}", pinned(worker_argv, args.locust_cpus), log_path, env)
        )
    return run


# -- the report ---------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of locust's ``_stats.csv``: a request name, or ``Aggregated``."""

    method: str
    name: str
    requests: int
    failures: int
    rps: float
    avg_ms: float
    max_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def _percentile(value: str) -> float | None:
    return None if value in ("", "N/A") else float(value)


def read_stats(path: Path) -> list[Row]:
    """The rows of a locust ``_stats.csv`` file, ``Aggregated`` last."""
    rows = []
    with path.open(newline="") as file:
        for record in csv.DictReader(file):
            rows.append(
                Row(
                    method=record["Type"],
                    name=record["Name"],
                    requests=int(record["Request Count"]),
                    failures=int(record["Failure Count"]),
                    rps=float(record["Requests/s"]),
                    avg_ms=float(record["Average Response Time"]),
                    max_ms=float(record["Max Response Time"]),
                    p50_ms=_percentile(record["50%"]),
                    p95_ms=_percentile(record["95%"]),
                    p99_ms=_percentile(record["99%"]),
                )
            )
    return rows


def read_failures(path: Path) -> list[tuple[int, str]]:
    """(occurrences, "METHOD name: error") from a locust ``_failures.csv`` file."""
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return [
            (int(r["Occurrences"]), f"{r['Method']} {r['Name']}: {r['Error']}") for r in csv.DictReader(file)
        ]


def read_exceptions(path: Path) -> list[tuple[int, str]]:
    """(count, message) from a locust ``_exceptions.csv`` file."""
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return [(int(r["Count"]), r["Message"]) for r in csv.DictReader(file)]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _utilisation(median_peak: tuple[float, float] | None) -> str:
    if median_peak is None:
        return "n/a"
    median, peak = median_peak
    return f"median {100 * median:.0f}%, peak {100 * peak:.0f}%"


# -- the run --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Run a locust scenario against a reactor it starts; exit 1 on failures or a slow p95.",
        epilog="scenarios: " + "; ".join(f"{name}: {s.about}" for name, s in SCENARIOS.items()),
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--run-time", type=parse_timespan, default=30, help="e.g. 10s, 2m (default 30s)")
    parser.add_argument("--users", type=int, help="peak concurrent users (default: the scenario's)")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (default: the scenario's)")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="locust worker processes under a master (default 0: one process)",
    )
    parser.add_argument("--shape", choices=SHAPES, help="a load shape instead of a constant load")
    parser.add_argument(
        "--p95-ms", type=float, help="fail above this p95 (default: the scenario's threshold)"
    )
    parser.add_argument("--timeout", type=float, help="hard limit on the whole run, seconds")
    parser.add_argument("--server-cpus", help="pin the server with taskset -c, e.g. 0")
    parser.add_argument("--locust-cpus", help="pin the locust processes with taskset -c, e.g. 1")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    args.users = args.users if args.users is not None else scenario.users
    args.spawn_rate = args.spawn_rate if args.spawn_rate is not None else scenario.spawn_rate
    args.p95_ms = args.p95_ms if args.p95_ms is not None else scenario.p95_ms
    if args.timeout is None:
        args.timeout = args.run_time + TIMEOUT_MARGIN_S
    if args.run_time < 1 or args.users < 1 or args.spawn_rate <= 0 or args.processes < 0:
        parser.error("--run-time, --users and --spawn-rate must be positive, --processes not negative")
    return args


def _report_prefix(scenario: str, shape: str | None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"locust-{scenario}{'-' + shape if shape else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    prefix = RESULTS / stem
    number = 2
    while list(RESULTS.glob(f"{prefix.name}[-_.]*")):
        prefix = RESULTS / f"{stem}-{number}"
        number += 1
    return prefix


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


@dataclass
class Measured:
    """What one run measured, beside locust's own report."""

    locust: LocustRun
    locust_status: int | None
    cpu: CpuSampler
    server_rss_mib: tuple[float | None, float | None]
    server_log: Path
    server_status: int | None = None
    problems: list[str] = field(default_factory=list)


def run(args: argparse.Namespace, scenario: Scenario, prefix: Path) -> Measured:
    """Start the server and locust, wait for locust, stop everything; what it measured.

    Raises:
        RuntimeError: the server did not start.
    """
    server: Child | None = None
    locust: LocustRun | None = None
    status: int | None = None
    deadline = time.monotonic() + args.timeout
    try:
        server, port = start_server(scenario, prefix.with_name(f"{prefix.name}-server.log"), args.server_cpus)
        progress(f"reactor ({scenario.app}) pid {server.pid} on http://{HOST}:{port}/")
        rss_start = rss_mib(server.pid)
        locust = start_locust(args, port, prefix)
        counters: dict[str, Callable[[], float | None]] = {
            "server": partial(cpu_seconds, server.pid),
            "machine": machine_busy_seconds,
        }
        for number, child in enumerate(locust.children):
            counters[f"locust{number}"] = partial(cpu_seconds, child.pid)
        cpu = CpuSampler(counters)
        pids = ", ".join(str(child.pid) for child in locust.children)
        workers = f", {args.processes} workers" if args.processes else ""
        progress(
            f"locust {args.scenario}: {args.users} users at {args.spawn_rate:g}/s for {args.run_time} s,"
            f" shape {args.shape or 'constant'}{workers} (pid {pids}); hard timeout {args.timeout:.0f} s"
        )
        problems = []
        cpu.sample()
        while locust.main.wait(min(deadline, time.monotonic() + SAMPLE_INTERVAL_S)) is None:
            if time.monotonic() >= deadline:
                problems.append(f"locust ran past the hard timeout of {args.timeout:.0f} s and was stopped")
                break
            cpu.sample()
        # Workers leave once the master quits; give them a moment, then stop them.
        for worker in locust.workers:
            worker.wait(min(deadline, time.monotonic() + STOP_TIMEOUT_S))
        for child in locust.children:
            child.stop()
        measured = Measured(
            locust=locust,
            locust_status=locust.main.proc.returncode,
            cpu=cpu,
            server_rss_mib=(rss_start, rss_mib(server.pid)),
            server_log=server.log_path,
            problems=problems,
        )
        if server.proc.poll() is not None:
            measured.problems.append(f"reactor died during the run with status {server.proc.returncode}")
    finally:
        # Whatever happened, stop what was started; the stops are bounded, so a
        # second Ctrl-C is not needed (and is ignored).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in locust.children if locust is not None else []:
            child.stop()
        if server is not None:
            status = server.stop()
    measured.server_status = status
    return measured


def report(args: argparse.Namespace, scenario: Scenario, prefix: Path, measured: Measured) -> int:
    """Print the summary; the exit status."""
    problems = measured.problems
    locust = measured.locust
    stats_path = Path(f"{prefix}_stats.csv")
    if not stats_path.exists():
        print(f"run.py: locust wrote no report (status {measured.locust_status}):", file=sys.stderr)
        print(locust.main.log_tail(), file=sys.stderr)
        return 1
    rows = read_stats(stats_path)
    total = next((row for row in rows if row.name == "Aggregated"), None)
    if total is None:
        print(f"run.py: no Aggregated row in {stats_path}", file=sys.stderr)
        return 1
    logs = [child.log_path for child in locust.children]
    cpu_warnings = sum(path.read_text(errors="replace").count("CPU usage") for path in logs)

    if total.requests == 0:
        problems.append("no requests were made")
    if total.failures:
        problems.append(f"{total.failures} requests failed")
    if total.p95_ms is not None and total.p95_ms > args.p95_ms:
        problems.append(f"p95 {total.p95_ms:.0f} ms is above the threshold of {args.p95_ms:g} ms")
    exceptions = read_exceptions(Path(f"{prefix}_exceptions.csv"))
    if exceptions:
        problems.append(f"{sum(count for count, _ in exceptions)} exceptions in locust tasks")
    if measured.locust_status != 0:
        problems.append(
            f"locust exited with status {measured.locust_status}; see {_rel(locust.main.log_path)}"
        )

    cores = os.cpu_count() or 1
    count = len(locust.children)
    generator = f"{count} process{'es' if count > 1 else ''}"
    rss_start, rss_end = measured.server_rss_mib
    rss = "n/a" if rss_start is None or rss_end is None else f"{rss_start:.1f} -> {rss_end:.1f} MiB"
    failure_share = 100.0 * total.failures / total.requests if total.requests else 0.0
    verdict = "ok" if total.p95_ms is None or total.p95_ms <= args.p95_ms else "EXCEEDED"

    print()
    print(f"== {args.scenario}: {scenario.about} ==")
    print(
        f"load        {args.users} users, spawn {args.spawn_rate:g}/s, {args.run_time} s,"
        f" shape {args.shape or 'constant'}, locust {generator}"
    )
    print(f"requests    {total.requests}")
    print(f"failures    {total.failures} ({failure_share:.2f}%)")
    print(f"throughput  {total.rps:.1f} req/s")
    print(
        f"latency ms  p50 {_ms(total.p50_ms)}  p95 {_ms(total.p95_ms)}  p99 {_ms(total.p99_ms)}"
        f"  (avg {total.avg_ms:.1f}, max {total.max_ms:.0f})"
    )
    print(f"threshold   p95 <= {args.p95_ms:g} ms: {verdict}")
    cpu = measured.cpu
    server_cpu = _median_peak(cpu.utilisation("server"))
    print(
        f"server      CPU {_seconds(cpu.total('server'))}; per second {_utilisation(server_cpu)} of one core"
        f" (its one thread); RSS {rss}"
    )
    names = [f"locust{number}" for number in range(count)]
    busiest = max((_median_peak(cpu.utilisation(name)) for name in names), key=lambda mp: mp or (0.0, 0.0))
    generator_cpu = sum(cpu.total(name) or 0.0 for name in names)
    print(
        f"generator   CPU {generator_cpu:.1f} s in {generator}; the busiest per second"
        f" {_utilisation(busiest)} of one core; CPU warnings {cpu_warnings}"
    )
    machine = _median_peak(cpu.utilisation("machine"))
    print(f"machine     per second {_utilisation(machine)} busy, of {cores * 100}% ({cores} cores)")
    if len(rows) > 2:
        labels = [row.name if row.name == "Aggregated" else f"{row.method} {row.name}" for row in rows]
        width = max(len(label) for label in labels)
        print(f"{'request':<{width}}  {'count':>7}  {'fail':>5}  {'p50':>5}  {'p95':>5}  {'p99':>5}")
        for label, row in zip(labels, rows, strict=True):
            print(
                f"{label:<{width}}  {row.requests:>7}  {row.failures:>5}  {_ms(row.p50_ms):>5}"
                f"  {_ms(row.p95_ms):>5}  {_ms(row.p99_ms):>5}"
            )
    for occurrences, text in read_failures(Path(f"{prefix}_failures.csv"))[:10]:
        print(f"failure     {occurrences} x {text}")
    for occurrences, text in exceptions[:5]:
        print(f"exception   {occurrences} x {text}")
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv", ".html"):
        path = Path(f"{prefix}{suffix}")
        if path.exists():
            print(f"report      {_rel(path)}")
    for path in [*logs, measured.server_log]:
        print(f"log         {_rel(path)}")
    print(f"server exit {measured.server_status}")
    for problem in problems:
        print(f"problem     {problem}")
    print(f"result      {'FAIL' if problems else 'PASS'}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    if importlib.util.find_spec("locust") is None:
        print("run.py: locust is not installed: pip install -e '.[test]'", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    prefix = _report_prefix(args.scenario, args.shape)
    try:
        measured = run(args, scenario, prefix)
    except RuntimeError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"run.py: interrupted by {exc}; stopped what it started", file=sys.stderr)
        return 1
    return report(args, scenario, prefix, measured)


if __name__ == "__main__":
    sys.exit(main())
