"""The floor in loadtests/peers/floor_hello.py answers as loadtests/floor_bench.py needs.

The benchmark compares reactor with it under wrk; these check what wrk relies
on: every request of a keep-alive connection answered in order, and the
connection closed after the answer to a ``Connection: close`` request.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.peers.floor_hello import CLOSE, KEEP_ALIVE

ROOT = Path(__file__).resolve().parents[2]
GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def port() -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtests.peers.floor_hello", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)


def _read_all(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_pipelined_keep_alive_requests_are_answered_in_order_then_close_ends_it(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(GET * 3 + GET[:-2] + b"Connection: close\r\n\r\n")
        assert _read_all(sock) == KEEP_ALIVE * 3 + CLOSE


def test_a_head_split_across_reads_is_answered_once_whole(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = GET[:-2] + b"Connection: close\r\n\r\n"
        sock.sendall(request[:10])
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # nothing until the head is complete
        sock.settimeout(5)
        sock.sendall(request[10:])
        assert _read_all(sock) == CLOSE


def test_the_summary_gives_the_goals_ratios_for_reactor_and_the_floor() -> None:
    from loadtests.floor_bench import summary

    def figures(rps: float, cpu: float) -> dict[str, float]:
        return {"requests_per_s": rps, "cpu_us_per_request": cpu}

    medians = {
        "reactor": {"keepalive": figures(60000, 15.0), "close": figures(20000, 40.0)},
        "floor": {"keepalive": figures(120000, 7.5), "close": figures(20000, 25.0)},
        "uvicorn-uvloop": {"keepalive": figures(40000, 30.0), "close": figures(10000, 80.0)},
    }
    assert summary(medians) == [
        "reactor: keep-alive CPU a request 0.50x uvicorn-uvloop's (goal: 0.50x or less)",
        "reactor: close requests/s 2.00x uvicorn-uvloop's (goal: 2.50x or more); "
        "at a saturated core (1e6 / CPU a request) 2.50x",
        "floor: keep-alive CPU a request 0.25x uvicorn-uvloop's (goal: 0.50x or less)",
        "floor: close requests/s 2.00x uvicorn-uvloop's (goal: 2.50x or more); "
        "at a saturated core (1e6 / CPU a request) 4.00x",
    ]
