"""Helpers for the tests that run reactor as real processes: a master and its workers.

Every process a test starts is ended by pid in its ``finally`` (:func:`end`).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import recv_response

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.workers_app:app"


class Reactor:
    """``python -m reactor ARGS`` with stderr in a file, so its log can be read at any time."""

    def __init__(
        self,
        *args: str,
        log: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        argv: list[str] | None = None,
        address: bool = True,
    ) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "reactor", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **(env or {})},
            pass_fds=pass_fds,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()
        self.address: tuple[str, int] = ("", 0)
        if address:
            match = re.search(r"http://([\d.]+):(\d+)/", self.banner)
            assert match, f"no address in {self.banner!r}: {self.log()}"
            self.address = (match.group(1), int(match.group(2)))

    def log(self) -> str:
        return self.log_path.read_text()

    def workers(self) -> set[int]:
        """The pids of the master's live children (zombies not counted)."""
        return children(self.pid)

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until ``pattern`` (a regex) matches ``count`` times in the log; the matches."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.log())
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{pattern!r} x{count} not in the log:\n{self.log()}"
            time.sleep(0.02)

    def wait_workers(self, check: Callable[[set[int]], bool], timeout: float = 10.0) -> set[int]:
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers()
            if check(pids):
                return pids
            assert time.monotonic() < deadline, f"workers {pids}; log:\n{self.log()}"
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def end(self) -> None:
        """Stop the master and every worker it left, by pid."""
        pids = self.workers()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def children(ppid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``ppid``, read from /proc."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == ppid:
            pids.add(int(entry))
    return pids


def get(address: tuple[str, int] | str, path: str, timeout: float = 5.0) -> bytes:
    """The body of ``GET path`` on a new connection (a str address: a Unix socket)."""
    with connect(address, timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        response = recv_response(sock, timeout)
    assert response.status == 200, response
    return response.body


def connect(address: tuple[str, int] | str, timeout: float = 5.0) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    return socket.create_connection(address, timeout=timeout)


class Hammer(threading.Thread):
    """A client that sends ``GET /pid`` until stopped, and counts what fails.

    ``per_connection`` requests go on each connection (1: a new connection
    each time). A failure is a refused connection, a status other than 200,
    a response cut short or no answer on a new connection. A keep-alive
    connection that the server closed while idle, before any byte of the
    next response, is retried on a new connection, as HTTP clients do
    (RFC 9112 §9.3.1): that race is inherent to closing idle keep-alive
    connections, and the retry is counted apart.
    """

    def __init__(self, address: tuple[str, int], per_connection: int) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.per_connection = per_connection
        self.stopping = threading.Event()
        self.ok = 0
        self.retried = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()

    def run(self) -> None:
        deadline = time.monotonic() + 60  # bounded even if nobody stops it
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(self.address, timeout=5)
            except OSError as exc:
                self.failures.append(f"connect: {exc!r}")
                continue
            with sock:
                self._use(sock)

    def _use(self, sock: socket.socket) -> None:
        for index in range(self.per_connection):
            if self.stopping.is_set():
                return
            try:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                response = recv_response(sock)
            except (OSError, AssertionError) as exc:
                idle_close = index > 0 and (
                    isinstance(exc, (ConnectionResetError, BrokenPipeError))
                    or str(exc) == "closed before a full head: b''"
                )
                if idle_close:
                    self.retried += 1
                else:
                    self.failures.append(f"request {index} on a connection: {exc!r}")
                return
            if response.status != 200:
                self.failures.append(f"status {response.status}")
                return
            self.ok += 1
            self.pids.add(int(response.body))
            if response.header("connection") == "close":
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)
        assert not self.is_alive()
