"""Every step of docs/tutorial/ runs, fails as its page says, and the next step fixes it.

Each step is started as its own process (``python stepN_name.py 0`` in
``docs/tutorial/www``, as the page runs it), driven over loopback with the
clients of ``docs/tutorial/clients.py``, and killed by its pid afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial"
WWW = TUTORIAL / "www"
HELLO = (WWW / "hello.txt").read_bytes()
TRAVERSAL = "/" + "../" * 12 + "etc/passwd"
ENCODED_TRAVERSAL = "/" + "%2e%2e/" * 12 + "etc/passwd"
IDLE = 200  # idle connections: enough to count threads, few enough for a shared machine


def _load_clients() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tutorial_clients", TUTORIAL / "clients.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


clients = _load_clients()


class Step:
    def __init__(self, port: int, pid: int) -> None:
        self.port = port
        self.pid = pid

    def threads(self) -> int:
        count: int = clients.process_status(self.pid)["Threads"]
        return count

    def rss_kib(self) -> int:
        rss: int = clients.process_status(self.pid)["VmRSS"]
        return rss


@contextmanager
def running(script: str, tmp_path: Path) -> Iterator[Step]:
    """Run ``docs/tutorial/<script> 0`` in www/; yield its port and pid; kill it by pid."""
    log = (tmp_path / f"{script}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(TUTORIAL / script), "0"],
        cwd=WWW,
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, f"{script} printed no port"
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"{script} printed {line!r}"
        yield Step(int(line), proc.pid)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        log.close()


def _request(path: str) -> bytes:
    """One GET that asks the server to close after it (so that reading to the close ends)."""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def _status(response: bytes) -> bytes:
    return response.split(b"\r\n", 1)[0]


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_step1_answers_what_no_http_client_accepts(tmp_path: Path) -> None:
    with running("step1_hello.py", tmp_path) as step:
        with pytest.raises(clients.http.client.BadStatusLine, match="Hello World"):
            clients.get(step.port, "/")
        if shutil.which("curl"):
            url = f"http://127.0.0.1:{step.port}/"
            command = ["curl", "-sS", url]
            curl = subprocess.run(command, capture_output=True, text=True, timeout=9, check=False)
            assert curl.returncode == 1 and "Received HTTP/0.9 when not allowed" in curl.stderr


def test_step2_is_valid_http_but_one_idle_client_blocks_the_next(tmp_path: Path) -> None:
    with running("step2_status.py", tmp_path) as step:
        assert clients.get(step.port, "/hello.txt") == (200, HELLO)
        if shutil.which("curl"):
            url = f"http://127.0.0.1:{step.port}/hello.txt"
            curl = subprocess.run(["curl", "-sS", url], capture_output=True, timeout=10, check=False)
            assert curl.returncode == 0 and curl.stdout == HELLO
        idle = socket.create_connection(("127.0.0.1", step.port))
        time.sleep(0.2)  # accepted: the server now waits in recv() for it
        with socket.create_connection(("127.0.0.1", step.port), timeout=1.0) as second:
            second.sendall(_request("/hello.txt"))
            with pytest.raises(TimeoutError):
                second.recv(1024)  # blocked behind the idle client
            idle.close()
            second.settimeout(5)
            assert _status(clients._read_all(second)) == b"HTTP/1.1 200 OK"  # served once it left


def test_step3_serves_others_beside_an_idle_client_but_serves_etc_passwd(tmp_path: Path) -> None:
    with running("step3_threads.py", tmp_path) as step:
        with socket.create_connection(("127.0.0.1", step.port)):
            time.sleep(0.2)
            assert clients.get(step.port, "/hello.txt", timeout=2.0) == (200, HELLO)
        response = clients.raw(step.port, _request(TRAVERSAL))
        assert _status(response) == b"HTTP/1.1 200 OK"
        assert b"root:x:0:0:" in response


def test_step4_refuses_paths_outside_but_closes_after_each_request(tmp_path: Path) -> None:
    with running("step4_paths.py", tmp_path) as step:
        for path in (TRAVERSAL, ENCODED_TRAVERSAL, "/..%2fhello.txt", "/hello.txt%00"):
            response = clients.raw(step.port, _request(path))
            assert _status(response) == b"HTTP/1.1 404 Not Found", path
            assert b"root:" not in response
        assert clients.get(step.port, "/hello.txt") == (200, HELLO)
        assert clients.twice(step.port, "/hello.txt") == [b"HTTP/1.1 200 OK", b""]


def test_step5_keeps_connections_alive_but_a_slowloris_holds_forever(tmp_path: Path) -> None:
    with running("step5_keepalive.py", tmp_path) as step:
        assert clients.twice(step.port, "/hello.txt") == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
        response = clients.raw(step.port, _request(TRAVERSAL))
        assert _status(response) == b"HTTP/1.1 404 Not Found"
        seconds, answer = clients.slowloris(step.port, limit_s=3.0)
        assert answer == b"(still open)" and seconds >= 3.0


def test_step6_times_a_slowloris_out(tmp_path: Path) -> None:
    with running("step6_timeouts.py", tmp_path) as step:
        assert clients.twice(step.port, "/hello.txt") == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
        seconds, answer = clients.slowloris(step.port, limit_s=8.0)
        assert _status(answer) == b"HTTP/1.1 408 Request Timeout"
        assert 1.5 <= seconds < 8.0  # HEAD_TIMEOUT_S is 2 s, one byte every 0.5 s notwithstanding


def test_step6_regex_backtracks_and_step7_does_not(tmp_path: Path) -> None:
    letters = 21  # 2**20 ways to split them: 0.2 to 1 s of one core
    with running("step6_timeouts.py", tmp_path) as step:
        slow, answer = clients.header(step.port, letters)
        assert answer == b"HTTP/1.1 400 Bad Request"
    with running("step7_regex.py", tmp_path) as step:
        fast = min(clients.header(step.port, letters)[0] for _ in range(3))
        assert clients.header(step.port, letters)[1] == b"HTTP/1.1 400 Bad Request"
        # A hundred times longer costs step 7 next to nothing.
        long, answer = clients.header(step.port, letters * 100)
        assert answer == b"HTTP/1.1 400 Bad Request"
        assert clients.get(step.port, "/hello.txt") == (200, HELLO)
    # Ratios, not times: the same machine, the same input, two parsers.
    assert slow > 10 * fast, (slow, fast)
    assert long < slow / 5, (long, slow)


def test_step7_holds_a_thread_per_idle_connection(tmp_path: Path) -> None:
    with running("step7_regex.py", tmp_path) as step:
        socks = clients.open_idle(step.port, IDLE)
        try:
            assert _wait_for(lambda: step.threads() >= IDLE + 1), step.threads()
        finally:
            for sock in socks:
                sock.close()


def test_step8_holds_idle_connections_in_one_thread_but_buffers_any_head(tmp_path: Path) -> None:
    with running("step8_selectors.py", tmp_path) as step:
        socks = clients.open_idle(step.port, IDLE)
        try:
            time.sleep(0.5)
            assert clients.get(step.port, "/hello.txt") == (200, HELLO)  # served beside them
            assert step.threads() == 1
            assert all(_probe_open(sock) for sock in socks)
        finally:
            for sock in socks:
                sock.close()
        assert clients.twice(step.port, "/hello.txt") == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
        # Pipelined: 3000 requests in one send are answered in order, the last one closing.
        pipelined = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n" * 2999 + _request("/hello.txt")
        answers = clients.raw(step.port, pipelined, timeout=20)
        assert answers.count(b"HTTP/1.1 200 OK\r\n") == 3000 and answers.endswith(HELLO)
        assert _status(clients.raw(step.port, _request(TRAVERSAL))) == b"HTTP/1.1 404 Not Found"
        assert clients.header(step.port, 10_000)[1] == b"HTTP/1.1 400 Bad Request"
        seconds, answer = clients.slowloris(step.port, limit_s=8.0)
        assert _status(answer) == b"HTTP/1.1 408 Request Timeout" and seconds < 8.0
        before = step.rss_kib()
        sent, answer = clients.bighead(step.port, 16)
        after = step.rss_kib()
        assert sent >= 16 << 20 and answer == b"HTTP/1.1 408 Request Timeout"
        assert after - before >= 12 << 10, (before, after)  # it held the 16 MiB


def _probe_open(sock: socket.socket) -> bool:
    """Whether the server still holds ``sock`` open (nothing to read, not closed)."""
    sock.settimeout(0.0)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5.0)


def test_step9_reactor_fixes_every_failure_of_the_steps_before(tmp_path: Path) -> None:
    with running("step9_reactor.py", tmp_path) as step:
        assert clients.get(step.port, "/hello.txt") == (200, HELLO)
        for path in (TRAVERSAL, ENCODED_TRAVERSAL):
            response = clients.raw(step.port, _request(path))
            assert _status(response) in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 404 Not Found"), response
            assert b"root:" not in response
        assert clients.twice(step.port, "/hello.txt") == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
        seconds, answer = clients.header(step.port, 21)
        assert answer == b"HTTP/1.1 400 Bad Request" and seconds < 1.0
        socks = clients.open_idle(step.port, IDLE)
        try:
            time.sleep(0.5)
            assert clients.get(step.port, "/hello.txt") == (200, HELLO)
            assert step.threads() == 1
            assert all(_probe_open(sock) for sock in socks)
        finally:
            for sock in socks:
                sock.close()
        before = step.rss_kib()
        sent, answer = clients.bighead(step.port, 16)
        assert answer == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert sent < 16 << 20  # refused long before the 16 MiB were in
        assert step.rss_kib() - before < 4 << 10
