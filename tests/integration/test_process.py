"""A real server process: graceful shutdown under load, and running out of fds."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import parse_responses, read_until_close, recv_response

ROOT = Path(__file__).resolve().parents[2]


def start(
    *args: str, nofile: int | None = None, stderr: Path | None = None, app: str | None = "loadtests.hello:app"
) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    """A server process (``app=None``: the demo) and its address."""
    argv = [*(["--app", app] if app else []), "--port", "0", *args]
    # The child lowers its own descriptor limit before the server starts
    # (preexec_fn is unsafe with threads around).
    prelude = (
        f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
        if nofile
        else ""
    )
    run = "runpy.run_module('reactor', run_name='__main__')"
    code = f"{prelude}import runpy, sys; sys.argv = ['reactor', *{argv!r}]; {run}"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr.open("w") if stderr is not None else subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"http://([\d.]+):(\d+)/", proc.stdout.readline())
    assert match, proc.stderr.read() if proc.stderr else stderr
    return proc, (match.group(1), int(match.group(2)))


def test_graceful_shutdown_under_load_loses_no_accepted_request() -> None:
    proc, address = start("--no-access-log", "--shutdown-timeout", "10")
    stop = threading.Event()
    truncated: list[bytes] = []
    completed = [0]

    def hammer() -> None:
        while not stop.is_set():
            try:
                sock = socket.create_connection(address, timeout=5)
            except OSError:
                return  # the listener is closed: shutdown has begun
            with sock:
                for _ in range(20):
                    try:
                        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                        response = recv_response(sock)
                    except (AssertionError, OSError) as exc:
                        # Closed between requests: allowed only before any byte of a response.
                        if "closed mid-body" in str(exc):
                            truncated.append(str(exc).encode())
                        break
                    assert response.body == b"Hello, World!"
                    completed[0] += 1
                    if response.header("connection") == "close":
                        break

    # Requests in flight at the signal: head sent, body not yet.
    in_flight = []
    for _ in range(5):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhe")
        in_flight.append(sock)
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    for sock in in_flight:
        sock.sendall(b"llo")
    replies = [parse_responses(read_until_close(sock)) for sock in in_flight]
    stop.set()
    for thread in threads:
        thread.join(10)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "shutting down" in err
    assert completed[0] > 100
    assert truncated == []
    for (response,) in replies:
        assert response.body == b"hello"
        assert response.header("connection") == "close"
    for sock in in_flight:
        sock.close()


def test_shutdown_ends_event_streams_instead_of_waiting_for_them() -> None:
    proc, address = start("--shutdown-timeout", "20", app=None)
    stream = socket.create_connection(address, timeout=10)
    stream.sendall(b"GET /events/clock HTTP/1.1\r\nHost: t\r\n\r\n")
    assert stream.recv(65536).startswith(b"HTTP/1.1 200 ")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    data = read_until_close(stream, timeout=10)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 5, "shutdown waited for the stream"
    assert data.endswith(b"0\r\n\r\n")  # ended normally, with its last chunk
    stream.close()


def test_second_signal_forces_the_exit() -> None:
    proc, address = start("--shutdown-timeout", "60")
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhe")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None, "the first signal must wait for the request in flight"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "second signal" in err
    sock.close()


def test_running_out_of_file_descriptors_pauses_accepting_and_recovers(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc, address = start("--no-access-log", nofile=40, stderr=log)
    try:
        clients = [
            socket.create_connection(address, timeout=5) for _ in range(60)
        ]  # more than it has fds for
        # Held for 2 s: four pauses of 0.5 s, one episode, logged once.
        time.sleep(2.0)
        lines = [
            line for line in log.read_text().splitlines() if "accept() failed: Too many open files" in line
        ]
        assert len(lines) == 1, log.read_text()
        for sock in clients:
            sock.close()
        time.sleep(1.0)
        # The server is alive and answers a new client once fds are free again.
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(sock).body == b"Hello, World!"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        assert proc.returncode == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
