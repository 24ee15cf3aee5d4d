"""WSGI (PEP 3333) applications under reactor, each wrapped in wsgiref's validator."""

from __future__ import annotations

import json
import logging
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

import pytest

from reactor.wsgi import WSGIApp
from tests.conftest import Running, connect, parse_responses, read_until_close, recv_response

Serve = Callable[..., Running]
StartResponse = Callable[..., Any]
Environ = dict[str, Any]
MIB = 1 << 20


def wsgi(app: Callable[[Environ, StartResponse], Iterable[bytes]]) -> WSGIApp:
    return WSGIApp(validator(app))


def echo_environ(environ: Environ, start_response: StartResponse) -> list[bytes]:
    shown = {
        key: value
        for key, value in environ.items()
        if isinstance(value, (str, bool, int)) or key == "wsgi.version"
    }
    pieces = []
    while True:  # the validator wants a size; input_terminated: b"" at the end
        piece = environ["wsgi.input"].read(65536)
        if not piece:
            break
        pieces.append(piece)
    shown["body"] = b"".join(pieces).decode("latin-1")
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def test_the_environ_is_pep_3333s(serve: Serve) -> None:
    running = serve(wsgi(echo_environ), root_path="/api")
    body = b"a=1&b=2"
    with connect(running.address) as sock:
        sock.sendall(
            b"POST /api/caf%C3%A9/x%2Fy?q=1&r=%20 HTTP/1.1\r\nHost: example.test:8080\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n"
            b"X-Custom: one\r\nX-Custom: two\r\nX_Spoofed: yes\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n" + body
        )
        response = recv_response(sock)
        local_port = sock.getsockname()[1]
    assert response.status == 200
    environ = json.loads(response.body)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/api"
    # Percent-decoded to bytes, then read as ISO-8859-1 (PEP 3333's "bytes as latin-1").
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/x/y"
    assert environ["QUERY_STRING"] == "q=1&r=%20"
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "7"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_HOST"] == "example.test:8080"
    assert environ["HTTP_X_CUSTOM"] == "one,two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SPOOFED" not in environ  # a name with "_" could pass for one with "-"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"] == str(local_port)
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(running.port)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input_terminated"] is True
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert environ["body"] == "a=1&b=2"


def test_a_trusted_proxy_sets_the_url_scheme(serve: Serve) -> None:
    running = serve(wsgi(echo_environ))
    with connect(running.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: https\r\n\r\n")
        environ = json.loads(recv_response(sock).body)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/"


def test_a_chunked_upload_reads_to_its_end(serve: Serve) -> None:
    running = serve(wsgi(echo_environ))
    with connect(running.address) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        environ = json.loads(recv_response(sock).body)
        assert environ["body"] == "hello world"
        assert "CONTENT_LENGTH" not in environ
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")  # and the connection goes on
        assert json.loads(recv_response(sock).body)["PATH_INFO"] == "/again"


def test_head_sends_the_head_alone_and_closes_the_iterable(serve: Serve) -> None:
    closed = threading.Event()
    pulled: list[int] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            for index in range(100):
                pulled.append(index)
                yield b"x" * 65536

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    running = serve(wsgi(app))
    with connect(running.address) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.settimeout(5)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        assert closed.wait(5)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")  # nothing else came before it
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(pulled) < 100


def test_start_response_with_exc_info_replaces_the_head_before_it_is_sent(serve: Serve) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("gone")
        except KeyError:
            start_response("404 Not Found", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"not here\n"]

    running = serve(wsgi(app))
    with connect(running.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
    assert response.status == 404
    assert response.reason == "Not Found"
    assert response.body == b"not here\n"


def test_exc_info_after_the_head_was_sent_re_raises_and_cuts_the_response(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"begun ")
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never"

    running = serve(wsgi(app))
    data = _exchange_raw(running, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"begun " in data
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it cut
    assert any("failed in the pool" in record.getMessage() for record in caplog.records)


def test_the_write_callable_and_the_iterable_both_send(serve: Serve) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"then ", b"returned"]

    running = serve(wsgi(app))
    with connect(running.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = _read_chunked(sock)
    assert data == b"written, then returned"


def test_hop_by_hop_headers_from_the_app_are_refused(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    closed = threading.Event()

    class Body(list[bytes]):
        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive")])
        return Body([b"no"])

    running = serve(WSGIApp(app))  # the validator would refuse the header itself
    response = parse_responses(_exchange_raw(running, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))[0]
    assert response.status == 500
    assert response.header("Connection") == "close"
    assert any("hop-by-hop header 'Connection'" in str(record.exc_info) for record in caplog.records)


def test_close_is_called_when_the_iterable_fails(serve: Serve) -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("broken body")
            yield b""

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    running = serve(WSGIApp(app))
    response = parse_responses(_exchange_raw(running, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))[0]
    assert response.status == 500
    assert closed.wait(5)


def test_the_file_wrapper_is_sent_with_sendfile(serve: Serve) -> None:
    content = bytes(range(256)) * 4096  # 1 MiB
    with tempfile.NamedTemporaryFile() as file:
        file.write(content)
        file.flush()

        def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            handle = open(file.name, "rb")  # noqa: SIM115 (the server closes it)
            handle.seek(100)
            return environ["wsgi.file_wrapper"](handle, 8192)  # type: ignore[no-any-return]

        running = serve(WSGIApp(app))
        with connect(running.address) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            response = recv_response(sock)
    assert response.header("Content-Length") == str(len(content) - 100)
    assert response.body == content[100:]


def test_a_streamed_upload_is_read_as_it_arrives_and_not_held(serve: Serve) -> None:
    """The application reads nothing for a second: the server does not
    absorb the upload meanwhile (the loop stops reading), then it all comes."""
    may_read = threading.Event()
    total = 64 * MIB

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        assert may_read.wait(10)
        stream = environ["wsgi.input"]
        got = 0
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            got += len(piece)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(got).encode()]

    running = serve(WSGIApp(validator(app)), max_body_bytes=2 * total)
    sent = [0]
    with connect(running.address) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)

        def send() -> None:
            piece = b"u" * MIB
            while sent[0] < total:
                sock.sendall(piece)
                sent[0] += len(piece)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(1.0)
        held = sent[0]
        may_read.set()
        sender.join(30)
        response = recv_response(sock, timeout=30)
    assert response.body == str(total).encode()
    # What went out before the app read: the worker's bound (256 KiB) plus
    # the kernel's socket buffers, far below the 64 MiB.
    assert held < 24 * MIB, f"{held / MIB:.0f} MiB sent while the app read nothing"


def test_a_slow_reader_holds_the_worker_not_the_memory(serve: Serve) -> None:
    pulled = [0]

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for _ in range(1024):  # 64 MiB
            pulled[0] += 1
            yield b"d" * 65536

    running = serve(wsgi(app))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(running.address)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(1.0)
        first = pulled[0]
        time.sleep(0.5)
        assert pulled[0] == first, "the worker went on pulling while the client read nothing"
        assert first < 200, f"{first} pieces (of 64 KiB) pulled for a client that reads nothing"
        assert running.server.pool is not None and running.server.pool.busy == 1
    finally:
        sock.close()


def test_a_client_that_leaves_makes_the_next_write_fail_and_closes_the_iterable(serve: Serve) -> None:
    closed = threading.Event()
    errors: list[BaseException] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(10000):
                yield b"z" * 65536

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        try:
            for _ in range(10000):
                write(b"w" * 65536)
        except OSError as exc:
            errors.append(exc)
            raise
        return Body()

    running = serve(WSGIApp(app))
    with connect(running.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors and isinstance(errors[0], ConnectionError), errors
    _until(lambda: running.server.pool is not None and running.server.pool.busy == 0)


def test_app_logs_go_to_the_error_log(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["wsgi.errors"].write("first line\nsecond\x1b[31m line\n")
        start_response("204 No Content", [])
        return []

    running = serve(wsgi(app))
    with connect(running.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 204 No Content\r\n")
    messages = [record.getMessage() for record in caplog.records]
    assert "wsgi.errors: first line" in messages
    assert "wsgi.errors: second\\x1b[31m line" in messages


def test_a_wsgi_request_does_not_delay_another_client(serve: Serve) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            time.sleep(1.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    running = serve(wsgi(app))
    with connect(running.address) as slow:
        began = time.monotonic()
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)
        with connect(running.address) as quick:
            quick.sendall(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(quick).body == b"done"
            quick_done = time.monotonic() - began
        assert recv_response(slow, timeout=10).body == b"done"
        slow_done = time.monotonic() - began
    assert quick_done < slow_done / 3, (quick_done, slow_done)


def test_a_trickled_body_is_cut_at_the_request_timeout(serve: Serve) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = environ["wsgi.input"].read(100)  # waits for all 100 bytes
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    running = serve(wsgi(app), request_timeout_s=1.0, body_timeout_s=0.6)
    with connect(running.address) as sock:
        began = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        sock.settimeout(0.25)
        data = b""
        while time.monotonic() - began < 5 and not data:
            try:
                sock.send(b"x")  # a byte well within every gap timeout
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - began
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"Connection: close" in data
    assert 0.9 < elapsed < 3.0


def _exchange_raw(running: Running, request: bytes) -> bytes:
    with connect(running.address) as sock:
        sock.sendall(request)
        return read_until_close(sock)


def _read_chunked(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(5)
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            return out
        out, body = out + body[:size], body[size + 2 :]


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
