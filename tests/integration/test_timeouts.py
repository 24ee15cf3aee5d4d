"""Each timeout fires at its deadline, and other clients are served meanwhile."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import pytest

from tests.conftest import Running, connect, get_ok, parse_responses, read_until_close, recv_response

Serve = Callable[..., Running]


def test_header_timeout_cuts_a_slowloris_at_the_deadline(serve: Serve) -> None:
    server = serve(header_timeout_s=1.0)
    with connect(server.address) as sock:
        start = time.monotonic()
        request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
        sock.settimeout(0.05)
        closed_at = None
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if byte % 8 == 0:
                    get_ok(server.address)  # others are served meanwhile
                continue
            closed_at = time.monotonic()
            break
        assert closed_at is not None, "the trickling client was never cut off"
        sock.settimeout(5)
        data += read_until_close(sock)
    elapsed = closed_at - start
    assert 0.9 <= elapsed < 2.0, elapsed
    (response,) = parse_responses(data)
    assert response.status == 408
    assert response.header("connection") == "close"


def test_silent_new_connection_is_closed_quietly_at_the_header_deadline(serve: Serve) -> None:
    server = serve(header_timeout_s=0.5)
    with connect(server.address) as sock:
        start = time.monotonic()
        assert read_until_close(sock) == b""
        assert 0.4 <= time.monotonic() - start < 2.0


def test_body_timeout_is_a_gap_between_reads(serve: Serve) -> None:
    server = serve(body_timeout_s=0.6)
    with connect(server.address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
        for _ in range(4):  # 4 x 0.3 s: longer than the timeout in all, each gap shorter
            time.sleep(0.3)
            sock.sendall(b"x")
        get_ok(server.address)
        start = time.monotonic()
        data = read_until_close(sock)
        elapsed = time.monotonic() - start
    (response,) = parse_responses(data)
    assert response.status == 408
    assert 0.4 <= elapsed < 1.5, elapsed


def test_request_timeout_cuts_a_body_trickled_faster_than_the_gap_timeout(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    server = serve(header_timeout_s=1.0, body_timeout_s=0.5, request_timeout_s=1.5)
    with connect(server.address) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        sock.settimeout(0.15)  # a byte every 0.15 s: never a gap of 0.5 s
        data = b""
        served_meanwhile = False
        while time.monotonic() - start < 5.0:
            try:
                sock.sendall(b"x")
            except OSError:
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if not served_meanwhile and time.monotonic() - start > 0.5:
                    get_ok(server.address)  # another client is served meanwhile
                    served_meanwhile = True
                continue
            break
        cut_at = time.monotonic() - start
        assert data, "the trickling client was never cut off"
        sock.settimeout(5)
        data += read_until_close(sock)
    assert served_meanwhile
    assert 1.4 <= cut_at < 2.5, cut_at
    (response,) = parse_responses(data)
    assert response.status == 408
    assert response.header("connection") == "close"
    assert "408 from 127.0.0.1: request timeout" in [record.getMessage() for record in caplog.records]
    get_ok(server.address)


def test_request_timeout_bounds_the_head_too(serve: Serve) -> None:
    server = serve(header_timeout_s=5.0, request_timeout_s=0.5)
    with connect(server.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        start = time.monotonic()
        data = read_until_close(sock)
        elapsed = time.monotonic() - start
    assert parse_responses(data)[0].status == 408
    assert 0.4 <= elapsed < 1.5, elapsed


def test_keepalive_timeout_closes_an_idle_connection_quietly(serve: Serve) -> None:
    server = serve(keepalive_timeout_s=0.5)
    with connect(server.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).status == 200
        start = time.monotonic()
        assert read_until_close(sock) == b""
        assert 0.4 <= time.monotonic() - start < 2.0
    assert server.call(lambda: len(server.server.connections)) == 0


def test_keepalive_deadline_moves_with_each_request(serve: Serve) -> None:
    server = serve(keepalive_timeout_s=0.5)
    with connect(server.address) as sock:
        for _ in range(6):  # 6 x 0.25 s: longer than the timeout in all
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(sock).status == 200
            time.sleep(0.25)


def test_write_timeout_closes_a_client_that_stops_reading(serve: Serve) -> None:
    server = serve(write_timeout_s=0.5)
    sock = connect(server.address)
    sock.sendall(b"GET /big?n=50000000 HTTP/1.1\r\nHost: t\r\n\r\n")
    deadline = time.monotonic() + 5
    while server.call(lambda: len(server.server.connections)) and time.monotonic() < deadline:
        get_ok(server.address)
        time.sleep(0.1)
    assert server.call(lambda: len(server.server.connections)) == 0
    sock.close()


def test_idle_connections_share_one_keepalive_timer(serve: Serve) -> None:
    server = serve(keepalive_timeout_s=60)
    baseline = server.call(server.server.loop.pending_timers)  # the server's lag probe
    socks = [connect(server.address) for _ in range(50)]
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        recv_response(sock)
    # Fifty idle connections, one armed timer (for the oldest) among them; and
    # the one new connections share while silent, armed at the first accept,
    # which stays armed until that connection's header deadline.
    assert server.call(server.server.loop.pending_timers) == baseline + 2
    assert server.call(lambda: len(server.server.first_bytes)) == 0
    assert server.call(lambda: len(server.server.keepalive)) == 50
    for sock in socks:
        sock.close()


def test_the_shared_keepalive_timer_closes_each_idle_connection_at_its_own_deadline(serve: Serve) -> None:
    server = serve(keepalive_timeout_s=1.0)
    first = connect(server.address)
    first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert recv_response(first).status == 200
    time.sleep(0.6)
    second = connect(server.address)
    second.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert recv_response(second).status == 200
    start = time.monotonic()
    assert read_until_close(first) == b""  # its deadline: about 0.4 s from now
    # The second went idle 0.6 s later: still open, and still served.
    second.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert recv_response(second).status == 200
    assert read_until_close(second) == b""  # a new full second from that request
    assert time.monotonic() - start >= 0.9
    assert server.call(lambda: len(server.server.connections)) == 0
    assert server.call(lambda: len(server.server.keepalive)) == 0
    first.close()
    second.close()


@pytest.mark.parametrize("shutdown", [socket.SHUT_WR, socket.SHUT_RDWR])
def test_half_open_socket_does_not_spin_the_loop(serve: Serve, shutdown: int) -> None:
    server = serve()
    sock = connect(server.address)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    recv_response(sock)
    sock.shutdown(shutdown)
    time.sleep(0.2)
    before = server.call(lambda: server.server.loop.iterations)
    time.sleep(0.5)
    after = server.call(lambda: server.server.loop.iterations)
    assert after - before < 10, "the loop is spinning"
    sock.close()


def test_silent_new_connections_share_one_header_timer(serve: Serve) -> None:
    server = serve(header_timeout_s=0.5)
    baseline = server.call(server.server.loop.pending_timers)
    socks = [connect(server.address) for _ in range(30)]
    deadline = time.monotonic() + 5
    while server.call(lambda: len(server.server.first_bytes)) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Thirty connections that sent nothing: one timer among them, none of their own.
    assert server.call(lambda: len(server.server.first_bytes)) == 30
    assert server.call(server.server.loop.pending_timers) == baseline + 1
    # Each is closed at its header deadline; another client is still served.
    for sock in socks:
        assert read_until_close(sock) == b""
    get_ok(server.address)  # another client is served
    assert server.call(lambda: len(server.server.first_bytes)) == 0
    for sock in socks:
        sock.close()


def test_a_head_cut_short_keeps_the_deadline_from_accept(serve: Serve) -> None:
    server = serve(header_timeout_s=1.0)
    sock = connect(server.address)
    time.sleep(0.6)
    start = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\n")  # its first bytes: it gets a timer of its own
    response = recv_response(sock)
    # 1.0 s from accept, not from the first byte: about 0.4 s after them.
    assert response.status == 408
    assert time.monotonic() - start < 0.9
    sock.close()


def test_empty_lines_before_a_request_do_not_move_the_header_deadline(serve: Serve) -> None:
    server = serve(header_timeout_s=1.0)
    first = connect(server.address)
    start = time.monotonic()
    time.sleep(0.7)
    later = connect(server.address)  # silent, with a later deadline than the first's
    for _ in range(2):  # RFC 9112 §2.2 lets them be ignored: no request has begun
        time.sleep(0.1)
        first.sendall(b"\r\n")
    assert read_until_close(first) == b""  # closed at the deadline from its accept
    assert time.monotonic() - start < 1.45
    assert read_until_close(later) == b""
    assert time.monotonic() - start >= 1.6
    first.close()
    later.close()
