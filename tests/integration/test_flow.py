"""Expect: 100-continue, backpressure and the connection limit, over real sockets."""

from __future__ import annotations

import time
from typing import Any

from reactor import App, Request, Response
from tests.conftest import Running, connect, get_ok, parse_responses, read_until_close, recv_response


def test_100_continue_sent_before_the_body_is_read(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        sock.settimeout(5)
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response = recv_response(sock)
    assert response.status == 200
    assert response.body == b"hello"


def test_final_status_instead_of_100_when_the_body_is_moot(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(
            b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        data = read_until_close(sock)
    (response,) = parse_responses(data)
    assert response.status == 404
    assert response.header("connection") == "close"
    assert b"100 Continue" not in data


def test_expect_with_body_already_sent_skips_100(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
        response = recv_response(sock)
    assert response.status == 200
    assert response.body == b"hi"


def test_pipelining_without_reading_is_bounded_by_the_high_water_mark(serve: Any) -> None:
    calls = []
    app = App()

    @app.route("/chunk")
    def chunk(request: Request) -> Response:
        calls.append(1)
        return Response(b"z" * 32768)

    server: Running = serve(app, write_high_water_bytes=65536, write_low_water_bytes=16384)
    count = 1000  # 1000 x 32 KiB = 31 MiB of responses, far past the kernel's buffers
    with connect(server.address) as sock:
        sock.sendall(b"GET /chunk HTTP/1.1\r\nHost: t\r\n\r\n" * count)
        time.sleep(0.5)
        handled_while_not_reading = len(calls)
        # The server stopped answering once its output passed the mark and the
        # kernel's socket buffers (a few MiB on loopback) were full.
        assert handled_while_not_reading < count / 2
        out = server.call(lambda: max(c.transport.buffered for c in server.server.connections))
        assert out <= 65536 + 32768 + 200
        one = len(b"".join(_one_response(server)))
        received = 0
        sock.settimeout(10)
        while received < count * one:
            data = sock.recv(1 << 20)
            assert data, f"closed after {received} bytes"
            received += len(data)
        assert received == count * one
    assert len(calls) == count + 1


def _one_response(server: Running) -> list[bytes]:
    with connect(server.address) as sock:
        sock.sendall(b"GET /chunk HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = read_until_close(sock)
    # The same response without "Connection: close", as the pipelined ones are.
    return [data.replace(b"Connection: close\r\n", b"")]


def test_max_connections_stops_accepting_and_resumes(serve: Any) -> None:
    server: Running = serve(max_connections=2)
    first, second = connect(server.address), connect(server.address)
    for sock in (first, second):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).status == 200
    third = connect(server.address)  # completes in the kernel's backlog
    third.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    third.settimeout(0.5)
    try:
        early = third.recv(100)
    except TimeoutError:
        early = b""
    assert early == b"", "the server accepted past max_connections"
    assert server.call(lambda: len(server.server.connections)) == 2
    first.close()
    assert recv_response(third).status == 200
    second.close()
    third.close()
    get_ok(server.address)
