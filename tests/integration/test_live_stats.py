"""The live view's JSON over real sockets: the bounded table of connections, their states, the timers."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from typing import Any

from reactor import App, Request
from reactor.live import mount
from tests.conftest import Running

Serve = Callable[..., Running]

HELLO = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _app(rows: int) -> App:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    mount(app, rows=rows)
    return app


def _stats(running: Running) -> dict[str, Any]:
    connection = http.client.HTTPConnection(*running.address, timeout=5)
    try:
        connection.request("GET", "/_reactor/stats", headers={"Connection": "close"})
        response = connection.getresponse()
        assert response.status == 200
        stats: dict[str, Any] = json.loads(response.read())
        return stats
    finally:
        connection.close()


def _idle(address: tuple[str, int]) -> socket.socket:
    """A connection that has had one answer and is kept alive: idle."""
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(HELLO)
    answer = b""
    while not answer.endswith(b"Hello, World!"):
        piece = sock.recv(4096)
        assert piece, answer
        answer += piece
    return sock


def test_table_of_200_idle_connections_shows_the_oldest_50_and_counts_the_rest(serve: Serve) -> None:
    running = serve(_app(rows=50), keepalive_timeout_s=60.0)
    socks = [_idle(running.address) for _ in range(200)]
    reading = socket.create_connection(running.address, timeout=5)
    try:
        reading.sendall(b"GET / HTTP/1.1\r\n")  # a head cut short: the server is still reading it
        # The server has read it once its count of connections reading headers says so.
        for _ in range(100):
            stats = _stats(running)
            if stats["connections"]["reading_headers"] == 1:
                break
        table = stats["table"]
        assert table["open"] == 202  # 200 idle, 1 reading, and the one asking
        assert len(table["rows"]) == 50
        assert table["more"] == 152
        assert stats["connections"]["idle"] == 200
        # Oldest first: the first 50 the test opened, in that order, each idle with its keep-alive armed.
        ours = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in socks[:50]]
        assert [row["peer"] for row in table["rows"]] == ours
        for row in table["rows"]:
            assert row["state"] == "idle", row
            assert row["bytes_in"] == len(HELLO) and row["bytes_out"] > len(b"Hello, World!"), row
            assert row["timer"]["name"] == "keep-alive" and 0 < row["timer"]["in_s"] <= 60.0, row
            assert row["fd"] > 2
        assert len({row["fd"] for row in table["rows"]}) == 50

        heap = stats["timer_heap"]
        # The 200 idle connections share one keep-alive timer: armed are it, the
        # lag probe, the reading connection's header timer, and few others.
        assert heap["armed"] == stats["timers"] and heap["size"] >= heap["armed"] >= 3
        assert heap["armed"] < 20
        deadlines = [timer["in_ms"] for timer in heap["next"]]
        assert len(deadlines) == min(8, heap["armed"]) and deadlines == sorted(deadlines)
        # The lag probe is due well before any keep-alive or header deadline.
        assert heap["next"][0]["what"] == "lag probe", heap["next"]
        # No blocking handler has run: the pool has started no thread.
        assert stats["thread_pool"]["started"] == 0
        assert stats["thread_pool"]["busy"] == 0

    finally:
        reading.close()
        for sock in socks:
            sock.close()


def test_table_shows_each_connection_in_its_state(serve: Serve) -> None:
    running = serve(_app(rows=50))
    idle = [_idle(running.address) for _ in range(3)]
    reading = socket.create_connection(running.address, timeout=5)
    try:
        reading.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(100):
            stats = _stats(running)
            if stats["connections"]["reading_headers"] == 1:
                break
        rows = {row["peer"]: row for row in stats["table"]["rows"]}
        assert stats["table"]["more"] == 0 and len(rows) == 5  # with the one asking, in WRITING
        for sock in idle:
            assert rows[f"127.0.0.1:{sock.getsockname()[1]}"]["state"] == "idle"
        head = rows[f"127.0.0.1:{reading.getsockname()[1]}"]
        assert head["state"] == "reading headers" and head["timer"]["name"] == "header", head
        assert head["bytes_in"] == len(b"GET / HTTP/1.1\r\n") and head["bytes_out"] == 0
        assert [row["state"] for row in stats["table"]["rows"]][-1] == "writing"  # the newest: the one asking
    finally:
        reading.close()
        for sock in idle:
            sock.close()
