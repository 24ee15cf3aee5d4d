"""Nothing left behind: a closed connection is freed by reference counting alone.

The server runs in a thread of this process, so that the test can hold a weak
reference to every connection it accepts and measure the memory the process
holds. The garbage collector is off for the whole run: whatever a cycle keeps
alive stays alive, and shows.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import threading
import time
import tracemalloc
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reactor import App, Broadcast, Config, EventStream, PushStream, Request, Response, Server
from reactor.connection import Connection
from reactor.live import mount
from reactor.metrics import prometheus_text
from tests.conftest import Running, connect, get_ok, parse_responses, read_until_close, recv_response

Serve = Callable[..., Running]

MIB = 1 << 20


class Recording(dict[Connection, None]):
    """The server's registry, also keeping a weak reference to each connection added."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[weakref.ref[Connection]] = []

    def __setitem__(self, connection: Connection, value: None) -> None:
        self.refs.append(weakref.ref(connection))
        super().__setitem__(connection, value)


def lifecycle_app() -> tuple[App, Broadcast]:
    app = App()
    ticks = Broadcast()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    @app.route("/upload", methods=["POST"])
    def upload(request: Request) -> str:
        return str(len(request.body))

    @app.route("/big")
    def big(request: Request) -> Response:
        return Response(b"b" * (16 * MIB), content_type="application/octet-stream")

    @app.route("/events")
    def events(request: Request) -> EventStream:
        return ticks.add(EventStream(heartbeat_s=0.05))

    @app.route("/lonely")
    def lonely(request: Request) -> EventStream:
        return EventStream(heartbeat_s=0.1)  # only heartbeats

    def attach(server: Any) -> None:
        ticks.every(server.loop, 0.02, lambda: ticks.send_event("tick", event="tick"))

    app.on_attach(attach)
    return app, ticks


def _read_events(sock: socket.socket, count: int) -> bytes:
    data = b""
    sock.settimeout(5)
    while data.count(b"event: tick") < count:
        chunk = sock.recv(65536)
        assert chunk, f"the stream ended early: {data!r}"
        data += chunk
    return data


def _traffic(address: tuple[str, int], rounds: int) -> None:
    """Every way a connection ends, ``rounds`` times over."""
    upload = b"u" * MIB
    for _ in range(rounds):
        # Keep-alive requests, then the client closes between requests.
        with connect(address) as sock:
            for _ in range(3):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                assert recv_response(sock).body == b"Hello, World!"
        # A 1 MiB upload on a connection the server closes.
        with connect(address) as sock:
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(upload) + upload
            )
            assert read_until_close(sock).endswith(b"\r\n\r\n1048576")
        # An event stream of a Broadcast, closed by the client.
        with connect(address) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            _read_events(sock, 2)
        # A stream that nothing writes to, closed by the client.
        with connect(address) as sock:
            sock.sendall(b"GET /lonely HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response_head(sock).startswith(b"HTTP/1.1 200 ")
    # Timeouts: the header deadline (408), the body gap (408), keep-alive, write.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    stalled.connect(address)
    socks = [connect(address) for _ in range(3)] + [stalled]
    try:
        head, body, idle, _ = socks
        head.sendall(b"GET / HTTP/1.1\r\nHost:")
        body.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 50000)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        stalled.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_until_close(head).startswith(b"HTTP/1.1 408 ")
        assert read_until_close(body).startswith(b"HTTP/1.1 408 ")
        assert read_until_close(idle).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.0)  # stalled reads nothing: the write timeout closes it
    finally:
        for sock in socks:
            sock.close()


def recv_response_head(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def _settle(running: Running, ticks: Broadcast) -> None:
    """Wait until every connection, lingering socket and subscriber is gone."""
    server = running.server
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if running.call(lambda: not server.connections and not server._lingering and not len(ticks)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"still open: {running.call(lambda: list(server.connections))}")
    for _ in range(3):  # a few passes of the loop: its ready queue empties
        running.call(lambda: None)


def _ours(obj: object) -> bool:
    if isinstance(obj, types.MethodType):
        obj = obj.__self__
    return type(obj).__module__.startswith("reactor")


@contextlib.contextmanager
def gc_off() -> Iterator[None]:
    """No garbage collection inside; tracemalloc on."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def test_closed_connections_are_freed_by_reference_counting(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")  # records hold strings and numbers only
    app, ticks = lifecycle_app()
    running = serve(
        app, header_timeout_s=0.3, body_timeout_s=0.3, write_timeout_s=0.3, keepalive_timeout_s=0.3
    )
    registry = Recording()

    def install() -> None:
        running.server.connections = registry

    running.call(install)
    with gc_off():
        _traffic(running.address, 1)  # warm up: imports, caches, first allocations
        _settle(running, ticks)
        baseline, _ = tracemalloc.get_traced_memory()
        warm_up = len(registry.refs)

        _traffic(running.address, 20)
        _settle(running, ticks)

        messages = [record.getMessage() for record in caplog.records]
        assert sum(message.startswith("write timeout to 127.0.0.1") for message in messages) == 2, messages
        alive = [ref() for ref in registry.refs if ref() is not None]
        assert not alive, (
            f"{len(alive)} of {len(registry.refs)} closed connections are still alive: {alive[:3]}"
        )
        assert len(registry.refs) - warm_up >= 20 * 4 + 4
        # 20 MiB of uploads went through; what is held now must not be them.
        held = tracemalloc.get_traced_memory()[0] - baseline
        assert held < 4 * MIB, f"{held / MIB:.1f} MiB more is held after the connections closed"

        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [obj for obj in gc.garbage if _ours(obj)]
        assert not ours, f"only a garbage collection would free: {ours[:10]}"


# -- a handler's bad value: a 500, or a close; never a hang ----------------------------


class BrokenStream(PushStream):
    """A push stream whose start hook fails (before any byte of its head left)."""

    __slots__ = ()

    def started(self) -> None:
        raise RuntimeError("the stream could not start")


def bad_values_app() -> App:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    @app.route("/bad-reason")
    def bad_reason(request: Request) -> Response:
        response = Response(b"x")
        response.reason = "Sn\u2603w"  # after the constructor: not Latin-1 on the wire
        return response

    @app.route("/bad-body")
    def bad_body(request: Request) -> Response:
        response = Response(b"")
        response.body = bytearray(b"abc")  # type: ignore[assignment]
        return response

    @app.route("/bad-piece")
    def bad_piece(request: Request) -> Iterator[Any]:
        yield b"good"
        yield 42

    @app.route("/bad-start")
    def bad_start(request: Request) -> PushStream:
        return BrokenStream()

    return app


def _wait_all_closed(running: Running) -> None:
    """Every connection closes (the last client's close takes a pass of the loop to see)."""
    deadline = time.monotonic() + 5
    while running.call(lambda: len(running.server.connections)):
        assert time.monotonic() < deadline, running.call(lambda: list(running.server.connections))
        time.sleep(0.02)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "reactor.error" and r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (
            "/bad-reason",
            "bad response from handler for GET /bad-reason: LocalProtocolError: a character outside",
        ),
        (
            "/bad-body",
            "bad response from handler for GET /bad-body: TypeError: a response body must be bytes, ",
        ),
        ("/bad-start", "response to GET /bad-start failed: RuntimeError: the stream could not start"),
    ],
)
def test_a_bad_value_found_before_the_head_left_is_a_500_and_close(
    serve: Serve, caplog: pytest.LogCaptureFixture, path: str, logged: str
) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    running = serve(bad_values_app())
    with connect(running.address) as sock:
        # Keep-alive asked for, and a second request behind it: neither may keep it open.
        sock.sendall(b"GET %b HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        data = read_until_close(sock)
    (response,) = parse_responses(data)
    assert response.status == 500
    assert response.header("connection") == "close"
    assert response.body == b"500 Internal Server Error\n"
    assert [line for line in _errors(caplog) if line.startswith(logged)], _errors(caplog)
    get_ok(running.address)
    _wait_all_closed(running)


def test_a_bad_piece_after_the_head_left_closes_the_connection(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    running = serve(bad_values_app())
    with connect(running.address) as sock:
        sock.sendall(b"GET /bad-piece HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert body == b"4\r\ngood\r\n"  # and no last chunk: the client sees a cut response
    assert "response to GET /bad-piece failed: TypeError: a streamed body yielded int, not bytes or str" in (
        _errors(caplog)
    )
    get_ok(running.address)
    _wait_all_closed(running)


def test_a_push_stream_refuses_what_is_not_bytes_and_goes_on(serve: Serve) -> None:
    stream = PushStream("text/plain")
    with pytest.raises(TypeError, match="not int"):
        stream.send(42)  # type: ignore[arg-type]
    stream.send(bytearray(b"ok"))
    assert stream._pending == [b"ok"]


# -- the error log escapes what the client sent ------------------------------------------


def test_the_error_log_escapes_the_request_path(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    app = App()

    @app.route("/fail/{name}")
    def fail(request: Request) -> str:
        raise RuntimeError("handler exploded")

    running = serve(app)
    with connect(running.address) as sock:
        sock.sendall(b"GET /fail/a%1b[2Jb%0dc%0ad HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        (response,) = parse_responses(read_until_close(sock))
    assert response.status == 500
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("handler failed for")]
    assert messages == ["handler failed for GET /fail/a\\x1b[2Jb\\x0dc\\x0ad"]


# -- half-close is not leaving -----------------------------------------------------------


def test_a_half_closed_client_still_gets_its_event_stream(serve: Serve) -> None:
    app = App()

    @app.route("/countdown")
    def countdown(request: Request) -> EventStream:
        stream = EventStream(heartbeat_s=None)
        loop = running.server.loop
        for i in range(3):  # well after the client's SHUT_WR has arrived
            loop.call_later(0.2 * (i + 1), stream.send_event, str(i), "count")
        loop.call_later(0.8, stream.close)
        return stream

    running = serve(app)
    with connect(running.address) as sock:
        sock.sendall(b"GET /countdown HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)  # done sending, still reading (RFC 9112 section 9.6)
        data = read_until_close(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    text = body.decode()
    assert text.count("event: count\n") == 3, text
    assert text.endswith("0\r\n\r\n"), text  # the stream ended normally, then the server closed
    _wait_all_closed(running)


def test_end_of_input_mid_request_is_still_a_400(serve: Serve) -> None:
    running = serve(bad_values_app())
    with connect(running.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        sock.shutdown(socket.SHUT_WR)
        (response,) = parse_responses(read_until_close(sock))
    assert response.status == 400


# -- connections by state, counted as they move ------------------------------------------


def _counts_and_walk(running: Running) -> tuple[dict[str, int], dict[str, int]]:
    def both() -> tuple[dict[str, int], dict[str, int]]:
        server = running.server
        walked = dict.fromkeys(server.count_by_state(), 0)
        for connection in server.connections:
            walked[connection.state.name] += 1
        return server.count_by_state(), walked

    result: tuple[dict[str, int], dict[str, int]] = running.call(both)
    return result


def _wait_counts(running: Running, expected: dict[str, int]) -> None:
    """Wait until the counts are ``expected`` (states it leaves out: 0)."""
    expected = dict.fromkeys(running.call(running.server.count_by_state), 0) | expected
    deadline = time.monotonic() + 5
    while True:
        counted, walked = _counts_and_walk(running)
        assert counted == walked
        if counted == expected or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert counted == expected


def test_counts_by_state_follow_every_move(serve: Serve) -> None:
    app, _ = lifecycle_app()
    running = serve(app, header_timeout_s=30, body_timeout_s=30)
    address = running.address
    idle = [connect(address) for _ in range(5)]
    for sock in idle:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        recv_response(sock)
    fresh = [connect(address) for _ in range(4)]  # nothing sent: waiting for a head
    heads = [connect(address) for _ in range(3)]
    for sock in heads:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
    bodies = [connect(address) for _ in range(2)]
    for sock in bodies:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    streams = [connect(address) for _ in range(2)]
    for sock in streams:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        recv_response_head(sock)
    _wait_counts(running, {"IDLE": 5, "READING_HEADERS": 7, "READING_BODY": 2, "PUSHING": 2})

    # Moves: a head completes, a body completes, an idle connection starts a request.
    heads[0].sendall(b"\r\n")
    recv_response(heads[0])
    bodies[0].sendall(b"defghij")
    recv_response(bodies[0])
    idle[0].sendall(b"GET / HTTP/1.1\r\n")
    _wait_counts(running, {"IDLE": 6, "READING_HEADERS": 7, "READING_BODY": 1, "PUSHING": 2})

    # Closes, by the client in each state.
    for sock in (idle[1], fresh[0], heads[1], bodies[1], streams[0]):
        sock.close()
    _wait_counts(running, {"IDLE": 5, "READING_HEADERS": 5, "READING_BODY": 0, "PUSHING": 1})

    for sock in idle + fresh + heads + bodies + streams:
        sock.close()
    _wait_counts(running, {"IDLE": 0, "READING_HEADERS": 0, "READING_BODY": 0, "WRITING": 0})


def _render_cost_s(running: Running) -> float:
    """Best of 5 of the CPU time of 100 renderings of the metrics, on the loop's thread."""

    def measure() -> float:
        best = float("inf")
        for _ in range(5):
            start = time.thread_time()
            for _ in range(100):
                prometheus_text(running.server)
            best = min(best, time.thread_time() - start)
        return best

    cost: float = running.call(measure)
    return cost


def test_metrics_cost_does_not_grow_with_idle_connections(serve: Serve) -> None:
    running = serve(lifecycle_app()[0], header_timeout_s=60)
    few = [connect(running.address) for _ in range(10)]
    _wait_counts(running, {"IDLE": 0, "READING_HEADERS": 10, "READING_BODY": 0, "WRITING": 0})
    with_few = _render_cost_s(running)
    many = [connect(running.address) for _ in range(1990)]
    try:
        _wait_counts(running, {"IDLE": 0, "READING_HEADERS": 2000, "READING_BODY": 0, "WRITING": 0})
        with_many = _render_cost_s(running)
    finally:
        for sock in few + many:
            sock.close()
    assert with_many < 3 * with_few, f"{with_many * 1e3:.2f} ms vs {with_few * 1e3:.2f} ms for 100 renderings"


def test_a_stopped_server_is_freed_by_reference_counting() -> None:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    mount(app)
    server = Server(app, Config(port=0, lag_probe_interval_s=0.01))
    server.listen()
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False}, daemon=True)
    running = Running(server, thread)
    with gc_off():
        thread.start()
        get_ok(running.address)
        for path in (b"/_reactor/metrics", b"/_reactor/stats", b"/_reactor/"):
            with connect(running.address) as sock:
                sock.sendall(b"GET %b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
                assert read_until_close(sock).startswith(b"HTTP/1.1 200 ")
        with connect(running.address) as sock:  # a watcher of the live view, who leaves
            sock.sendall(b"GET /_reactor/events HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b"event: stats" in recv_response_head(sock) + sock.recv(65536)
        idle = connect(running.address)  # still open at the stop
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        recv_response(idle)
        running.stop()
        idle.close()
        refs = [weakref.ref(server), weakref.ref(server.loop), weakref.ref(app)]
        del server, running, app, index, thread
        assert [ref() for ref in refs] == [None, None, None]
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [obj for obj in gc.garbage if _ours(obj)]
        assert not ours, f"only a garbage collection would free: {ours[:10]}"


# -- WebSockets: freed by reference counting too ------------------------------------------


def _websocket_app(sockets: list[weakref.ref[Any]], feed: Broadcast) -> App:
    app = App()

    @app.websocket("/echo")
    class Echo:
        def on_open(self, ws: Any) -> None:
            sockets.append(weakref.ref(ws))
            feed.add(ws)

        def on_message(self, ws: Any, data: str | bytes) -> None:
            if data == "close-me":
                ws.close(4000, "asked")
            elif data == "flood":
                self.on_drain(ws)
            else:
                ws.send(data)

        def on_drain(self, ws: Any) -> None:
            # Only the flooding client ever has output held back: fill it
            # again until the kernel's buffers are full too.
            while ws.writable:
                ws.send_bytes(b"f" * 65536)

    return app


def _websocket_traffic(address: tuple[str, int]) -> None:
    """Every way a WebSocket ends."""
    from loadtests.wsclient import RawWebSocket
    from reactor.websocket.frames import Opcode

    def opened() -> RawWebSocket:
        ws = RawWebSocket(address)
        assert ws.open("/echo").startswith(b"HTTP/1.1 101 ")
        return ws

    ws = opened()  # the client's close handshake
    ws.send_text("hi")
    assert ws.recv_frame() == (Opcode.TEXT, True, b"hi")
    ws.close()
    assert ws.closed_by_server()
    ws.shut()
    ws = opened()  # the server's close handshake
    ws.send_text("close-me")
    assert ws.recv_frame()[0] == Opcode.CLOSE
    ws.close(4000)
    assert ws.closed_by_server()
    ws.shut()
    ws = opened()  # a protocol error
    ws.sock.sendall(b"\x81\x01x")  # unmasked
    assert ws.closed_by_server()
    ws.shut()
    opened().shut()  # the peer vanishes without a Close
    silent = [opened() for _ in range(2)]  # the ping timeout, and the close timeout
    silent[1].send_text("close-me")
    stalled = socket.socket()  # the write timeout: a client that never reads
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(address)
    from loadtests.wsclient import handshake_request
    from reactor.websocket.frames import client_frame

    stalled.sendall(handshake_request("/echo") + client_frame(Opcode.TEXT, b"flood"))
    try:
        for ws in silent:
            assert ws.closed_by_server(5)
        time.sleep(1.0)
    finally:
        for ws in silent:
            ws.shut()
        stalled.close()


def test_closed_websockets_are_freed_by_reference_counting(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    sockets: list[weakref.ref[Any]] = []
    feed = Broadcast()
    running = serve(
        _websocket_app(sockets, feed),
        write_timeout_s=0.3,
        ws_ping_interval_s=0.5,  # the never-reading client meets the write timeout first
        ws_ping_timeout_s=0.3,
        ws_close_timeout_s=0.3,
    )
    registry = Recording()
    running.call(lambda: setattr(running.server, "connections", registry))
    with gc_off():
        _websocket_traffic(running.address)  # warm up
        _settle(running, feed)
        warm_up = len(sockets)
        for _ in range(5):
            _websocket_traffic(running.address)
        _settle(running, feed)
        messages = [record.getMessage() for record in caplog.records]
        assert sum(message.startswith("write timeout to") for message in messages) == 6, messages
        assert sum("ping timeout" in message for message in messages) == 6, messages
        assert len(sockets) - warm_up == 5 * 7
        alive = [ref() for ref in sockets if ref() is not None]
        assert not alive, f"{len(alive)} of {len(sockets)} closed WebSockets are still alive: {alive[:3]}"
        connections = [ref() for ref in registry.refs if ref() is not None]
        assert not connections, f"{len(connections)} upgraded connections are still alive"
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [obj for obj in gc.garbage if _ours(obj)]
        assert not ours, f"only a garbage collection would free: {ours[:10]}"
