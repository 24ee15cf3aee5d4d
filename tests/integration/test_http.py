"""Happy paths over real loopback sockets with http.client and raw bytes."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time

import pytest

from reactor import App, HTTPError, Request, Response
from tests.conftest import (
    Running,
    connect,
    exchange,
    get_ok,
    make_app,
    parse_responses,
    read_until_close,
    recv_response,
)


def client(server: Running) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(server.host, server.port, timeout=5)


def test_get_has_framing_date_and_server(server: Running) -> None:
    conn = client(server)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200
    assert response.read() == b"Hello, World!"
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert response.getheader("Content-Length") == "13"
    assert response.getheader("Server") == "reactor"
    assert response.getheader("Date", "").endswith(" GMT")
    assert response.getheader("Connection") is None


def test_keep_alive_serves_many_requests_on_one_connection(server: Running) -> None:
    conn = client(server)
    for i in range(20):
        conn.request("POST", "/echo", body=f"body {i}".encode())
        response = conn.getresponse()
        assert response.read() == f"body {i}".encode()
    assert server.server.accepted == 1


def test_head_sends_get_headers_without_body(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data = read_until_close(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 13\r\n" in head + b"\r\n"
    # The very next bytes are the GET's response: HEAD sent no body.
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.endswith(b"Hello, World!")


def test_404_405_and_allow(server: Running) -> None:
    conn = client(server)
    conn.request("GET", "/nowhere")
    response = conn.getresponse()
    assert response.status == 404
    response.read()
    conn.request("PUT", "/")  # PUT is known (on /echo): 405 with what / takes
    response = conn.getresponse()
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD, OPTIONS"
    response.read()
    conn.request("OPTIONS", "/echo")
    response = conn.getresponse()
    assert response.status == 204
    assert response.getheader("Allow") == "OPTIONS, POST, PUT"


def test_options_asterisk(server: Running) -> None:
    data = exchange(server.address, b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    (response,) = parse_responses(data)
    assert response.status == 204
    allow = response.header("allow")
    assert allow is not None and {"GET", "POST", "PUT", "HEAD", "OPTIONS"} <= set(allow.split(", "))


def test_path_parameters_and_query(server: Running) -> None:
    conn = client(server)
    conn.request("GET", "/items/a%20b?x=1&x=2&y=")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read()) == {"id": "a b", "query": {"x": ["1", "2"], "y": [""]}}


def test_absolute_form_target(server: Running) -> None:
    data = exchange(
        server.address, b"GET http://example.com/items/7 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    (response,) = parse_responses(data)
    assert json.loads(response.body)["id"] == "7"


def test_handler_exception_is_a_500_for_that_request_alone(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    conn = client(server)
    conn.request("GET", "/boom")
    response = conn.getresponse()
    assert response.status == 500
    response.read()
    # The same connection goes on serving.
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, World!"
    records = [r for r in caplog.records if "handler failed for GET /boom" in r.getMessage()]
    assert records and records[0].exc_info is not None
    assert "handler exploded" in caplog.text


def test_response_splitting_is_refused(server: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    with connect(server.address) as sock:
        sock.sendall(b"GET /split HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
    assert response.status == 500
    assert response.header("set-cookie") is None
    assert response.header("x-evil") is None
    assert "a control character ('\\r') in value of header 'X-Evil'" in caplog.text


def test_http10_closes_by_default(server: Running) -> None:
    data = exchange(server.address, b"GET / HTTP/1.0\r\n\r\n")
    (response,) = parse_responses(data)
    assert response.status == 200
    assert response.header("connection") == "close"


def test_http10_keep_alive_when_asked(server: Running) -> None:
    with connect(server.address) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = recv_response(sock)
            assert response.status == 200
            assert response.header("connection") == "keep-alive"


def test_connection_close_from_client(server: Running) -> None:
    data = exchange(server.address, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    (response,) = parse_responses(data)
    assert response.header("connection") == "close"
    assert response.body == b"Hello, World!"


def test_chunked_request_body(server: Running) -> None:
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    (response,) = parse_responses(exchange(server.address, raw))
    assert response.status == 200
    assert response.body == b"hello world"


def test_body_arriving_in_pieces(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01")
        sock.sendall(b"234")
        sock.sendall(b"56789")
        response = recv_response(sock)
    assert response.body == b"0123456789"


def test_pipelined_requests_answered_in_order(server: Running) -> None:
    raw = b"".join(
        f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len(str(i))}\r\n\r\n{i}".encode()
        for i in range(50)
    )
    raw += b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses = parse_responses(exchange(server.address, raw))
    assert [r.body for r in responses[:-1]] == [str(i).encode() for i in range(50)]
    assert responses[-1].body == b"Hello, World!"


def test_half_close_after_request_still_answered(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = read_until_close(sock)
    (response,) = parse_responses(data)
    assert response.body == b"Hello, World!"


def test_large_response_arrives_whole(server: Running) -> None:
    conn = client(server)
    conn.request("GET", "/big?n=5000000")
    response = conn.getresponse()
    assert response.read() == b"b" * 5_000_000


def test_peer_reset_mid_response_leaves_server_serving(server: Running) -> None:
    sock = connect(server.address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.sendall(b"GET /big?n=20000000 HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(1000)
    sock.close()  # SO_LINGER 0: an RST
    get_ok(server.address)
    # The server learns of the reset on its next send: wait for it.
    deadline = time.monotonic() + 5
    while server.call(lambda: len(server.server.connections)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.call(lambda: len(server.server.connections)) == 0


def test_config_access_log_false_writes_no_access_lines(serve, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, "reactor.access")
    quiet = serve(access_log=False)
    get_ok(quiet.address)
    assert not [r for r in caplog.records if r.name == "reactor.access"]
    loud = serve()
    get_ok(loud.address)
    assert [r for r in caplog.records if r.name == "reactor.access"]


def test_config_trace_enables_tracing_without_the_cli(serve, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from reactor import trace

    caplog.set_level(logging.INFO, "reactor.trace")
    try:
        traced = serve(trace=True)
        get_ok(traced.address)
    finally:
        trace.disable()
    lines = [r.getMessage() for r in caplog.records if r.name == "reactor.trace"]
    assert any("READING_HEADERS -> WRITING on request" in line for line in lines), lines


# -- a method no route knows: 501, not 405 ---------------------------------------


def test_unknown_method_is_501_and_the_connection_goes_on(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
        assert (response.status, response.body) == (501, b"501 Not Implemented\n")
        assert response.header("allow") is None and response.header("connection") is None
        # With a body that the server read (and dropped): the connection is still in step.
        sock.sendall(b"DELETE /items/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        assert recv_response(sock).status == 501
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).body == b"Hello, World!"


def test_unknown_method_with_expect_100_is_501_and_closes(server: Running) -> None:
    with connect(server.address) as sock:
        sock.sendall(b"PATCH / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data = read_until_close(sock)
    (response,) = parse_responses(data)  # no 100 Continue before it: the body is never sent
    assert (response.status, response.header("connection")) == (501, "close")


# -- HTTPError -------------------------------------------------------------------


def error_app() -> App:
    app = make_app()

    @app.route("/missing")
    def missing(request: Request) -> str:
        raise HTTPError(404, "no such item")

    @app.route("/private")
    def private(request: Request) -> str:
        raise HTTPError(401, "log in first", headers=[("WWW-Authenticate", 'Basic realm="reactor"')])

    @app.route("/readonly", methods=["GET", "POST"])
    def readonly(request: Request) -> str:
        if request.method == "POST":
            raise HTTPError(405, headers={"Allow": "GET, HEAD"})
        return "read"

    @app.route("/down")
    def down(request: Request) -> str:
        raise HTTPError(503, "maintenance", headers=[("Retry-After", "30")])

    @app.route("/json", methods=["POST"])
    def echo_json(request: Request) -> object:
        return {"got": request.json()}

    return app


def test_http_error_answers_with_its_status_detail_and_headers(
    serve,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG, "reactor.error")
    running = serve(error_app())
    with connect(running.address) as sock:
        sock.sendall(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
        assert (response.status, response.body) == (404, b"404 Not Found: no such item\n")
        assert response.header("content-type") == "text/plain; charset=utf-8"
        assert response.header("connection") is None
        sock.sendall(b"GET /private HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
        assert (response.status, response.header("www-authenticate")) == (401, 'Basic realm="reactor"')
        assert response.body == b"401 Unauthorized: log in first\n"
        sock.sendall(b"POST /readonly HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        response = recv_response(sock)
        assert (response.status, response.header("allow")) == (405, "GET, HEAD")
        # A 5xx HTTPError is a clean answer too: the connection goes on.
        sock.sendall(b"GET /down HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
        assert (response.status, response.header("retry-after")) == (503, "30")
        assert response.header("connection") is None
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).body == b"Hello, World!"
    assert running.server.accepted == 1
    errors = [r for r in caplog.records if r.name == "reactor.error"]
    assert [(r.levelno, r.getMessage()) for r in errors] == [
        (logging.DEBUG, "404 from handler for GET /missing: no such item"),
        (logging.DEBUG, "401 from handler for GET /private: log in first"),
        (logging.DEBUG, "405 from handler for POST /readonly: "),
        (logging.INFO, "503 from handler for GET /down: maintenance"),
    ]
    assert not [r for r in errors if r.exc_info]  # an answer, not a crash: no traceback


def test_malformed_json_body_is_400_and_the_connection_goes_on(serve) -> None:  # type: ignore[no-untyped-def]
    running = serve(error_app())
    with connect(running.address) as sock:
        for body in (b'{"a": ', b"\xff\xfe", b"[NaN]"):
            sock.sendall(
                b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            response = recv_response(sock)
            assert response.status == 400, body
            assert response.body.startswith(b"400 Bad Request: the body is not "), response.body
        body = '{"a": "\u00e9"}'.encode()
        sock.sendall(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        response = recv_response(sock)
        assert (response.status, json.loads(response.body)) == (200, {"got": {"a": "\u00e9"}})


# -- a handler's bad value: a 500, never a hang or a split response --------------


BAD_RESPONSES = {
    "reason-not-latin1": lambda: Response(b"x", reason="Fine \u2603"),
    "reason-with-esc": lambda: Response(b"x", reason="Fine\x1b[2J"),
    "reason-with-lf": lambda: Response(b"x", reason="OK\nX-Evil: 1"),
    "value-with-esc": lambda: Response(b"x", headers=[("X-Note", "a\x1b[31mb")]),
    "value-with-del": lambda: Response(b"x", headers=[("X-Note", "a\x7f")]),
    "value-with-vt": lambda: Response(b"x", headers=[("X-Note", "a\x0bb")]),
    "value-not-latin1": lambda: Response(b"x", headers=[("X-Note", "\u2603")]),
    "name-not-token": lambda: Response(b"x", headers=[("X Note", "a")]),
    "bytearray-body": lambda: Response(bytearray(b"abc")),
    "memoryview-body": lambda: Response(memoryview(b"abc")),
    "int-body": lambda: Response(3),
    "bytearray-shorthand": lambda: bytearray(b"abc"),
}


@pytest.mark.parametrize("name", sorted(BAD_RESPONSES))
def test_a_bad_value_from_a_handler_is_a_500_and_the_server_goes_on(
    serve,
    name: str,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    app = make_app()
    app.add_route("/bad", lambda request: BAD_RESPONSES[name]())
    running = serve(app)
    with connect(running.address) as sock:
        sock.sendall(b"GET /bad HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
        assert (response.status, response.body) == (500, b"500 Internal Server Error\n")
        assert response.header("x-note") is None and response.header("x-evil") is None
        # Refused before a byte of it was written, so the connection is in step and
        # goes on, as after any handler exception.
        assert response.header("connection") is None
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).body == b"Hello, World!"
    get_ok(running.address)  # and another connection is served
    (record,) = [r for r in caplog.records if "handler failed for GET /bad" in r.getMessage()]
    assert record.exc_info is not None
    if name != "bytearray-shorthand":
        # Refused where the response was built: the traceback shows the handler's line.
        assert "lambda: Response(" in caplog.text
