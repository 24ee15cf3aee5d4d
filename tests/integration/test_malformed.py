"""Every rejected input over a real socket: the status, Connection: close, and
nothing pipelined behind it is ever answered; the server keeps serving."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import pytest

from tests.conftest import Running, exchange, get_ok, parse_responses, read_until_close

H = b"Host: t\r\n"
NEXT = b"GET /items/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

# (id, raw request, expected status)
CASES: list[tuple[str, bytes, int]] = [
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400),
    ("bare-lf-header", b"GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", 400),
    ("bare-lf-terminator", b"GET / HTTP/1.1\nHost: t\n\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    ("tab-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n", 400),
    ("method-non-token", b"G(ET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-nul", b"GE\x00T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("field-name-non-token", b"GET / HTTP/1.1\r\n" + H + b"X[A]: 1\r\n\r\n", 400),
    ("field-name-empty", b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n", 400),
    ("value-bare-cr", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("value-nul", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("value-control", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    ("value-del", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    ("value-vt", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x0bb\r\n\r\n", 400),
    ("cl-plus", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl-minus", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\nhello", 400),
    ("cl-space-inside", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1 0\r\n\r\nhello", 400),
    ("cl-hex", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl-underscore", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1_0\r\n\r\nhello", 400),
    ("cl-superscript", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: \xb2\r\n\r\nhello", 400),
    ("cl-absurd", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: " + b"9" * 40 + b"\r\n\r\n", 400),
    ("cl-empty", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
    (
        "cl-duplicate-differs",
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    ("cl-list-differs", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    (
        "cl-and-te",
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "te-not-final",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("te-unknown", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    (
        "te-unknown-then-chunked",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    ("te-identity", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 501),
    (
        "te-repeated",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "te-repeated-fields",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("te-http10", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-empty", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n", 400),
    ("chunk-size-not-hex", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (
        "chunk-size-0x",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk-size-negative",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n",
        400,
    ),
    (
        "chunk-size-huge",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n",
        400,
    ),
    (
        "chunk-missing-crlf",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    (
        "chunk-bare-lf",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        400,
    ),
    ("host-missing", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("host-duplicate", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("host-malformed", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
    ("version-2", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("version-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("version-0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("version-1.10", b"GET / HTTP/1.10\r\n" + H + b"\r\n", 505),
    ("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("no-version", b"GET /\r\n" + H + b"\r\n", 400),
    ("fragment", b"GET /#frag HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-not-options", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("expect-unknown", b"POST /echo HTTP/1.1\r\n" + H + b"Expect: teapot\r\nContent-Length: 1\r\n\r\nx", 417),
    ("request-line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header-line-too-long", b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (
        "head-too-long",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(9)) + b"\r\n",
        431,
    ),
    (
        "too-many-headers",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
        431,
    ),
    ("body-too-large", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1048577\r\n\r\n", 413),
]


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_once_and_nothing_after_is_answered(server: Running, raw: bytes, status: int) -> None:
    data = exchange(server.address, raw + NEXT)
    responses = parse_responses(data)
    assert [r.status for r in responses] == [status], data[:300]
    assert responses[0].header("connection") == "close"
    get_ok(server.address)


def test_chunked_body_over_limit_is_413(serve: Callable[..., Running]) -> None:
    server = serve(max_body_bytes=10)
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = head + b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
    (response,) = parse_responses(exchange(server.address, raw + NEXT))
    assert response.status == 413


def test_limits_hold_across_partial_reads(server: Running) -> None:
    # A request line trickled in pieces is cut at the limit, before its CRLF.
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"GET /")
        for _ in range(10):
            sock.sendall(b"a" * 1000)
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 414 ")


def test_rejection_is_logged_on_one_escaped_line(server: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    exchange(server.address, b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01\x1b[31mred\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("400 from 127.0.0.1")]
    assert len(lines) == 1
    assert "\n" not in lines[0] and "\x1b" not in lines[0] and "\x01" not in lines[0]
    assert "\\x01" in lines[0] and "\\x1b" in lines[0]


def test_access_log_escapes_and_records_rejections(server: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "reactor.access")
    exchange(server.address, b'GET /a"b\\c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
    exchange(server.address, b"BAD\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "reactor.access"]
    assert any('"GET /a\\"b\\\\c HTTP/1.1" 404 14 ' in line for line in lines), lines
    assert any('"-" 400 ' in line for line in lines), lines


def test_garbage_then_other_clients_are_served(server: Running) -> None:
    for junk in (b"\x00" * 100, b"\xff\xfe\r\n\r\n", b"\r\n" * 50 + b"X", b"GET / HTTP/1.1\r\n" * 3):
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(junk)
        get_ok(server.address)


def _client_hello() -> bytes:
    """The first flight of a real TLS client, made by the ssl module in memory."""
    import ssl

    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_tls_handshake_on_the_plain_port_is_a_400_at_once(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    hello = _client_hello()
    assert hello[:2] == b"\x16\x03"
    started = time.monotonic()
    # The client keeps its side open, as a TLS client waiting for the
    # ServerHello does: the answer must not wait for the header timeout (10 s).
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(hello)
        data = read_until_close(sock)
    assert time.monotonic() - started < 3
    (response,) = parse_responses(data)
    assert response.status == 400
    assert response.header("connection") == "close"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("400 from 127.0.0.1")]
    said = "TLS handshake on a plain-HTTP port (this server speaks HTTP without TLS)"
    assert lines == [f"400 from 127.0.0.1: {said}"]
    get_ok(server.address)
