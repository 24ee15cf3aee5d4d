"""The ``idle`` workload: server RSS per idle keep-alive connection, N of them held.

Each server is started afresh and answers 50 requests; then N connections,
from 16 source addresses in 127.0.0.0/8, each send one GET, read the answer
and stay open. The growth of the server's RSS (the process and its children)
over N is the figure.
"""

from __future__ import annotations

import selectors
import socket
import time
from pathlib import Path
from typing import Any

from loadtests.bench import HOST, progress
from loadtests.bench.measurement import tree_rss_kib
from loadtests.bench.servers import Env, ServerDef, http_request, running

#: Source addresses for the idle connections: 16 of them, so that the client
#: never runs short of ephemeral ports and its search for one stays cheap.
IDLE_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 18))
IDLE_OPEN_TIMEOUT_S = 180.0
IDLE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
IDLE_SETTLE_S = 2.0


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
