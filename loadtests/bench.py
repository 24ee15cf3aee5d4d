#!/usr/bin/env python3
"""Measure reactor against peer servers with wrk, in one command; write the results and the docs page.

Usage (from anywhere; paths are relative to the repository)::

    python3 loadtests/bench.py                      # everything: 3 rounds of 10 s per workload
    python3 loadtests/bench.py --quick              # smoke: reactor and uvicorn-uvloop, 1 round of 2 s
    python3 loadtests/bench.py --servers reactor,aiohttp --workloads keepalive,idle
    python3 loadtests/bench.py --report loadtests/results/bench-X.json   # re-write docs/benchmarks.md

Servers (:data:`SERVERS`): reactor, and as peers the stdlib ``ThreadingHTTPServer``
(HTTP/1.1), waitress, gunicorn's sync worker, tornado, aiohttp, uvicorn with
h11 and with uvloop+httptools, and twisted.web; their apps are in
``loadtests/peers/``. Every server is one process pinned to core 0; wrk to core 1.

Workloads: ``keepalive``, ``close`` (``Connection: close``), ``pipelined`` (16
GETs per batch), ``post-1k`` (:data:`WORKLOADS`, wrk against every server),
``static`` (a 256 MiB file, reactor ``--static`` against nginx, with the logic of
``loadtests/bench_static.py``) and ``idle`` (server RSS per idle keep-alive
connection, N of them per server).

What one run does
-----------------
For each round, each server is started in turn on a free port on 127.0.0.1,
pinned to core 0 (``taskset -c 0``), and checked: every selected workload's
request must get the expected answer. Then, for each workload, wrk (pinned to
core 1) warms the server up for :data:`WARMUP_S` seconds and measures it for
``--duration`` seconds. The server is then stopped by its PID (SIGTERM, then
SIGKILL after :data:`STOP_TIMEOUT_S`). Rounds alternate the order of the
servers so that a drift of the machine favours none of them. Medians over the
rounds are reported. A server that fails to install, start or answer is left
out (with the reason in the results) and the run goes on with the others.

Figures per (server, workload)
------------------------------
* requests/s, and p50 and p99 latency, from ``wrk --latency`` (for pipelined
  GETs wrk counts every answer, but its latencies are per batch and skewed:
  see :data:`NO_LATENCY_WORKLOADS`);
* server CPU per request: user+system CPU time of the server process and its
  children (``/proc/PID/stat`` before and after the wrk run, in clock ticks of
  ``SC_CLK_TCK``) divided by the requests wrk completed;
* server CPU utilisation: that CPU time over the wall time of the run (100 %
  means the server's core was saturated, so requests/s is CPU-bound);
* other CPU: busy CPU on the machine that is neither the server's nor wrk's.

A shared machine
----------------
Others may use the machine (test suites, builds) while a run lasts minutes.
Before each warm-up the script waits (``--quiet-wait`` s at most) until the
machine has been idle for a second; a measurement during which others used
more than ``--max-other`` % of a core is redone (``--retries`` times at most,
keeping the least disturbed one; the others stay in the JSON as
``discarded``). CPU per request is the steadier figure under such noise;
requests/s suffers first.

The servers run from a copy of ``reactor/`` and ``loadtests/`` taken at the
start (``--no-snapshot``: from the work tree; ``--src DIR``: from another
checkout, e.g. a ``git worktree`` of an older commit, to compare two
versions), so edits made meanwhile do not mix two versions in one table; a
hash of the measured ``reactor/`` sources is in the report.

Output: progress lines, then a markdown table of medians on stdout; every raw
run and the medians in a JSON file (``loadtests/results/bench-<timestamp>.json``
unless ``--out`` says otherwise); and, unless ``--no-docs`` (or ``--quick``),
``docs/benchmarks.md`` with PNG charts in ``docs/img/``, drawn with matplotlib
by the peers' virtualenv's python (reactor's own runtime stays the standard
library). ``--report JSON`` re-writes the page and charts from a results file.

The peers run from a private virtualenv (``--venv``, by default
``loadtests/.venv-peers``) that this script creates and fills with pip, by
package name, when it lacks them. Adding a server or a workload is one entry
in :data:`SERVERS` or :data:`WORKLOADS`.

Every process this script starts is stopped by its PID before it exits; all
traffic goes to 127.0.0.0/8; every wrk run and every wait has a time limit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOADTESTS = ROOT / "loadtests"
DEFAULT_VENV = LOADTESTS / ".venv-peers"
RESULTS = LOADTESTS / "results"

HOST = "127.0.0.1"
SERVER_CPU = "0"  # taskset -c for the server under test
CLIENT_CPU = "1"  # taskset -c for wrk
WARMUP_S = 1
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PIP_TIMEOUT_S = 900.0
# wrk is killed if it runs this much longer than asked (it never should).
WRK_GRACE_S = 30.0
WRK_TIMEOUT_S = 10
# Before each measured run, wait (at most --quiet-wait s) until the whole
# machine is at most this busy, in percent of one core, over one second.
QUIET_BUSY_PERCENT = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# What the peers' virtualenv holds besides the peers (each server names its own
# requirements in :data:`SERVERS`): matplotlib draws the charts, and runs only there,
# so that reactor's own runtime stays the standard library.
CHART_REQUIREMENTS = ("matplotlib",)
CHART_MODULES = ("matplotlib",)


# -- the environment the servers run in ------------------------------------


@dataclass(frozen=True)
class Env:
    """Where servers run: ``python`` runs reactor, ``peer_python`` the peers, from ``src``."""

    python: str
    peer_python: str
    #: The directory the servers run from (``reactor/`` and ``loadtests/`` in it).
    src: Path
    #: Where those sources come from (the work tree, or ``--src``): what git describes.
    origin: Path


def _redact(text: str) -> str:
    """Tool output without addresses (pip names the hosts it downloads from)."""
    return re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", "<url>", text)


def _venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _has_modules(python: Path, modules: Sequence[str]) -> bool:
    if not python.exists():
        return False
    if not modules:
        return True
    probe = subprocess.run(
        [str(python), "-c", f"import {', '.join(modules)}"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


def _pip_install(python: Path, requirements: Sequence[str]) -> str | None:
    """``pip install`` by package name; None if it worked, else the (redacted) end of its output."""
    progress(f"installing {' '.join(requirements)} (pip, by package name)")
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"pip took more than {PIP_TIMEOUT_S:.0f} s"
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("WARNING")]
    return _redact("\n".join(lines)[-1500:]) or f"pip exited with {done.returncode}"


def ensure_venv(venv_dir: Path, servers: Sequence[ServerDef], charts: bool) -> tuple[Path, dict[str, str]]:
    """The venv's python, after creating it and installing what it lacks.

    Returns the python and, for each server that could not be installed, why:
    such a server is left out of the run, not the whole run.
    """
    python = _venv_python(venv_dir)
    if not python.exists():
        progress(f"creating the peers' virtualenv in {venv_dir}")
        venv.EnvBuilder(with_pip=True, symlinks=True).create(venv_dir)
        # Keep the venv out of git wherever it is made.
        (venv_dir / ".gitignore").write_text("*\n")
    wanted: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        server.name: (server.requirements, server.modules) for server in servers if server.needs_venv
    }
    if charts:
        wanted["(charts)"] = (CHART_REQUIREMENTS, CHART_MODULES)
    missing = {name: need for name, need in wanted.items() if not _has_modules(python, need[1])}
    failures: dict[str, str] = {}
    if missing:
        everything = sorted({req for requirements, _ in missing.values() for req in requirements})
        if _pip_install(python, everything) is not None:
            # One at a time, so that one peer that cannot be installed costs only itself.
            for name, (requirements, _) in missing.items():
                error = _pip_install(python, requirements)
                if error is not None:
                    failures[name] = f"pip install {' '.join(requirements)} failed: {error}"
        for name, (requirements, modules) in missing.items():
            if name not in failures and not _has_modules(python, modules):
                failures[name] = f"installed {' '.join(requirements)}, but cannot import {', '.join(modules)}"
    for name, why in failures.items():
        progress(f"left out {name}: {why.splitlines()[0]}")
    return python, failures


# -- servers ---------------------------------------------------------------


@dataclass(frozen=True)
class ServerDef:
    """How to run one server: ``command(env, port)`` is its argv (without taskset)."""

    name: str
    description: str
    command: Callable[[Env, int], list[str]]
    #: Whether it runs from the peers' virtualenv.
    needs_venv: bool
    #: Distributions whose versions the report names.
    packages: tuple[str, ...] = ()
    #: What pip installs for it (by name), and the modules that prove it is there.
    requirements: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    #: Extra arguments for the idle-connection measurement (limits, idle timeouts).
    idle_args: tuple[str, ...] = ()
    #: Why the server is not asked to hold idle connections, if it is not.
    idle_skip: str | None = None
    #: A remark on how it runs, for the report.
    note: str = ""


def _reactor_command(env: Env, port: int) -> list[str]:
    return [
        env.python,
        "-m",
        "reactor",
        "--app",
        "loadtests.hello:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
    ]


def _uvicorn(loop: str, http: str) -> Callable[[Env, int], list[str]]:
    def command(env: Env, port: int) -> list[str]:
        return [
            env.peer_python,
            "-m",
            "uvicorn",
            "loadtests.peers.asgi_hello:app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--loop",
            loop,
            "--http",
            http,
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    return command


def _peer_module(module: str, venv: bool = True) -> Callable[[Env, int], list[str]]:
    """``python -m loadtests.peers.MODULE --host HOST --port PORT``, from the venv if ``venv``."""

    def command(env: Env, port: int) -> list[str]:
        python = env.peer_python if venv else env.python
        return [python, "-m", f"loadtests.peers.{module}", "--host", HOST, "--port", str(port)]

    return command


def _waitress_command(env: Env, port: int) -> list[str]:
    # Default threads (4) and connection_limit (100); waitress logs no access lines.
    return [
        env.peer_python,
        "-m",
        "waitress",
        f"--host={HOST}",
        f"--port={port}",
        "--backlog=1024",
        "loadtests.peers.wsgi_hello:app",
    ]


def _gunicorn_command(env: Env, port: int) -> list[str]:
    # No --access-logfile: gunicorn writes no access log unless given one.
    return [
        env.peer_python,
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--worker-class",
        "sync",
        "--bind",
        f"{HOST}:{port}",
        "--backlog",
        "1024",
        "--log-level",
        "warning",
        "loadtests.peers.wsgi_hello:app",
    ]


#: What a server with connection-per-thread or connection-at-a-time cannot do.
_GUNICORN_IDLE = (
    "the sync worker serves one connection at a time and closes it after the answer (no keep-alive)"
)

#: Every server, the subject first: ratios are the subject over each other one.
SERVERS: dict[str, ServerDef] = {
    server.name: server
    for server in (
        ServerDef(
            "reactor",
            "reactor, loadtests/hello.py, one process",
            _reactor_command,
            needs_venv=False,
            idle_args=("--max-connections", "20000", "--keepalive-timeout", "600"),
        ),
        ServerDef(
            "stdlib",
            "http.server.ThreadingHTTPServer, HTTP/1.1, loadtests/peers/stdlib_hello.py",
            _peer_module("stdlib_hello", venv=False),
            needs_venv=False,
            note="a thread per connection",
        ),
        ServerDef(
            "waitress",
            "waitress (4 threads, the default), loadtests/peers/wsgi_hello.py",
            _waitress_command,
            needs_venv=True,
            packages=("waitress",),
            requirements=("waitress",),
            modules=("waitress",),
            idle_skip="connection_limit is 100 by default: it stops accepting beyond 100 connections",
        ),
        ServerDef(
            "gunicorn",
            "gunicorn -w 1 -k sync, loadtests/peers/wsgi_hello.py",
            _gunicorn_command,
            needs_venv=True,
            packages=("gunicorn",),
            requirements=("gunicorn",),
            modules=("gunicorn",),
            idle_skip=_GUNICORN_IDLE,
            note="the sync worker does no keep-alive: every answer closes its connection, so the "
            "keep-alive, pipelined and POST workloads reconnect for every request (or batch)",
        ),
        ServerDef(
            "tornado",
            "tornado RequestHandlers on one IOLoop, loadtests/peers/tornado_hello.py",
            _peer_module("tornado_hello"),
            needs_venv=True,
            packages=("tornado",),
            requirements=("tornado",),
            modules=("tornado",),
        ),
        ServerDef(
            "aiohttp",
            "aiohttp web.Application, access_log=None, loadtests/peers/aiohttp_hello.py",
            _peer_module("aiohttp_hello"),
            needs_venv=True,
            packages=("aiohttp",),
            requirements=("aiohttp",),
            modules=("aiohttp",),
        ),
        ServerDef(
            "uvicorn-h11",
            "uvicorn --loop asyncio --http h11, loadtests/peers/asgi_hello.py",
            _uvicorn("asyncio", "h11"),
            needs_venv=True,
            packages=("uvicorn", "h11"),
            requirements=("uvicorn",),
            modules=("uvicorn", "h11"),
            idle_args=("--timeout-keep-alive", "600"),
        ),
        ServerDef(
            "uvicorn-uvloop",
            "uvicorn --loop uvloop --http httptools, loadtests/peers/asgi_hello.py",
            _uvicorn("uvloop", "httptools"),
            needs_venv=True,
            packages=("uvicorn", "uvloop", "httptools"),
            requirements=("uvicorn[standard]",),
            modules=("uvicorn", "uvloop", "httptools"),
            idle_args=("--timeout-keep-alive", "600"),
        ),
        ServerDef(
            "twisted",
            "twisted.web Resource on the epoll reactor, loadtests/peers/twisted_hello.py",
            _peer_module("twisted_hello"),
            needs_venv=True,
            packages=("Twisted",),
            requirements=("twisted",),
            modules=("twisted.web",),
        ),
    )
}
SUBJECT = "reactor"
#: The peer every goal is set against: uvicorn with uvloop and httptools.
REFERENCE = "uvicorn-uvloop"
QUICK_SERVERS = ("reactor", "uvicorn-uvloop")


# -- workloads -------------------------------------------------------------

ECHO_BODY = b"x" * 1024

_POST_ECHO_LUA = """\
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
"""

#: Pipelined GETs: wrk's classic pipeline.lua. ``request`` returns 16 requests in
#: one buffer; wrk parses that buffer once to learn the depth, writes it, and
#: writes the next batch when all 16 answers are in. It counts every answer as
#: a request (so its requests/s and our CPU per request are per GET), but
#: records one latency per batch: from writing the 16 to reading the 16th answer.
PIPELINE_DEPTH = 16
_PIPELINE_LUA = f"""\
init = function(args)
  local batch = {{}}
  for i = 1, {PIPELINE_DEPTH} do
    batch[i] = wrk.format(nil, "/")
  end
  pipeline = table.concat(batch)
end

request = function()
  return pipeline
end
"""


@dataclass(frozen=True)
class Workload:
    """One wrk load: what it sends, and the answer a server must give to it."""

    name: str
    description: str
    path: str = "/"
    #: Extra request headers (wrk -H).
    headers: tuple[str, ...] = ()
    #: A wrk Lua script, written to a temporary file (wrk -s).
    lua: str | None = None
    threads: int = 1
    connections: int = 50
    #: The check run before measuring: method, body, expected response body.
    check_method: str = "GET"
    check_body: bytes | None = None
    expect_body: bytes = b"Hello, World!"


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload("keepalive", "GET / on 50 keep-alive connections"),
        Workload(
            "close",
            "GET / with Connection: close (a new connection per request)",
            headers=("Connection: close",),
        ),
        Workload(
            "pipelined",
            f"GET / pipelined {PIPELINE_DEPTH} deep on 50 keep-alive connections (latency: per batch of 16)",
            lua=_PIPELINE_LUA,
        ),
        Workload(
            "post-1k",
            "POST /echo with a 1 KiB body, keep-alive",
            path="/echo",
            lua=_POST_ECHO_LUA,
            check_method="POST",
            check_body=ECHO_BODY,
            expect_body=ECHO_BODY,
        ),
    )
}


# -- processes, CPU time ---------------------------------------------------


def progress(message: str) -> None:
    """A progress line on stdout, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return text[text.rindex(")") + 2 :].split()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of ``pid``, its reaped children and its live descendants."""
    fields = _stat_fields(pid)
    if fields is None:
        raise RuntimeError(f"process {pid} is gone")
    # Fields 14-17: utime, stime, cutime, cstime (indices 11-14 from field 3).
    user = int(fields[11]) + int(fields[13])
    system = int(fields[12]) + int(fields[14])
    for child in _descendants(pid):
        child_fields = _stat_fields(child)
        if child_fields is not None:
            user += int(child_fields[11])
            system += int(child_fields[12])
    return user, system


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy, fields[7]


def wait_quiet(timeout_s: float, busy_limit_percent: float = QUIET_BUSY_PERCENT) -> float:
    """Wait until the machine is idle for a second (others share it); returns the seconds waited.

    Between runs the server is idle and wrk is not running, so any busy CPU is
    someone else's. Gives up after ``timeout_s`` and measures anyway.
    """
    start = time.monotonic()
    while True:
        busy_before, _ = machine_ticks()
        time.sleep(1.0)
        busy = (machine_ticks()[0] - busy_before) / CLK_TCK * 100.0
        waited = time.monotonic() - start
        if busy <= busy_limit_percent or waited >= timeout_s:
            if waited > 1.5:
                progress(f"waited {waited:.0f} s for the machine to go quiet (now {busy:.0f}% busy)")
            return waited


def children_cpu_s() -> float:
    """User+system seconds of this script's reaped children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_kib(pid: int) -> int | None:
    """The resident set size of ``pid`` in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


class ServerProcess:
    """One server started by this script, pinned to :data:`SERVER_CPU`."""

    def __init__(self, server: ServerDef, env: Env, log_dir: Path, extra: Sequence[str] = ()) -> None:
        self.server = server
        self.port = free_port()
        self.log_path = log_dir / f"{server.name}-{self.port}.log"
        self.argv = ["taskset", "-c", SERVER_CPU, *server.command(env, self.port), *extra]
        self._log = self.log_path.open("wb")
        # taskset execs the server, so this PID is the server's own.
        self.proc = subprocess.Popen(
            self.argv, cwd=env.src, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid

    def log_tail(self, limit: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-limit:]

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Wait until ``GET /`` answers 200; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.server.name} exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                status, _ = http_request(self.port, "GET", "/", None, timeout_s=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return time.monotonic() - start
            time.sleep(0.05)
        raise RuntimeError(f"{self.server.name} did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def affinity(self) -> list[int]:
        return sorted(os.sched_getaffinity(self.pid))

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; returns the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    progress(f"{self.server.name} (pid {self.pid}) ignored SIGTERM: SIGKILL")
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT_S)
            return self.proc.returncode
        finally:
            self._log.close()


@contextmanager
def running(server: ServerDef, env: Env, log_dir: Path, extra: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """A started server (with ``extra`` arguments); stopped on exit whatever happens."""
    process = ServerProcess(server, env, log_dir, extra)
    try:
        yield process
    finally:
        status = process.stop()
        if status not in (0, -signal.SIGTERM, None):
            progress(f"{server.name} exited with status {status}; log: {process.log_path}")


def http_request(
    port: int, method: str, path: str, body: bytes | None, timeout_s: float = 5.0
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:``port``; returns the status and the body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_answers(process: ServerProcess, workloads: Sequence[Workload]) -> None:
    """Refuse to measure a server that answers a workload's request wrongly."""
    for workload in workloads:
        status, body = http_request(process.port, workload.check_method, workload.path, workload.check_body)
        if status != 200 or body != workload.expect_body:
            raise RuntimeError(
                f"{process.server.name} answered {workload.check_method} {workload.path} "
                f"with {status} and {len(body)} bytes {body[:60]!r}, not 200 and the expected body"
            )


# -- wrk ---------------------------------------------------------------------

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    elapsed_s: float
    requests_per_s: float
    latency_ms: dict[str, float]  # percentile ("50", "75", "90", "99") -> ms
    socket_errors: dict[str, int]  # connect, read, write, timeout
    non_2xx: int

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx


def parse_wrk(output: str) -> WrkResult:
    """Parse the text of ``wrk --latency``."""
    done = re.search(rf"(\d+) requests in {_NUMBER}", output)
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if done is None or rate is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    latency = {
        match.group(1): float(match.group(2)) * _UNITS_S[match.group(3)] * 1000.0
        for match in re.finditer(rf"^\s+(50|75|90|99)%\s+{_NUMBER}\s*$", output, re.MULTILINE)
    }
    # No latency recorded (wrk prints 0.00us): gunicorn's pipelined batches never
    # complete, as it closes after the first answer. Not a figure: NaN.
    latency = {key: value if value > 0 else float("nan") for key, value in latency.items()}
    if not {"50", "99"} <= latency.keys():
        raise ValueError(f"no latency distribution in wrk output:\n{output}")
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors is not None:
        socket_errors = dict(zip(socket_errors, (int(group) for group in errors.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(done.group(1)),
        elapsed_s=float(done.group(2)) * _UNITS_S[done.group(3)],
        requests_per_s=float(rate.group(1)),
        latency_ms=latency,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_argv(workload: Workload, port: int, duration_s: int, script: Path | None) -> list[str]:
    argv = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        f"-t{workload.threads}",
        f"-c{workload.connections}",
        f"-d{duration_s}s",
        # Latencies beyond the timeout are not in wrk's histogram (they count as
        # timeouts): 10 s rather than 2 s keeps slow servers' p99 measurable.
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        "--latency",
    ]
    for header in workload.headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(f"http://{HOST}:{port}{workload.path}")
    return argv


def run_wrk(argv: list[str], duration_s: int) -> str:
    """Run wrk to completion (bounded) and return its output."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + WRK_GRACE_S, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


# -- measuring ---------------------------------------------------------------


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


def measure(
    process: ServerProcess,
    workload: Workload,
    duration_s: int,
    round_no: int,
    scripts: dict[str, Path],
    quiet_wait_s: float,
) -> Measurement:
    """Warm up, then measure one workload on a running server."""
    script = scripts.get(workload.name)
    waited_s = wait_quiet(quiet_wait_s) if quiet_wait_s > 0 else 0.0
    run_wrk(wrk_argv(workload, process.port, WARMUP_S, script), WARMUP_S)
    argv = wrk_argv(workload, process.port, duration_s, script)
    before = cpu_ticks(process.pid)
    machine_before = machine_ticks()
    wrk_before = children_cpu_s()
    started = time.monotonic()
    output = run_wrk(argv, duration_s)
    wall_s = time.monotonic() - started
    after = cpu_ticks(process.pid)
    machine_after = machine_ticks()
    wrk_s = children_cpu_s() - wrk_before
    result = parse_wrk(output)
    user_s = (after[0] - before[0]) / CLK_TCK
    system_s = (after[1] - before[1]) / CLK_TCK
    cpu_s = user_s + system_s
    busy_s = (machine_after[0] - machine_before[0]) / CLK_TCK
    steal_s = (machine_after[1] - machine_before[1]) / CLK_TCK
    per_request_us = 1e6 / result.requests if result.requests else float("nan")
    return Measurement(
        round=round_no,
        server=process.server.name,
        workload=workload.name,
        requests=result.requests,
        elapsed_s=result.elapsed_s,
        requests_per_s=result.requests_per_s,
        latency_ms=result.latency_ms,
        socket_errors=result.socket_errors,
        non_2xx=result.non_2xx,
        server_cpu_s=cpu_s,
        cpu_us_per_request=cpu_s * per_request_us,
        user_us_per_request=user_s * per_request_us,
        system_us_per_request=system_s * per_request_us,
        server_cpu_percent=100.0 * cpu_s / wall_s,
        wrk_cpu_percent=100.0 * wrk_s / wall_s,
        other_cpu_percent=100.0 * max(busy_s - cpu_s - wrk_s, 0.0) / wall_s,
        steal_percent=100.0 * steal_s / wall_s,
        quiet_wait_s=round(waited_s, 1),
        attempt=1,
        server_rss_kib=rss_kib(process.pid),
        wrk_argv=argv,
    )


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


# -- idle connections --------------------------------------------------------

#: Source addresses for the idle connections: 16 of them, so that the client
#: never runs short of ephemeral ports and its search for one stays cheap.
IDLE_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 18))
IDLE_OPEN_TIMEOUT_S = 180.0
IDLE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
IDLE_SETTLE_S = 2.0


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` and all its descendants (gunicorn's worker, say), in KiB."""
    return sum(rss_kib(member) or 0 for member in (pid, *_descendants(pid)))


def open_idle(port: int, n: int, deadline: float) -> tuple[list[socket.socket], int]:
    """N connections that each sent one GET and read its answer; returns them and how many answered.

    The connections stay open (and idle) until the caller closes them.
    """
    socks: list[socket.socket] = []
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((IDLE_SOURCES[i % len(IDLE_SOURCES)], 0))
            sock.settimeout(max(0.1, min(5.0, deadline - time.monotonic())))
            sock.connect((HOST, port))
            sock.sendall(IDLE_REQUEST)
            sock.setblocking(False)
    except OSError as error:
        progress(f"idle: connection {len(socks)} of {n} failed: {error}")
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        pending[sock] = b""
    answered = 0
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                chunk = ready.recv(4096)
            except OSError:
                chunk = b""
            data = pending[ready] + chunk
            if b"Hello, World!" in data or not chunk:
                selector.unregister(ready)
                del pending[ready]
                answered += bool(chunk)
            else:
                pending[ready] = data
    selector.close()
    return socks, answered


def measure_idle(server: ServerDef, env: Env, n: int, log_dir: Path) -> dict[str, Any]:
    """KiB of server RSS per idle keep-alive connection, with ``n`` of them held."""
    row: dict[str, Any] = {"server": server.name, "connections": n}
    if server.idle_skip is not None:
        row["skipped"] = server.idle_skip
        return row
    with running(server, env, log_dir, server.idle_args) as process:
        process.wait_ready()
        # Warm up: load the code paths a request takes (and let the allocator settle).
        for _ in range(50):
            http_request(process.port, "GET", "/", None)
        time.sleep(0.5)
        before = tree_rss_kib(process.pid)
        started = time.monotonic()
        socks, answered = open_idle(process.port, n, started + IDLE_OPEN_TIMEOUT_S)
        try:
            row["open_s"] = round(time.monotonic() - started, 2)
            time.sleep(IDLE_SETTLE_S)
            after = tree_rss_kib(process.pid)
            # Still serving with n held?
            status, _ = http_request(process.port, "GET", "/", None, timeout_s=10.0)
            still_open = sum(1 for sock in socks if _still_open(sock))
        finally:
            for sock in socks:
                sock.close()
    row.update(
        rss_before_kib=before,
        rss_after_kib=after,
        answered=answered,
        still_open=still_open,
        fresh_request_status=status,
    )
    if answered < n or still_open < n:
        row["failed"] = (
            f"{answered} of {n} connections answered, {still_open} still open after {IDLE_SETTLE_S:.0f} s"
        )
    else:
        row["kib_per_connection"] = round((after - before) / n, 3)
    return row


def _still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (a non-blocking peek)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


# -- a static file, against nginx ----------------------------------------------

STATIC_CONNECTIONS = 4


def _reactor_static(env: Env, root: Path) -> list[str]:
    return [env.python, "-m", "reactor", "--static", str(root), "--no-access-log"]


def run_static(args: argparse.Namespace, env: Env, temp_dir: Path) -> dict[str, Any]:
    """reactor ``--static`` and nginx serving one big file, interleaved; bench_static.py's logic."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from loadtests import bench_static

    size = args.static_mib << 20
    root = temp_dir / "static-root"
    root.mkdir()
    progress(f"static: writing a {args.static_mib} MiB file")
    head = bench_static.write_file(root / "big.bin", size)
    script = temp_dir / "static-report.lua"
    script.write_text(bench_static.WRK_SCRIPT)
    nginx_dir = temp_dir / "nginx"
    nginx_dir.mkdir()
    settings = argparse.Namespace(duration=args.duration, connections=STATIC_CONNECTIONS)
    servers: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    try:
        port = free_port()
        servers["reactor"] = bench_static.Server(
            "reactor",
            [*_reactor_static(env, root), "--host", HOST, "--port", str(port)],
            port,
            temp_dir / "static-reactor.log",
            cwd=env.src,
        )
        servers["nginx"] = bench_static.start_nginx(nginx_dir, root, temp_dir / "static-nginx.log")
        for server in servers.values():
            server.check(size, head)
            bench_static.wrk(server.url, WARMUP_S, STATIC_CONNECTIONS, script)
        for round_no in range(1, args.rounds + 1):
            order = ["reactor", "nginx"] if round_no % 2 else ["nginx", "reactor"]
            for name in order:
                if args.quiet_wait > 0:
                    wait_quiet(args.quiet_wait)
                run = bench_static.measure(servers[name], settings, script)
                run["round"] = round_no
                runs.append(run)
                progress(
                    f"round {round_no}/{args.rounds}: {name:<8} static {run['throughput_gib_s']:.2f} GiB/s  "
                    f"{run['cpu_s_per_gib']:.3f} CPU s/GiB  CPU {100 * run['cpu_utilisation']:.0f}%  "
                    f"wrk {100 * run['client_cpu_utilisation']:.0f}%  {run['errors']} errors"
                )
    finally:
        for server in servers.values():
            server.stop()
    medians = bench_static.median_runs(runs)
    return {
        "size_bytes": size,
        "connections": STATIC_CONNECTIONS,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "nginx_conf": bench_static.NGINX_CONF,
        "runs": runs,
        "medians": medians,
        "ratios": bench_static.static_ratios(medians),
    }


# -- the machine -------------------------------------------------------------


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


def reactor_fingerprint(src: Path) -> str:
    """A hash of reactor's sources under ``src``: which code was measured, committed or not."""
    digest = hashlib.sha256()
    for path in sorted((src / "reactor").rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def snapshot_sources(dest: Path) -> Path:
    """Copy ``reactor/`` and ``loadtests/`` to ``dest``: the servers run from the copy.

    Others may edit the work tree while a run lasts minutes; a copy taken at the
    start keeps every round on the same code.
    """
    ignore = shutil.ignore_patterns("__pycache__", "results", ".venv*", "*.pyc")
    for name in ("reactor", "loadtests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


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


# -- the report --------------------------------------------------------------


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


# -- the command -------------------------------------------------------------

#: Workloads that are not a wrk run against every server: the big static file
#: (reactor and nginx only) and the memory of idle connections.
EXTRA_WORKLOADS = ("static", "idle")
ALL_WORKLOADS: dict[str, Any] = {**WORKLOADS, **dict.fromkeys(EXTRA_WORKLOADS)}


def _names(text: str, table: dict[str, Any], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in table]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(table)}"
        )
    # Table order, so that the subject stays first whatever order was asked.
    return [name for name in table if name in names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure reactor and peer servers with wrk (see the module docstring)."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--servers",
        type=lambda text: _names(text, SERVERS, "server"),
        help=f"comma list of servers (default all: {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--workloads",
        type=lambda text: _names(text, ALL_WORKLOADS, "workload"),
        default=list(ALL_WORKLOADS),
        help=f"comma list of workloads (default all: {','.join(ALL_WORKLOADS)})",
    )
    parser.add_argument(
        "--idle",
        type=int,
        default=5000,
        help="idle connections held per server for the idle workload (default %(default)s)",
    )
    parser.add_argument(
        "--idle-subject",
        type=int,
        default=15000,
        help="reactor is also measured holding this many idle connections; 0: don't (default %(default)s)",
    )
    parser.add_argument(
        "--static-mib", type=int, default=256, help="size of the static file in MiB (default %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke: {','.join(QUICK_SERVERS)} only (unless --servers), --duration 2 --rounds 1 "
        "--retries 0, 500 idle connections, a 32 MiB static file, no docs",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=DEFAULT_VENV,
        help="the peers' virtualenv, created and filled if needed (default %(default)s)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for the machine to be idle; 0: don't "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=15.0,
        help="redo a run in which others used more than this %% of a core (default %(default)s)",
    )
    parser.add_argument("--retries", type=int, default=2, help="redos per run at most (default 2)")
    parser.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="run the servers from the work tree, not from a copy taken at the start",
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="run the servers from this directory (holding reactor/ and loadtests/, e.g. a git "
        "worktree of another commit) instead of a snapshot of the work tree",
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON file (default loadtests/results/bench-<time>.json)"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS_PAGE,
        help="the page written from the results (default %(default)s; charts go to docs/img/)",
    )
    parser.add_argument(
        "--no-docs", dest="write_docs", action="store_false", help="write no docs page and no charts"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="measure nothing: re-write the docs page and the charts from this results file",
    )
    parser.add_argument("--charts", type=Path, metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--img-dir", type=Path, default=IMG_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.retries = 2, 1, 0
        args.quiet_wait = min(args.quiet_wait, 5.0)
        args.idle, args.idle_subject, args.static_mib = 500, 0, 32
        args.write_docs = False
        if args.servers is None:
            args.servers = list(QUICK_SERVERS)
    if args.servers is None:
        args.servers = list(SERVERS)
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    if args.src is not None:
        args.src = args.src.resolve()
        if not (args.src / "reactor").is_dir() or not (args.src / "loadtests").is_dir():
            parser.error(f"--src {args.src} holds no reactor/ and loadtests/")
    return args


def _check_tools(workloads: Sequence[str]) -> None:
    tools = ["wrk", "taskset"] + (["nginx"] if "static" in workloads else [])
    for tool in tools:
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is not installed")
    cpus = os.sched_getaffinity(0)
    if {int(SERVER_CPU), int(CLIENT_CPU)} - cpus:
        raise SystemExit(f"bench: needs cores {SERVER_CPU} and {CLIENT_CPU}; this process may use {cpus}")


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
    path: str = ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.charts is not None:  # the chart step, run by the venv's python
        for path in draw_charts(json.loads(args.charts.read_text()), args.img_dir):
            print(path)
        return 0
    if args.report is not None:
        write_docs(args.report.resolve(), args.docs.resolve(), args.venv.resolve())
        return 0
    _check_tools(args.workloads)
    servers = [SERVERS[name] for name in args.servers]
    wrk_workloads = [WORKLOADS[name] for name in args.workloads if name in WORKLOADS]
    peer_python = sys.executable
    failures: dict[str, str] = {}
    if any(server.needs_venv for server in servers) or args.write_docs:
        python, failures = ensure_venv(args.venv.resolve(), servers, charts=args.write_docs)
        peer_python = str(python)
    with tempfile.TemporaryDirectory(prefix="reactor-bench-") as temp:
        temp_dir = Path(temp)
        if args.src is not None:
            src = args.src
        elif args.snapshot:
            src = snapshot_sources(temp_dir / "src")
        else:
            src = ROOT
        env = Env(python=sys.executable, peer_python=peer_python, src=src, origin=args.src or ROOT)
        report = run_all(args, env, servers, wrk_workloads, temp_dir, failures)
    print()
    print(markdown(report.medians, report.ratios, report.machine, args))
    print()
    progress(f"results: {report.path}")
    if args.write_docs:
        write_docs(Path(report.path), args.docs.resolve(), args.venv.resolve())
    return 0


def run_all(
    args: argparse.Namespace,
    env: Env,
    servers: Sequence[ServerDef],
    workloads: Sequence[Workload],
    temp_dir: Path,
    failures: dict[str, str],
) -> Report:
    """Every round, server and workload; writes the JSON file and returns the report."""
    now = dt.datetime.now()
    report = Report(
        started=now.isoformat(timespec="seconds"),
        command=["python3", "loadtests/bench.py", *sys.argv[1:]],
        args={
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": WARMUP_S,
            "quiet_wait_s": args.quiet_wait,
            "max_other_percent": args.max_other,
            "retries": args.retries,
            "servers": args.servers,
            "workloads": args.workloads,
            "idle_connections": args.idle,
            "idle_connections_subject": args.idle_subject,
            "static_mib": args.static_mib,
            "quick": args.quick,
        },
        machine=machine_info(env, servers),
        servers={server.name: server.description for server in servers},
        notes={server.name: server.note for server in servers if server.note},
        workloads={
            w.name: {
                "description": w.description,
                "path": w.path,
                "headers": list(w.headers),
                "lua": w.lua,
                "connections": w.connections,
                "threads": w.threads,
            }
            for w in workloads
        },
        failures=dict(failures),
    )
    report.path = str(args.out or RESULTS / f"bench-{now:%Y%m%d-%H%M%S}.json")
    live = [server for server in servers if server.name not in failures]
    per_run_s = len(workloads) * (WARMUP_S + args.duration + 1.5)
    progress(
        f"{args.rounds} round(s) x {len(live)} server(s) x {len(workloads)} wrk workload(s), "
        f"about {args.rounds * len(live) * per_run_s / 60:.1f} min"
        + (", then the static file" if "static" in args.workloads else "")
        + (", then idle connections" if "idle" in args.workloads else "")
        + f"; servers run from {env.src}"
    )
    scripts: dict[str, Path] = {}
    for workload in workloads:
        if workload.lua is not None:
            scripts[workload.name] = temp_dir / f"{workload.name}.lua"
            scripts[workload.name].write_text(workload.lua)
    total = args.rounds * len(live) * len(workloads)
    done_runs = 0
    started = time.monotonic()
    for round_no in range(1, args.rounds + 1 if workloads else 1):
        order = live if round_no % 2 else list(reversed(live))
        for server in order:
            if server.name in report.failures:
                continue
            try:
                with running(server, env, temp_dir) as process:
                    took = process.wait_ready()
                    check_answers(process, workloads)
                    report.starts.append(
                        {
                            "round": round_no,
                            "server": server.name,
                            "pid": process.pid,
                            "port": process.port,
                            "ready_s": round(took, 3),
                            "affinity": process.affinity(),
                            "argv": process.argv,
                        }
                    )
                    progress(
                        f"round {round_no}/{args.rounds}: {server.name} pid {process.pid} "
                        f"on port {process.port}, ready in {took:.2f} s, cores {process.affinity()}"
                    )
                    for workload in workloads:
                        report.runs.append(measure_clean(process, workload, round_no, scripts, args, report))
                        done_runs += 1
                        elapsed = time.monotonic() - started
                        progress(
                            f"  {done_runs}/{total} runs done, {elapsed / 60:.1f} min so far, "
                            f"about {elapsed / done_runs * (total - done_runs) / 60:.1f} min of wrk runs left"
                        )
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as error:
                why = f"round {round_no}: {str(error).strip()[:1500]}"
                report.failures[server.name] = why
                progress(f"{server.name} failed and is left out from now on: {why.splitlines()[0]}")
    # Grouped by workload, servers in table order: each peer sits under reactor.
    for workload in workloads:
        for server in servers:
            runs = [r for r in report.runs if r.server == server.name and r.workload == workload.name]
            if runs:
                report.medians.append(summarize(runs))
    report.ratios = ratios(report.medians)
    _save(report)
    if "static" in args.workloads:
        progress("static: reactor --static against nginx")
        try:
            report.static = run_static(args, env, temp_dir)
        except (SystemExit, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            report.failures["static"] = str(error)[:1500]
            progress(f"static failed: {error}")
        _save(report)
    if "idle" in args.workloads:
        for server in live:
            counts = [args.idle]
            if server.name == SUBJECT and args.idle_subject > args.idle:
                counts.append(args.idle_subject)
            for n in counts:
                if server.idle_skip is None:
                    progress(f"idle: {server.name} holding {n} idle connections")
                try:
                    row = measure_idle(server, env, n, temp_dir)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                    row = {"server": server.name, "connections": n, "failed": str(error).strip()[:500]}
                report.idle.append(row)
                progress(
                    f"idle: {server.name:<14} {n} connections: "
                    + (
                        f"{row['kib_per_connection']:.2f} KiB each (RSS {row['rss_before_kib']} -> "
                        f"{row['rss_after_kib']} KiB, opened in {row['open_s']} s)"
                        if "kib_per_connection" in row
                        else f"skipped: {row['skipped']}"
                        if "skipped" in row
                        else f"failed: {row['failed'].splitlines()[0]}"
                    )
                )
        _save(report)
    report.finished = dt.datetime.now().isoformat(timespec="seconds")
    at_end = reactor_fingerprint(env.src)
    report.machine["reactor_sources_sha256_at_end"] = at_end
    if at_end != report.machine["reactor_sources_sha256"]:
        progress(f"warning: reactor/ in {env.src} changed during the run; its figures mix two versions")
    elif env.src != ROOT and reactor_fingerprint(ROOT) != at_end:
        progress(f"note: reactor/ in the work tree differs from the code measured (in {env.src})")
    _save(report)
    return report


def _save(report: Report) -> None:
    """Write the JSON file (again): a run cut short still leaves what it measured."""
    out = Path(report.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(report), indent=2) + "\n")


def measure_clean(
    process: ServerProcess,
    workload: Workload,
    round_no: int,
    scripts: dict[str, Path],
    args: argparse.Namespace,
    report: Report,
) -> Measurement:
    """Measure; measure again (at most ``--retries`` times) while others used the machine.

    Returns the first clean measurement, else the least disturbed one.
    """
    attempts: list[Measurement] = []
    attempt = 1
    while True:
        run = measure(process, workload, args.duration, round_no, scripts, args.quiet_wait)
        run.attempt = attempt
        errors = sum(run.socket_errors.values()) + run.non_2xx
        progress(
            f"round {round_no}/{args.rounds}: {process.server.name:<14} {workload.name:<10} "
            f"{run.requests_per_s:>9,.0f} req/s  p50 {run.latency_ms['50']:.2f} ms  "
            f"p99 {run.latency_ms['99']:.2f} ms  {run.cpu_us_per_request:.1f} us CPU/req "
            f"({run.user_us_per_request:.1f} user)  "
            f"CPU {run.server_cpu_percent:.0f}%  wrk {run.wrk_cpu_percent:.0f}%  "
            f"other {run.other_cpu_percent:.0f}%" + (f"  errors {errors}" if errors else "")
        )
        attempts.append(run)
        if run.other_cpu_percent <= args.max_other or attempt > args.retries:
            break
        progress(f"other CPU {run.other_cpu_percent:.0f}% > {args.max_other:.0f}%: measuring again")
        attempt += 1
    kept = min(attempts, key=lambda candidate: candidate.other_cpu_percent)
    report.discarded.extend(candidate for candidate in attempts if candidate is not kept)
    if kept is not run:
        progress(
            f"kept attempt {kept.attempt}, the least disturbed (other CPU {kept.other_cpu_percent:.0f}%)"
        )
    return kept


# -- the docs page and the charts ------------------------------------------------------

DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
IMG_DIR = ROOT / "docs" / "img"


#: The goals of the issue: reactor over uvicorn-uvloop (CPU per keep-alive request,
#: at most; Connection: close requests/s, at least), KiB per idle connection (at
#: most), and the static file against nginx (bench_static.py's GOAL_* constants).
GOAL_KEEPALIVE_CPU = 0.5
GOAL_CLOSE_RPS = 2.0
GOAL_IDLE_KIB = 1.0
GOAL_STATIC_THROUGHPUT = 0.9
GOAL_STATIC_CPU = 1.5
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


def render_docs(report: dict[str, Any], json_path: Path, charts: Sequence[str]) -> str:
    """The markdown page for a results file."""
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
        f"written by `loadtests/bench.py` from the results file `{shown_json}`; re-make them with "
        f"`python3 loadtests/bench.py --report {shown_json}` rather than editing by hand "
        "(`loadtests/results/` is not in git: keep the file to re-make the page elsewhere).",
        "",
        "## How to run it",
        "",
        "```sh",
        "python3 loadtests/bench.py            # all servers, all workloads, 3 rounds of 10 s (~30 min)",
        "python3 loadtests/bench.py --quick    # smoke: reactor and uvicorn-uvloop, 1 round of 2 s, no docs",
        "python3 loadtests/bench.py --servers reactor,aiohttp --workloads keepalive,close,idle",
        "python3 loadtests/bench.py --report loadtests/results/bench-XXXX.json  # re-write this page",
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
        f"- command: `{' '.join(report['command'])}`",
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

    lines += ["## Notes on the peers", "", *_peer_notes(report), ""]
    lines += ["## What stands in the way", "", *_obstacles(report, goals), ""]
    return "\n".join(lines)


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
            out += _keepalive_obstacle(med)
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


def _keepalive_obstacle(med: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
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
    costs = _python_costs()
    call_ns = costs["a call of a Python function that returns at once"]
    lines += [
        "- What CPython costs here (`timeit` on this machine when the page was written, "
        f"Python {platform.python_version()}): "
        + "; ".join(f"{what}: {ns:.0f} ns" for what, ns in costs.items())
        + f". reactor's {user_r:.1f} us of user time per keep-alive request is the price of about "
        f"{1000 * user_r / call_ns:.0f} such calls; the {max(left, 0):.1f} us left would buy about "
        f"{1000 * max(left, 0) / call_ns:.0f}: not enough for a loop wake-up, a `recv`, a parse of "
        "the request line and headers, a route, the app's call and the answer's serialisation, "
        "each of which is several calls and lookups in pure Python.",
        "- uvicorn-uvloop pays for its own Python too (the protocol callbacks, the ASGI app), but "
        "not for its parser or its event loop. To reach half of its CPU, reactor would have to move "
        "parsing and the loop into C, which its standard-library-only design rules out. What it "
        "can do within the design is keep the kernel part to one `recv` and one `send` per "
        "request and the Python part to a short straight path.",
        "",
    ]
    return lines


def _python_costs() -> dict[str, float]:
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


def _close_obstacle(med: dict[tuple[str, str], dict[str, Any]], runs: Sequence[dict[str, Any]]) -> list[str]:
    r, u = med[(SUBJECT, "close")], med[(REFERENCE, "close")]
    wrk_r, wrk_u = (
        statistics.median(
            x["wrk_cpu_percent"] for x in runs if x["server"] == name and x["workload"] == "close"
        )
        for name in (SUBJECT, REFERENCE)
    )
    cap_r, cap_u = 1e6 / r["cpu_us_per_request"], 1e6 / u["cpu_us_per_request"]
    return [
        "### `Connection: close`: twice uvicorn-uvloop's requests/s",
        "",
        f"Measured: reactor {r['requests_per_s']:,.0f} req/s at {r['server_cpu_percent']:.0f} % of "
        f"its core, {r['cpu_us_per_request']:.1f} us per request ({r['user_us_per_request']:.1f} "
        f"user + {r['system_us_per_request']:.1f} kernel); uvicorn-uvloop {u['requests_per_s']:,.0f} "
        f"req/s at {u['server_cpu_percent']:.0f} %, {u['cpu_us_per_request']:.1f} us "
        f"({u['user_us_per_request']:.1f} + {u['system_us_per_request']:.1f}).",
        "",
        f"- A saturated core serves 1e6 / (CPU us per request): at most {cap_r:,.0f} req/s for "
        f"reactor and {cap_u:,.0f} for uvicorn-uvloop, a ratio of {cap_r / cap_u:.2f}. Twice "
        f"uvicorn-uvloop's rate would need at most {u['cpu_us_per_request'] / 2:.1f} us per request: "
        f"{r['cpu_us_per_request'] - u['cpu_us_per_request'] / 2:.1f} us "
        f"({100 * (1 - u['cpu_us_per_request'] / 2 / r['cpu_us_per_request']):.0f} %) less than "
        "reactor spends now"
        + (" (it is already there)." if r["cpu_us_per_request"] <= u["cpu_us_per_request"] / 2 else "."),
        f"- Of that, the kernel's share for accept, the TCP handshake, one `recv`, one `send` and "
        f"the close is already {r['system_us_per_request']:.1f} us for reactor: "
        f"{100 * r['system_us_per_request'] / (u['cpu_us_per_request'] / 2):.0f} % of the "
        "budget, whatever the Python does.",
        f"- wrk opens a connection per request too, on its one core: it used {wrk_r:.0f} % of it "
        f"against reactor and {wrk_u:.0f} % against uvicorn-uvloop. Near 100 % the client, not "
        "the server, would set the rate, and the requests/s ratio would understate the capacity "
        "ratio above.",
        "",
    ]


def write_docs(json_path: Path, page: Path, venv_dir: Path) -> None:
    """Write ``page`` (and its charts in docs/img/) from the results file ``json_path``."""
    report = json.loads(json_path.read_text())
    img_dir = page.parent / "img"
    charts: list[str] = []
    python = _venv_python(venv_dir)
    if _has_modules(python, CHART_MODULES):
        done = subprocess.run(
            [
                str(python),
                str(Path(__file__).resolve()),
                "--charts",
                str(json_path),
                "--img-dir",
                str(img_dir),
            ],
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
    page.write_text(render_docs(report, json_path, charts))
    progress(f"wrote {page} and {len(charts)} chart(s) in {img_dir}")


if __name__ == "__main__":
    sys.exit(main())
