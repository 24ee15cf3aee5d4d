"""WebSockets over real loopback sockets: the handshake's bytes, echo, closing, timeouts, broadcast."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from loadtests.wsclient import RawWebSocket, handshake_request, read_head
from reactor import App, Request
from reactor.streams import Broadcast, EventStream
from reactor.websocket.frames import Opcode, client_frame
from tests.conftest import Running, connect, parse_responses, read_until_close, recv_response

Serve = Callable[..., Running]
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


class Recorder:
    """What the handlers saw, read by the test thread."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.changed = threading.Condition()

    def add(self, *event: Any) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, kind: str, timeout: float = 5.0) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for event in self.events:
                    if event[0] == kind:
                        return event
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind!r} in {self.events}"
                self.changed.wait(left)


def ws_app(recorder: Recorder, broadcast: Broadcast | None = None) -> App:
    app = App()

    @app.route("/plain", methods=["GET", "POST"])
    def plain(request: Request) -> str:
        return "plain"

    @app.websocket("/echo/{room}", subprotocols=["superchat", "chat"])
    class Echo:
        def on_open(self, ws: Any) -> None:
            recorder.add("open", ws.request.params["room"], ws.subprotocol, ws.origin)

        def on_message(self, ws: Any, data: str | bytes) -> None:
            if data == "close-me":
                ws.close(4000, "asked")
                return
            ws.send(data)

        def on_close(self, ws: Any, code: int, reason: str) -> None:
            recorder.add("close", code, reason)

    app.websocket("/small", max_message=1000, on_message=lambda ws, data: ws.send(data))

    @app.websocket("/flood")
    class Flood:
        """Sends 64 KiB messages while the socket is writable, and more on each drain."""

        def on_open(self, ws: Any) -> None:
            self.fill(ws)

        def on_drain(self, ws: Any) -> None:
            recorder.add("drain")
            self.fill(ws)

        def fill(self, ws: Any) -> None:
            while ws.writable:
                ws.send_bytes(b"x" * 65536)
            recorder.add("held", ws.buffered)

        def on_close(self, ws: Any, code: int, reason: str) -> None:
            recorder.add("flood closed", code)

    if broadcast is not None:
        app.websocket("/feed", on_open=broadcast.add)

        @app.route("/events")
        def events(request: Request) -> EventStream:
            return broadcast.add(EventStream(heartbeat_s=None))

    return app


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def test_handshake_bytes_on_the_wire(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    with connect(running.address) as sock:
        sock.sendall(
            handshake_request(
                "/echo/lobby",
                "127.0.0.1",
                RFC_KEY,
                "Sec-WebSocket-Protocol: chat",
                "Origin: http://a.example",
            )
        )
        head, rest = read_head(sock)
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    )
    assert rest == b""
    assert recorder.wait_for("open") == ("open", "lobby", "chat", "http://a.example")


def refusal(running: Running, request: bytes) -> Any:
    with connect(running.address) as sock:
        sock.sendall(request)
        (response,) = parse_responses(read_until_close(sock))
    assert response.header("Connection") == "close"
    return response


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ("Sec-WebSocket-Version: 8", 426),
        ("Sec-WebSocket-Key: second", 400),
    ],
)
def test_bad_upgrades_are_refused_and_closed(
    serve: Serve, recorder: Recorder, extra: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    running = serve(ws_app(recorder))
    request = handshake_request("/echo/x", "127.0.0.1", RFC_KEY).replace(
        b"Sec-WebSocket-Version: 13\r\n", b""
    )
    request = request[:-2] + extra.encode() + b"\r\n\r\n"
    if status == 400:
        request = request.replace(b"\r\nSec-WebSocket-Key: second", b"\r\nSec-WebSocket-Version: 13")
        request = request.replace(RFC_KEY.encode(), b"c2hvcnQ=")  # base64 of 5 bytes
    response = refusal(running, request)
    assert response.status == status, response
    if status == 426:
        assert response.header("Sec-WebSocket-Version") == "13"
        assert response.header("Upgrade") == "websocket"
    assert not [e for e in recorder.events if e[0] == "open"]


def test_plain_get_of_a_websocket_route_is_426(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    response = refusal(running, b"GET /echo/x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert response.status == 426
    assert response.header("Upgrade") == "websocket"


def test_missing_connection_token_http10_and_post_are_refused(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    no_token = handshake_request("/echo/x").replace(b"Connection: Upgrade", b"Connection: keep-alive")
    assert refusal(running, no_token).status == 400
    http10 = handshake_request("/echo/x").replace(b"HTTP/1.1", b"HTTP/1.0")
    assert refusal(running, http10).status == 400
    # Only GET is routed there: the router's own 405 (the connection may persist).
    with connect(running.address) as sock:
        sock.sendall(handshake_request("/echo/x").replace(b"GET", b"POST"))
        response = recv_response(sock)
    assert response.status == 405 and "GET" in (response.header("Allow") or "")


def test_upgrade_to_a_plain_route_is_a_plain_request(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    with connect(running.address) as sock:
        sock.sendall(
            handshake_request("/plain") + b"GET /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        first, second = parse_responses(read_until_close(sock))
    assert (first.status, first.body, second.status) == (200, b"plain", 200)


def test_origin_allow_list(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder), ws_origins="https://good.example")
    assert (
        refusal(running, handshake_request("/echo/x", "h", None, "Origin: https://evil.example")).status
        == 403
    )
    ws = RawWebSocket(running.address)
    assert ws.open("/echo/x", "Origin: https://good.example").startswith(b"HTTP/1.1 101 ")
    assert recorder.wait_for("open")[3] == "https://good.example"
    ws.shut()


def test_echo_with_the_websockets_library(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    url = f"ws://127.0.0.1:{running.port}/echo/lib"
    with ws_connect(url, subprotocols=["chat", "superchat"], max_size=None) as client:  # type: ignore[list-item]
        assert client.subprotocol == "superchat"  # the server's preference
        client.send("héllo")
        assert client.recv() == "héllo"
        client.send(b"\x00\xff" * 50000)
        assert client.recv() == b"\x00\xff" * 50000
        assert "permessage-deflate" in (client.response.headers.get("Sec-WebSocket-Extensions") or "")
        client.ping(b"are you there").wait(5)
    assert recorder.wait_for("close")[1] == 1000
    assert running.call(lambda: running.server.count_by_state()["UPGRADED"]) == 0


def test_raw_client_fragments_pings_and_first_frames_with_the_handshake(
    serve: Serve, recorder: Recorder
) -> None:
    running = serve(ws_app(recorder))
    ws = RawWebSocket(running.address)
    first = client_frame(Opcode.TEXT, b"sent with the head")
    ws.open("/echo/raw", first=first)
    assert ws.recv_frame() == (Opcode.TEXT, True, b"sent with the head")
    # A text message in three fragments, a ping between them; the multi-byte
    # character is split across fragments.
    word = "naïve ☃".encode()
    ws.send(Opcode.TEXT, word[:3], fin=False)
    ws.send(Opcode.PING, b"between")
    ws.send(Opcode.CONTINUATION, word[3:8], fin=False)
    ws.send(Opcode.CONTINUATION, word[8:], fin=True)
    assert ws.recv_frame() == (Opcode.PONG, True, b"between")
    assert ws.recv_frame() == (Opcode.TEXT, True, word)
    ws.close(1000, "done")
    assert ws.recv_frame() == (Opcode.CLOSE, True, struct.pack("!H", 1000))  # the code echoed
    assert ws.closed_by_server()
    assert recorder.wait_for("close") == ("close", 1000, "done")


def test_protocol_error_sends_its_close_code_then_closes(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    ws = RawWebSocket(running.address)
    ws.open("/echo/raw")
    ws.sock.sendall(b"\x81\x02hi")  # unmasked: RFC 6455 §5.1 makes it a protocol error
    opcode, _, payload = ws.recv_frame()
    assert opcode == Opcode.CLOSE and struct.unpack("!H", payload[:2])[0] == 1002
    assert ws.closed_by_server()
    assert recorder.wait_for("close")[1] == 1002


def test_invalid_utf8_is_1007_and_too_big_is_1009(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    ws = RawWebSocket(running.address)
    ws.open("/echo/raw")
    ws.send(Opcode.TEXT, b"ok \xff")
    opcode, _, payload = ws.recv_frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (Opcode.CLOSE, 1007)
    assert ws.closed_by_server()
    small = RawWebSocket(running.address)
    small.open("/small")
    small.send(Opcode.BINARY, b"a" * 1000)
    assert small.recv_frame() == (Opcode.BINARY, True, b"a" * 1000)
    small.send(Opcode.BINARY, b"a" * 600, fin=False)
    small.send(Opcode.CONTINUATION, b"a" * 600)  # 1200 in all: over the route's 1000
    opcode, _, payload = small.recv_frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (Opcode.CLOSE, 1009)
    assert small.closed_by_server()


def test_server_close_handshake_and_its_timeout(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder), ws_close_timeout_s=0.5)
    ws = RawWebSocket(running.address)
    ws.open("/echo/raw")
    ws.send_text("close-me")
    assert ws.recv_frame() == (Opcode.CLOSE, True, struct.pack("!H", 4000) + b"asked")
    ws.send_text("dropped: the server has sent its Close")
    ws.close(4000, "asked")  # our answer: the server closes the TCP connection
    assert ws.closed_by_server(2)
    assert recorder.wait_for("close") == ("close", 4000, "asked")
    # A client that never answers the Close is cut at ws_close_timeout_s.
    silent = RawWebSocket(running.address)
    silent.open("/echo/raw")
    silent.send_text("close-me")
    assert silent.recv_frame()[0] == Opcode.CLOSE
    started = time.monotonic()
    assert silent.closed_by_server(5)
    assert 0.3 < time.monotonic() - started < 4


def test_ping_timeout_cuts_a_silent_client_and_spares_one_that_answers(
    serve: Serve, recorder: Recorder
) -> None:
    running = serve(ws_app(recorder), ws_ping_interval_s=0.3, ws_ping_timeout_s=0.4)
    silent = RawWebSocket(running.address)
    silent.open("/echo/silent")
    url = f"ws://127.0.0.1:{running.port}/echo/lively"
    with ws_connect(url, ping_interval=None) as lively:  # it still answers the server's pings
        assert silent.recv_frame(3) == (Opcode.PING, True, b"")  # after about 0.3 s of silence
        assert silent.closed_by_server(3)  # not answered within 0.4 s
        lively.send("still here")
        assert lively.recv(3) == "still here"
        time.sleep(1.2)  # several intervals: answered pings keep it open
        lively.send("and now")
        assert lively.recv(3) == "and now"


def test_never_reading_client_is_cut_at_the_write_timeout_while_another_is_served(
    serve: Serve, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    running = serve(ws_app(recorder), write_timeout_s=0.5)
    sleeper = socket.create_connection(running.address)
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.sendall(handshake_request("/flood"))
    held = recorder.wait_for("held")
    assert held[1] > 65536  # above the high-water mark, then it stopped
    with ws_connect(f"ws://127.0.0.1:{running.port}/echo/other") as other:
        for n in range(20):
            other.send(f"message {n}")
            assert other.recv(3) == f"message {n}"
    assert recorder.wait_for("flood closed", 5)[1] == 1006
    assert any("write timeout" in record.getMessage() for record in caplog.records)
    sleeper.close()


def test_on_drain_runs_when_a_slow_reader_catches_up(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    reader = RawWebSocket(running.address)
    reader.open("/flood")
    recorder.wait_for("held")
    for _ in range(4):  # read about four messages' worth: the output drains below the low-water mark
        reader.recv_frame()
    recorder.wait_for("drain")
    reader.shut()


def test_graceful_shutdown_sends_1001(serve: Serve, recorder: Recorder) -> None:
    running = serve(ws_app(recorder))
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(ws_connect(f"ws://127.0.0.1:{running.port}/echo/{n}")) for n in range(3)
        ]
        for client in clients:
            client.send("hi")
            assert client.recv(3) == "hi"
        running.server.loop.call_soon_threadsafe(running.server.shutdown)
        for client in clients:
            with pytest.raises(ConnectionClosed) as info:
                client.recv(5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    running.thread.join(5)
    assert not running.thread.is_alive()


def test_broadcast_reaches_sse_streams_and_websockets(serve: Serve, recorder: Recorder) -> None:
    broadcast = Broadcast()
    running = serve(ws_app(recorder, broadcast))
    sockets = [RawWebSocket(running.address) for _ in range(3)]
    for ws in sockets:
        ws.open("/feed")
    sse = connect(running.address)
    sse.sendall(b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
    read_head(sse)
    deadline = time.monotonic() + 5
    while running.call(lambda: len(broadcast)) < 4:
        assert time.monotonic() < deadline, "the subscribers did not all join"
        time.sleep(0.01)
    queued: list[Any] = []

    def publish() -> int:
        sent = broadcast.send_event("hello all", event="news")
        # Outside a transport callback, output waits for the next pass: still queued here.
        queued.extend(ws.transport._out[-1] for ws in broadcast.sockets)  # type: ignore[attr-defined]
        return sent

    assert running.call(publish) == 4
    assert len(queued) == 3 and all(frame is queued[0] for frame in queued)  # framed once
    for ws in sockets:
        assert ws.recv_frame() == (Opcode.TEXT, True, b"hello all")
    sse.settimeout(5)
    body = b""
    while b"data: hello all\n\n" not in body:
        body += sse.recv(65536)
    assert b"event: news\n" in body
    sockets[0].shut()
    deadline = time.monotonic() + 5
    while running.call(lambda: len(broadcast.sockets)) != 2:
        assert time.monotonic() < deadline, "a closed socket stayed subscribed"
        time.sleep(0.01)
    sse.close()


def test_open_websockets_are_counted_in_the_metrics(serve: Serve, recorder: Recorder) -> None:
    from reactor.metrics import prometheus_text

    running = serve(ws_app(recorder))
    sockets = [RawWebSocket(running.address) for _ in range(2)]
    for ws in sockets:
        ws.open("/echo/m")
    deadline = time.monotonic() + 5
    while 'reactor_connections{state="upgraded"} 2' not in running.call(
        lambda: prometheus_text(running.server)
    ):
        assert time.monotonic() < deadline, running.call(lambda: prometheus_text(running.server))
        time.sleep(0.02)
    for ws in sockets:
        ws.close()
        assert ws.closed_by_server()
    deadline = time.monotonic() + 5
    while 'reactor_connections{state="upgraded"} 0' not in running.call(
        lambda: prometheus_text(running.server)
    ):
        assert time.monotonic() < deadline, "closed WebSockets are still counted"
        time.sleep(0.02)
