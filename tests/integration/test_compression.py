"""gzip over real sockets: what curl, requests and raw bytes get, and the .gz beside a file."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from reactor import App, Request, Response
from tests.conftest import Parsed, ReactorProcess, Running, connect, exchange, parse_responses

Serve = Callable[..., Running]
TEXT = ("reactor compresses text. " * 200).encode()  # 5000 bytes
PIECES = [f"data: event {i}\n\n".encode() * 4 for i in range(12)]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(4000)
CSS = ("body { color: red; margin: 0 auto; }\n" * 80).encode()
JS = ("console.log('reactor');\n" * 100).encode()

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def make_app(root: Path | None = None) -> App:
    app = App()

    @app.route("/text")
    def text(request: Request) -> Response:
        return Response(TEXT, headers=[("ETag", '"t1"')], content_type="text/plain; charset=utf-8")

    @app.route("/small")
    def small(request: Request) -> Response:
        return Response(TEXT[:100], content_type="text/plain")

    @app.route("/json")
    def json(request: Request) -> dict[str, Any]:
        return {"items": list(range(1000))}

    @app.route("/png")
    def png(request: Request) -> Response:
        return Response(PNG, content_type="image/png")

    @app.route("/stream")
    def stream(request: Request) -> Response:
        return Response(iter(PIECES), content_type="text/plain")

    if root is not None:
        app.static("/files", root)
    return app


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "style.css").write_bytes(CSS)
    (root / "app.js").write_bytes(JS)
    (root / "logo.png").write_bytes(PNG)
    (root / "app.js.gz").write_bytes(gzip.compress(JS, 9, mtime=0))
    return root


@pytest.fixture
def running(serve: Serve, root: Path) -> Running:
    return serve(make_app(root))


def ask(running: Running, target: str, *fields: str, method: str = "GET") -> tuple[Parsed, bytes]:
    """One request with raw header lines; the parsed head and the raw body (chunks undone)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    data = exchange(running.address, (head + "".join(f + "\r\n" for f in fields) + "\r\n").encode())
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    parsed = parse_responses(head_bytes + b"\r\n\r\n", head_only=True)[0]
    if method == "HEAD":
        assert rest == b""
        return parsed, b""
    if parsed.header("transfer-encoding") == "chunked":
        return parsed, b"".join(chunks(rest))
    assert len(rest) == int(parsed.header("content-length") or 0)
    return parsed, rest


def chunks(data: bytes) -> Iterator[bytes]:
    """The chunks of a chunked body, one by one, as they were on the wire."""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert data == b"\r\n"
            return
        yield data[:size]
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]


# -- handlers' responses ---------------------------------------------------------------------


def test_compressed_when_accepted_and_large(running: Running) -> None:
    parsed, body = ask(running, "/text", "Accept-Encoding: gzip, deflate, br")
    assert parsed.status == 200
    assert parsed.header("content-encoding") == "gzip"
    assert parsed.header("vary") == "Accept-Encoding"
    assert parsed.header("etag") == 'W/"t1"'
    assert int(parsed.header("content-length") or 0) == len(body) < len(TEXT) // 10
    assert gzip.decompress(body) == TEXT


def test_identity_when_not_accepted_still_varies(running: Running) -> None:
    for fields in [
        (),
        ("Accept-Encoding: gzip;q=0",),
        ("Accept-Encoding: identity",),
        ("Accept-Encoding: br",),
    ]:
        parsed, body = ask(running, "/text", *fields)
        assert parsed.header("content-encoding") is None, fields
        assert parsed.header("vary") == "Accept-Encoding"
        assert parsed.header("etag") == '"t1"'
        assert body == TEXT


def test_q_zero_refuses_even_with_a_wildcard(running: Running) -> None:
    parsed, body = ask(running, "/text", "Accept-Encoding: *, gzip;q=0")
    assert parsed.header("content-encoding") is None and body == TEXT
    parsed, body = ask(running, "/text", "Accept-Encoding: *;q=0.5")
    assert parsed.header("content-encoding") == "gzip" and gzip.decompress(body) == TEXT


def test_small_and_image_bodies_are_sent_as_they_are(running: Running) -> None:
    parsed, body = ask(running, "/small", "Accept-Encoding: gzip")
    assert (parsed.header("content-encoding"), parsed.header("vary"), body) == (None, None, TEXT[:100])
    parsed, body = ask(running, "/png", "Accept-Encoding: gzip")
    assert (parsed.header("content-encoding"), parsed.header("vary"), body) == (None, None, PNG)


def test_head_headers_equal_gets(running: Running) -> None:
    for target in ("/text", "/json", "/stream", "/files/style.css", "/files/app.js", "/small"):
        get, _ = ask(running, target, "Accept-Encoding: gzip")
        head, _ = ask(running, target, "Accept-Encoding: gzip", method="HEAD")
        assert [h for h in head.headers if h[0] != "Date"] == [h for h in get.headers if h[0] != "Date"], (
            target
        )


def test_a_stream_is_compressed_piece_by_piece(running: Running) -> None:
    parsed, _ = ask(running, "/stream", "Accept-Encoding: gzip")
    assert parsed.header("content-encoding") == "gzip"
    data = exchange(
        running.address,
        b"GET /stream HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )
    wire = list(chunks(data.partition(b"\r\n\r\n")[2]))
    # Each chunk on the wire decompresses to exactly one piece, in order: a
    # client reads every piece when it arrives, not when zlib's buffer fills.
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    got = [decompressor.decompress(chunk) for chunk in wire]
    assert got[: len(PIECES)] == PIECES
    assert b"".join(got[len(PIECES) :]) == b"" and decompressor.eof


def test_requests_reads_it(running: Running) -> None:
    response = requests.get(f"http://{running.host}:{running.port}/json", timeout=5)
    assert response.headers["Content-Encoding"] == "gzip"  # requests sends gzip, deflate
    assert response.json() == {"items": list(range(1000))}
    response = requests.get(f"http://{running.host}:{running.port}/stream", timeout=5)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.content == b"".join(PIECES)


@needs_curl
def test_curl_compressed(running: Running) -> None:
    url = f"http://{running.host}:{running.port}"
    out = subprocess.run(
        ["curl", "-s", "--compressed", "-D", "-", f"{url}/text"], capture_output=True, timeout=10, check=True
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"\r\nContent-Encoding: gzip\r\n" in head
    assert body == TEXT
    out = subprocess.run(
        ["curl", "-s", "--compressed", f"{url}/files/style.css"], capture_output=True, timeout=10, check=True
    ).stdout
    assert out == CSS


def test_off_with_the_config(serve: Serve, root: Path) -> None:
    off = serve(make_app(root), gzip=False)
    for target in ("/text", "/stream", "/files/app.js", "/files/style.css"):
        parsed, body = ask(off, target, "Accept-Encoding: gzip")
        assert parsed.header("content-encoding") is None, target
        assert parsed.header("vary") is None, target
    assert body == CSS


def test_off_with_the_flag(root: Path) -> None:
    process = ReactorProcess("--static", str(root), "--no-gzip")
    try:
        data = exchange(
            process.address,
            b"GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        )
    finally:
        process.stop()
    parsed = parse_responses(data)[0]
    assert parsed.header("content-encoding") is None and parsed.header("vary") is None
    assert parsed.body == JS


# -- static files ------------------------------------------------------------------------------


def test_a_range_is_never_compressed(running: Running) -> None:
    for target in ("/files/style.css", "/files/app.js"):  # on the fly, and with a .gz beside it
        parsed, body = ask(running, target, "Accept-Encoding: gzip", "Range: bytes=10-99")
        assert parsed.status == 206
        assert parsed.header("content-encoding") is None
        assert body == (CSS if "css" in target else JS)[10:100]


def test_the_gz_beside_a_file_goes_out_with_sendfile(
    running: Running, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        n = real(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", counting)
    identity, _ = ask(running, "/files/app.js")
    parsed, body = ask(running, "/files/app.js", "Accept-Encoding: gzip")
    assert body == (root / "app.js.gz").read_bytes()  # the file's bytes, exactly, on the wire
    assert parsed.header("content-encoding") == "gzip"
    assert parsed.header("content-type") == "text/javascript; charset=utf-8"
    assert parsed.header("vary") == "Accept-Encoding"
    assert identity.header("vary") == "Accept-Encoding"
    assert parsed.header("etag") not in (None, identity.header("etag"))
    assert sum(sent) == len(JS) + len(body)
    # Its ETag revalidates it.
    again, _ = ask(
        running, "/files/app.js", "Accept-Encoding: gzip", f"If-None-Match: {parsed.header('etag')}"
    )
    assert again.status == 304 and again.header("vary") == "Accept-Encoding"


def test_an_older_gz_is_not_sent(running: Running, root: Path) -> None:
    newer = JS + b"console.log('newer');\n"
    (root / "app.js").write_bytes(newer)
    past = time.time() - 60
    os.utime(root / "app.js.gz", (past, past))
    _, body = ask(running, "/files/app.js", "Accept-Encoding: gzip")
    # Compressed on the fly from the file, not the stale .gz.
    assert body != (root / "app.js.gz").read_bytes()
    assert gzip.decompress(body) == newer


def test_a_static_text_file_is_compressed_on_the_fly(running: Running) -> None:
    parsed, body = ask(running, "/files/style.css", "Accept-Encoding: gzip")
    assert parsed.header("content-encoding") == "gzip"
    assert parsed.header(
        "etag",
    ).startswith('W/"')  # type: ignore[union-attr]
    assert gzip.decompress(body) == CSS


def test_an_image_is_never_compressed(running: Running) -> None:
    parsed, body = ask(running, "/files/logo.png", "Accept-Encoding: gzip")
    assert parsed.header("content-encoding") is None and parsed.header("vary") is None
    assert body == PNG


# -- the demo site ------------------------------------------------------------------------------


def test_the_demo_sites_assets() -> None:
    process = ReactorProcess()
    try:
        base = f"http://{process.host}:{process.port}"
        for path in ("/", "/app.js", "/style.css"):
            response = requests.get(base + path, timeout=5)
            assert response.headers.get("Content-Encoding") == "gzip", path
            assert response.headers["Vary"] == "Accept-Encoding"
        logo = requests.get(base + "/logo.svg", timeout=5)  # 503 bytes: under the minimum
        assert "Content-Encoding" not in logo.headers
        with connect(process.address) as sock:
            sock.sendall(b"GET /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert b"\r\nContent-Encoding:" not in data.partition(b"\r\n\r\n")[0]
    finally:
        process.stop()


def test_a_stream_is_sent_while_it_is_made(serve: Serve) -> None:
    # 200 pieces of 64 KiB that gzip cannot shrink: far more than the
    # high-water mark and the socket buffers hold, so the first piece must
    # reach the client, readable, while the handler is still making pieces.
    made: list[bytes] = []

    def pieces() -> Iterator[bytes]:
        for _ in range(200):
            made.append(os.urandom(65536))
            yield made[-1]

    app = App()
    app.route("/big")(lambda request: Response(pieces(), content_type="text/plain"))
    running = serve(app)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    with sock:
        sock.connect(running.address)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        assert b"\r\nContent-Encoding: gzip\r\n" in head and b"\r\nTransfer-Encoding: chunked\r\n" in head
        while b"\r\n" not in data:
            data += sock.recv(65536)
        size = int(data[: data.index(b"\r\n")], 16)
        while len(data) < data.index(b"\r\n") + 2 + size:
            data += sock.recv(65536)
        first = data[data.index(b"\r\n") + 2 :][:size]
        assert decompressor.decompress(first) == made[0]
        assert len(made) < 200  # the rest is still to be made
        while sock.recv(1 << 20):
            pass
    assert len(made) == 200
