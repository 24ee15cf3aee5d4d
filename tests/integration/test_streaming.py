"""Streamed, pushed and file bodies over real sockets."""

from __future__ import annotations

import gc
import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from reactor import App, Broadcast, EventStream, FileBody, PushStream, Request, Response
from tests.conftest import Running, connect, get_ok, parse_responses, read_until_close, recv_response

Serve = Callable[..., Running]
PIECE = 65536


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked message, and whether it had its last chunk."""
    body = b""
    while True:
        line_end = data.find(b"\r\n")
        if line_end == -1:
            return body, False
        size = int(data[:line_end].split(b";")[0], 16)
        if size == 0:
            return body, data[line_end + 2 : line_end + 4] == b"\r\n"
        start = line_end + 2
        if len(data) < start + size + 2:
            return body + data[start:], False
        body += data[start : start + size]
        assert data[start + size : start + size + 2] == b"\r\n"
        data = data[start + size + 2 :]


class Recorder:
    def __init__(self) -> None:
        self.pulled = 0
        self.finalized = threading.Event()
        self.closed: list[PushStream] = []
        self.streams: list[PushStream] = []
        self.broadcast = Broadcast()
        self.last_event_id: str | None = None
        self.generators: list[Iterator[bytes]] = []


def streaming_app(rec: Recorder, tmp_path: Path) -> App:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    @app.route("/gen")
    def gen(request: Request) -> Iterator[bytes]:
        n = int(request.query.get("n", "3"))

        def pieces() -> Iterator[bytes]:
            try:
                for i in range(n):
                    rec.pulled += 1
                    yield b"%d" % i if n <= 10 else b"p" * PIECE
            finally:
                rec.finalized.set()

        generator = pieces()
        rec.generators.append(generator)
        return generator

    @app.route("/fails")
    def fails(request: Request) -> Iterator[str]:
        yield "first piece"
        raise RuntimeError("generator exploded")

    @app.route("/push")
    def push(request: Request) -> PushStream:
        stream = PushStream("text/plain")
        stream.on_close(rec.closed.append)
        rec.streams.append(stream)
        loop = request_loop[0]
        for i, delay in enumerate((0.05, 0.1, 0.15)):
            loop.call_later(delay, stream.send, f"message {i}\n")
        loop.call_later(0.2, stream.close)
        return stream

    @app.route("/hold")
    def hold(request: Request) -> PushStream:
        stream = PushStream()
        stream.on_close(rec.closed.append)
        rec.streams.append(stream)
        return stream

    @app.route("/events")
    def events(request: Request) -> EventStream:
        rec.last_event_id = request.headers.get("last-event-id")
        stream = EventStream(heartbeat_s=0.2)
        stream.on_close(rec.closed.append)
        rec.broadcast.add(stream)
        stream.send_event("hello\nworld", event="greeting", id="1")
        return stream

    @app.route("/file")
    def file(request: Request) -> Response:
        path = tmp_path / "data.bin"
        handle = path.open("rb")
        rec.streams.append(handle)  # type: ignore[arg-type]
        start = int(request.query.get("start", "0"))
        length = int(request.query.get("length", str(path.stat().st_size - start)))
        return Response(FileBody(handle, start, length), content_type="application/octet-stream")

    return app


request_loop: list[Any] = []


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def stream_server(serve: Serve, rec: Recorder, tmp_path: Path) -> Running:
    (tmp_path / "data.bin").write_bytes(os.urandom(3_000_000))
    running = serve(streaming_app(rec, tmp_path), write_high_water_bytes=65536, write_low_water_bytes=16384)
    request_loop[:] = [running.server.loop]
    return running


def test_generator_is_sent_chunked(stream_server: Running, rec: Recorder) -> None:
    with connect(stream_server.address) as sock:
        sock.sendall(b"GET /gen HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"\r\nTransfer-Encoding: chunked" in head
        assert b"Content-Length" not in head
        assert dechunk(rest) == (b"012", True)
        # The connection persists after a streamed response.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).body == b"Hello, World!"


def test_generator_to_http10_is_close_delimited(stream_server: Running) -> None:
    with connect(stream_server.address) as sock:
        sock.sendall(b"GET /gen HTTP/1.0\r\n\r\n")
        data = read_until_close(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"Connection: close" in head
    assert body == b"012"


def test_slow_reader_is_not_buffered_for(stream_server: Running, rec: Recorder) -> None:
    n = 1600  # 100 MiB
    with connect(stream_server.address) as sock:
        sock.sendall(b"GET /gen?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        time.sleep(0.5)
        queued = stream_server.call(
            lambda: max(c.transport.buffered for c in stream_server.server.connections)
        )
        # Only what the socket buffers hold was pulled, and the server holds
        # at most one high-water mark plus one piece.
        assert queued <= 65536 + PIECE + 64
        assert rec.pulled < n / 4
        received = 0
        sock.settimeout(10)
        while True:
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
            if chunk.endswith(b"0\r\n\r\n"):
                break
    assert rec.pulled == n
    assert received > n * PIECE
    assert rec.finalized.wait(2)


def test_generator_failure_ends_the_connection_without_last_chunk(
    stream_server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    with connect(stream_server.address) as sock:
        sock.sendall(b"GET /fails HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(sock)
    body, complete = dechunk(data.partition(b"\r\n\r\n")[2])
    assert body == b"first piece"
    assert not complete
    assert "generator exploded" in caplog.text
    get_ok(stream_server.address)


def test_head_closes_the_generator_unsent(stream_server: Running, rec: Recorder) -> None:
    with connect(stream_server.address) as sock:
        sock.sendall(b"HEAD /gen?n=100 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = read_until_close(sock)
    assert data.endswith(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in data
    assert rec.pulled == 0
    (generator,) = rec.generators
    assert inspect.getgeneratorstate(generator) == inspect.GEN_CLOSED  # type: ignore[arg-type]


def test_push_stream_writes_from_timers_then_keeps_alive(stream_server: Running, rec: Recorder) -> None:
    with connect(stream_server.address) as sock:
        sock.sendall(b"GET /push HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        sock.settimeout(5)
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
        body, complete = dechunk(data.partition(b"\r\n\r\n")[2])
        assert body == b"message 0\nmessage 1\nmessage 2\n"
        assert complete
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).body == b"Hello, World!"
    assert rec.closed == rec.streams


def test_server_sent_events_with_requests(stream_server: Running, rec: Recorder) -> None:
    url = f"http://{stream_server.host}:{stream_server.port}/events"
    with requests.get(url, stream=True, timeout=5, headers={"Last-Event-ID": "41"}) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        lines = response.iter_lines(decode_unicode=True)
        assert [next(lines) for _ in range(5)] == [
            "event: greeting",
            "id: 1",
            "data: hello",
            "data: world",
            "",
        ]
        stream_server.call(lambda: rec.broadcast.send_event("two\r\nlines", id="2"))
        assert [next(lines) for _ in range(4)] == ["id: 2", "data: two", "data: lines", ""]
        # Nothing sent for 0.2 s: a heartbeat comment keeps the stream alive.
        assert [next(lines) for _ in range(2)] == [": ", ""]
    assert rec.last_event_id == "41"


def _own_timers(running: Running) -> int:
    """Armed timers, less the two the server's connections share (keep-alive,
    and new silent connections), which stay armed until their next deadline."""
    server = running.server

    def count() -> int:
        return server.loop.pending_timers() - server.keepalive.armed - server.first_bytes.armed

    return running.call(count)


def test_client_leaving_mid_stream_cleans_up(stream_server: Running, rec: Recorder) -> None:
    baseline = _own_timers(stream_server)  # the lag probe
    sock = connect(stream_server.address)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(65536)
    assert stream_server.call(lambda: len(rec.broadcast)) == 1
    (stream,) = rec.broadcast.streams
    sock.close()
    deadline = time.monotonic() + 5
    while stream_server.call(lambda: len(stream_server.server.connections)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stream_server.call(lambda: len(stream_server.server.connections)) == 0
    assert rec.closed == [stream]
    assert stream.closed
    assert stream_server.call(lambda: len(rec.broadcast)) == 0
    # Its heartbeat timer and the connection's were cancelled.
    assert _own_timers(stream_server) == baseline


def test_push_stream_flow_control(stream_server: Running, rec: Recorder) -> None:
    sock = connect(stream_server.address)
    sock.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.settimeout(5)
    sock.recv(100)
    (stream,) = rec.streams
    drained = threading.Event()
    stream_server.call(lambda: stream.on_drain(lambda s: drained.set()))

    def produce() -> int:
        sent = 0
        while stream.writable and sent < 500:
            stream.send(b"x" * 65536)
            sent += 1
        return sent

    # The client is not reading: the producer is told to hold back long before 500 pieces.
    first = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        first += stream_server.call(produce)
        time.sleep(0.05)
        if not stream_server.call(lambda: stream.writable):
            break
    assert not stream_server.call(lambda: stream.writable)
    assert first < 500
    queued = stream_server.call(lambda: max(c.transport.buffered for c in stream_server.server.connections))
    assert queued <= 65536 + 65536 + 64
    # Reading drains it, and the producer hears so.
    received = 0
    while not drained.is_set() and received < first * 65536:
        received += len(sock.recv(1 << 20))
    assert drained.wait(5)
    sock.close()


def test_file_body_is_sent_whole_and_closed(stream_server: Running, rec: Recorder, tmp_path: Path) -> None:
    expected = (tmp_path / "data.bin").read_bytes()
    with connect(stream_server.address) as sock:
        sock.sendall(b"GET /file?start=100 HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
    assert response.header("content-length") == str(len(expected) - 100)
    assert response.body == expected[100:]
    (handle,) = rec.streams
    assert handle.closed  # type: ignore[attr-defined]


def test_file_is_closed_when_the_client_leaves(stream_server: Running, rec: Recorder) -> None:
    sock = connect(stream_server.address)
    sock.sendall(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    deadline = time.monotonic() + 5
    (handle,) = rec.streams
    while not handle.closed and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    assert handle.closed  # type: ignore[attr-defined]
    get_ok(stream_server.address)


def test_two_thousand_idle_connections_and_a_fresh_request_is_answered(serve: Serve) -> None:
    server = serve()
    socks = []
    sources = [f"127.0.0.{i}" for i in range(2, 6)]
    for i in range(2000):
        sock = socket.socket()
        sock.bind((sources[i % len(sources)], 0))
        sock.settimeout(5)
        sock.connect(server.address)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        socks.append(sock)
    for sock in socks:
        assert recv_response(sock).status == 200
    assert server.call(lambda: server.server.count_by_state()["IDLE"]) == 2000
    start = time.monotonic()
    get_ok(server.address)
    assert time.monotonic() - start < 1.0
    for sock in socks:
        sock.close()
    gc.collect()


def test_empty_file_range_and_the_next_request(stream_server: Running, rec: Recorder) -> None:
    with connect(stream_server.address) as sock:
        sock.sendall(
            b"GET /file?length=0 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        empty, hello = parse_responses(read_until_close(sock))
    assert (empty.status, empty.header("content-length"), empty.body) == (200, "0", b"")
    assert hello.body == b"Hello, World!"
    (handle,) = rec.streams
    assert handle.closed  # type: ignore[attr-defined]


def test_a_stream_cut_short_is_still_logged(stream_server: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "reactor.access")
    sock = connect(stream_server.address)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(65536)
    sock.close()
    deadline = time.monotonic() + 5
    while stream_server.call(lambda: len(stream_server.server.connections)) and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "reactor.access"]
    assert any('"GET /events HTTP/1.1" 200 ' in line for line in lines), lines
