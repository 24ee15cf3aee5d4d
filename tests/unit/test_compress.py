"""gzip without sockets: Accept-Encoding, the types, the hook's rules, the stream."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import pytest

from reactor import App, Config, Response
from reactor.compress import Gzip, GzipStream, accepts_gzip, compressible
from reactor.http.request import Headers, Request
from reactor.streams import EventStream, PushStream

TEXT = ("reactor compresses text. " * 100).encode()  # 2500 bytes, very compressible


def request(*fields: tuple[str, str], method: str = "GET") -> Request:
    headers = Headers([(name.lower(), value) for name, value in fields])
    return Request(method, "/", "/", "", "HTTP/1.1", headers)


GZIP = ("Accept-Encoding", "gzip, deflate, br")
hook = Gzip(level=1, min_bytes=1024)


# -- Accept-Encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        (["gzip"], True),
        (["GZip"], True),
        (["x-gzip"], True),
        (["gzip, deflate, br, zstd"], True),
        (["br;q=1.0, gzip;q=0.8, *;q=0.1"], True),
        (["gzip;q=0"], False),
        (["gzip; q=0.000"], False),
        (["gzip;q=0."], False),
        (["gzip;q=0.001"], True),
        (["gzip ;Q=1"], True),
        (["*"], True),
        (["*;q=0"], False),
        (["*, gzip;q=0"], False),  # an explicit refusal beats the wildcard
        (["gzip;q=0, *"], False),
        (["identity"], False),
        (["deflate, br"], False),
        ([""], False),
        ([], False),
        (["gzip;q=2"], False),  # not a qvalue: the element is skipped
        (["gzip;q=0.5000"], False),  # four decimals are not a qvalue
        (["gzip;level=1"], False),
        (["gzip;q=1.5, *"], True),  # the bad element is skipped, * accepts
        (["deflate", "gzip"], True),  # several fields are one list
        (["gzip", "gzip;q=0"], False),
        ([",,gzip,,"], True),  # empty list elements are allowed
    ],
)
def test_accept_encoding(values: list[str], accepted: bool) -> None:
    assert accepts_gzip(values) is accepted


def test_accept_encoding_is_linear_in_its_length() -> None:
    # A long hostile value is one split, and each element one partition; the
    # qvalue pattern looks at 5 characters at most. Counted, not timed: the
    # elements looked at grow with the value, once each.
    value = "gzip;q=0." + "0" * 100_000
    assert accepts_gzip([value]) is False
    assert accepts_gzip(["a," * 50_000 + "gzip"]) is True


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("text/html; charset=utf-8", True),
        ("TEXT/CSS", True),
        ("text/javascript", True),
        ("application/json", True),
        ("application/javascript", True),
        ("image/svg+xml", True),
        ("application/xml", True),
        ("application/problem+json", True),
        ("application/atom+xml; charset=utf-8", True),
        ("text/event-stream", False),
        ("image/png", False),
        ("image/jpeg", False),
        ("video/mp4", False),
        ("application/zip", False),
        ("application/gzip", False),
        ("font/woff2", False),
        ("application/octet-stream", False),
    ],
)
def test_compressible_types(kind: str, expected: bool) -> None:
    assert compressible(kind) is expected


# -- the hook ----------------------------------------------------------------------------------


def test_a_large_text_body_is_compressed_with_vary() -> None:
    out = hook(request(GZIP), Response(TEXT, content_type="text/plain"))
    assert out.get_header("Content-Encoding") == "gzip"
    assert out.get_header("Vary") == "Accept-Encoding"
    assert gzip.decompress(out.body) == TEXT
    assert len(out.body) < len(TEXT) // 10


def test_not_accepted_is_identity_but_still_varies() -> None:
    for fields in [(), (("Accept-Encoding", "gzip;q=0"),), (("Accept-Encoding", "identity"),)]:
        out = hook(request(*fields), Response(TEXT, content_type="text/plain"))
        assert out.body == TEXT
        assert out.get_header("Content-Encoding") is None
        assert out.get_header("Vary") == "Accept-Encoding"


def test_a_small_body_is_left_alone_without_vary() -> None:
    response = Response(TEXT[:1023], content_type="text/plain")
    assert hook(request(GZIP), response) is response
    assert response.get_header("Vary") is None
    assert hook(request(GZIP), Response(TEXT[:1024], content_type="text/plain")).get_header(
        "Content-Encoding"
    )


@pytest.mark.parametrize(
    "response",
    [
        Response(TEXT, content_type="image/png"),
        Response(TEXT, content_type="application/zip"),
        Response(TEXT, content_type="text/event-stream"),
        Response(TEXT),  # no Content-Type: unknown, left alone
        Response(TEXT, 206, headers=[("Content-Range", "bytes 0-2499/9999")], content_type="text/plain"),
        Response(TEXT, headers=[("Content-Encoding", "br")], content_type="text/plain"),
    ],
    ids=["png", "zip", "event-stream", "untyped", "206", "encoded"],
)
def test_never_compressed(response: Response) -> None:
    assert hook(request(GZIP), response) is response


def test_a_push_stream_is_never_compressed() -> None:
    for stream in (PushStream(content_type="text/plain"), EventStream()):
        response = Response(stream, content_type=stream.content_type)
        assert hook(request(GZIP), response) is response


def test_a_strong_etag_becomes_weak_and_a_weak_one_stays() -> None:
    out = hook(request(GZIP), Response(TEXT, headers=[("ETag", '"v1"')], content_type="text/plain"))
    assert out.get_header("ETag") == 'W/"v1"'
    out = hook(request(GZIP), Response(TEXT, headers=[("ETag", 'W/"v1"')], content_type="text/plain"))
    assert out.get_header("ETag") == 'W/"v1"'
    # Not compressed: the identity bytes keep their strong tag.
    out = hook(request(), Response(TEXT, headers=[("ETag", '"v1"')], content_type="text/plain"))
    assert out.get_header("ETag") == '"v1"'


def test_vary_is_merged_not_repeated() -> None:
    out = hook(request(GZIP), Response(TEXT, headers=[("Vary", "Cookie")], content_type="text/plain"))
    assert [v for k, v in out.headers if k == "Vary"] == ["Cookie, Accept-Encoding"]
    out = hook(
        request(GZIP), Response(TEXT, headers=[("Vary", "accept-encoding")], content_type="text/plain")
    )
    assert [v for k, v in out.headers if k == "Vary"] == ["accept-encoding"]


def test_the_handlers_response_is_not_changed() -> None:
    # A handler may hand out the same Response every time.
    shared = Response(TEXT, headers=[("ETag", '"v1"')], content_type="text/plain")
    before = list(shared.headers)
    for _ in range(2):
        out = hook(request(GZIP), shared)
        assert gzip.decompress(out.body) == TEXT
        assert [v for k, v in out.headers if k == "Vary"] == ["Accept-Encoding"]
    assert shared.headers == before and shared.body == TEXT


def test_head_gets_the_headers_of_get() -> None:
    get = hook(request(GZIP), Response(TEXT, content_type="text/plain"))
    head = hook(request(GZIP, method="HEAD"), Response(TEXT, content_type="text/plain"))
    assert head.headers == get.headers
    assert len(head.body) == len(get.body)  # so Content-Length is the same


def test_a_range_request_gets_identity() -> None:
    out = hook(request(GZIP, ("Range", "bytes=0-9")), Response(TEXT, content_type="text/plain"))
    assert out.body == TEXT
    assert out.get_header("Vary") == "Accept-Encoding"


def test_incompressible_bytes_are_sent_as_they_are() -> None:
    noise = zlib.compress(bytes(range(256)) * 64, 9) * 3  # compressed already: gzip makes it longer
    noise = bytes((b * 7 + i) & 0xFF for i, b in enumerate(noise))
    out = hook(request(GZIP), Response(noise, content_type="text/plain"))
    assert out.body == noise and out.get_header("Content-Encoding") is None


# -- the stream --------------------------------------------------------------------------------


def test_a_stream_is_compressed_piece_by_piece() -> None:
    pieces = [f"event {i}\n".encode() * 3 for i in range(20)]
    stream = GzipStream(iter(pieces), 1)
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    got = []
    for piece in pieces:
        # Each piece can be read in full from what came out for it.
        assert decompressor.decompress(next(stream)) == piece
        got.append(piece)
    tail = list(stream)  # the gzip trailer
    assert decompressor.decompress(b"".join(tail)) == b""
    assert decompressor.eof


def test_a_stream_response_decompresses_to_the_same_bytes() -> None:
    def body() -> Iterator[str | bytes]:
        yield "text "
        yield b""
        yield b"more " * 500

    out = hook(request(GZIP), Response(body(), content_type="text/plain"))
    assert isinstance(out.body, GzipStream)
    assert out.get_header("Content-Encoding") == "gzip"
    assert gzip.decompress(b"".join(out.body)) == b"text " + b"more " * 500


def test_closing_the_stream_closes_its_source() -> None:
    closed = []

    def body() -> Iterator[bytes]:
        try:
            yield b"a" * 10
            yield b"b" * 10
        finally:
            closed.append(True)

    stream = GzipStream(body(), 1)
    next(stream)
    stream.close()
    assert closed == [True]
    assert list(stream) == []


# -- where the hook runs -------------------------------------------------------------------------


class _FakeServer:
    def __init__(self, config: Config) -> None:
        self.config = config


def test_the_app_applies_it_by_config(tmp_path: object) -> None:
    app = App()
    app.route("/")(lambda request: Response(TEXT, content_type="text/plain"))
    app.attach(_FakeServer(Config(gzip_level=9)))  # type: ignore[arg-type]
    assert gzip.decompress(app.handle(request(GZIP)).body) == TEXT
    app.attach(_FakeServer(Config(gzip=False)))  # type: ignore[arg-type]
    assert app.handle(request(GZIP)).body == TEXT


def test_config_refuses_a_bad_level() -> None:
    for level in (0, 10):
        with pytest.raises(ValueError, match="gzip_level"):
            Config(gzip_level=level)
