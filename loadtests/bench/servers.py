"""How each server is started: the peers' virtualenv, the command lines, the process, its checks.

Every server binds port 0 and :class:`ServerProcess` reads the port it got
from ``/proc`` (:func:`~loadtests.bench.measurement.wait_listening`): no port
is probed free and then raced for. Adding a server is one entry in
:data:`SERVERS`.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
import venv
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from loadtests.bench import HOST, LOADTESTS, ROOT, SERVER_CPU, progress
from loadtests.bench.measurement import wait_listening
from loadtests.bench.wrk import Workload

DEFAULT_VENV = LOADTESTS / ".venv-peers"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PIP_TIMEOUT_S = 900.0

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


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def has_modules(python: Path, modules: Sequence[str]) -> bool:
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
    python = venv_python(venv_dir)
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
    missing = {name: need for name, need in wanted.items() if not has_modules(python, need[1])}
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
            if name not in failures and not has_modules(python, modules):
                failures[name] = f"installed {' '.join(requirements)}, but cannot import {', '.join(modules)}"
    for name, why in failures.items():
        progress(f"left out {name}: {why.splitlines()[0]}")
    return python, failures


# -- the servers -----------------------------------------------------------


@dataclass(frozen=True)
class ServerDef:
    """How to run one server: ``command(env)`` is its argv (without taskset), binding port 0."""

    name: str
    description: str
    command: Callable[[Env], list[str]]
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


def _reactor_command(env: Env) -> list[str]:
    return [
        env.python,
        "-m",
        "reactor",
        "--app",
        "loadtests.hello:app",
        "--host",
        HOST,
        "--port",
        "0",
        "--no-access-log",
    ]


def _uvicorn(loop: str, http: str) -> Callable[[Env], list[str]]:
    def command(env: Env) -> list[str]:
        return [
            env.peer_python,
            "-m",
            "uvicorn",
            "loadtests.peers.asgi_hello:app",
            "--host",
            HOST,
            "--port",
            "0",
            "--loop",
            loop,
            "--http",
            http,
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    return command


def _peer_module(module: str, venv: bool = True) -> Callable[[Env], list[str]]:
    """``python -m loadtests.peers.MODULE --host HOST --port PORT``, from the venv if ``venv``."""

    def command(env: Env) -> list[str]:
        python = env.peer_python if venv else env.python
        return [python, "-m", f"loadtests.peers.{module}", "--host", HOST, "--port", "0"]

    return command


def _waitress_command(env: Env) -> list[str]:
    # Default threads (4) and connection_limit (100); waitress logs no access lines.
    return [
        env.peer_python,
        "-m",
        "waitress",
        f"--host={HOST}",
        "--port=0",
        "--backlog=1024",
        "loadtests.peers.wsgi_hello:app",
    ]


def _gunicorn_command(env: Env) -> list[str]:
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
        f"{HOST}:0",
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


# -- a server process ------------------------------------------------------

_LOG_NUMBERS = itertools.count(1)


class ServerProcess:
    """One server process, pinned to :data:`SERVER_CPU`, its output in a log file.

    ``port`` is 0 until :meth:`wait_listening` has read the one it listens on.
    """

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, cwd: Path) -> None:
        self.name = name
        self.port = 0
        self.log_path = log_dir / f"{name}-{next(_LOG_NUMBERS)}.log"
        self.argv = ["taskset", "-c", SERVER_CPU, *argv]
        self._log: IO[bytes] = self.log_path.open("wb")
        # taskset execs the server, so this PID is the server's own.
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid

    def log_tail(self, limit: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-limit:]

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """Wait until the server listens; returns (and keeps) its port."""
        try:
            self.port = wait_listening(self.pid, lambda: self.proc.poll() is not None, timeout_s)
        except RuntimeError as error:
            raise RuntimeError(f"{self.name}: {error}:\n{self.log_tail()}") from None
        return self.port

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Wait until it listens and ``GET /`` answers 200; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout_s
        self.wait_listening(timeout_s)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                status, _ = http_request(self.port, "GET", "/", None, timeout_s=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return time.monotonic() - start
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

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
                    progress(f"{self.name} (pid {self.pid}) ignored SIGTERM: SIGKILL")
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT_S)
            return self.proc.returncode
        finally:
            self._log.close()


@contextmanager
def running(server: ServerDef, env: Env, log_dir: Path, extra: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """A started server (with ``extra`` arguments); stopped on exit whatever happens."""
    process = ServerProcess(server.name, [*server.command(env), *extra], log_dir, env.src)
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
                f"{process.name} answered {workload.check_method} {workload.path} "
                f"with {status} and {len(body)} bytes {body[:60]!r}, not 200 and the expected body"
            )


# -- where the servers run from ----------------------------------------------


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
