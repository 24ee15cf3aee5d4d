"""Response serialization: the exact bytes, and what is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from reactor import FileBody, PushStream, Response
from reactor.http.errors import LocalProtocolError
from reactor.http.response import encode_head, http_date, informational


def test_head_bytes() -> None:
    head = encode_head(Response.text("hi"), 2, keep_alive=True)
    assert re.fullmatch(
        rb"HTTP/1\.1 200 OK\r\nServer: reactor\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n"
        rb"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n",
        head,
    ), head


def test_close_and_http10_keep_alive() -> None:
    assert b"\r\nConnection: close\r\n" in encode_head(Response(), 0, keep_alive=False)
    assert b"\r\nConnection: keep-alive\r\n" in encode_head(
        Response(), 0, keep_alive=True, http10_keep_alive=True
    )


def test_custom_reason_and_unknown_status() -> None:
    assert encode_head(Response(status=299), 0, keep_alive=True).startswith(b"HTTP/1.1 299 \r\n")
    assert encode_head(Response(status=200, reason="Fine"), 0, keep_alive=True).startswith(
        b"HTTP/1.1 200 Fine\r\n"
    )


# Every control character but HTAB: %x00-08, %x0A-1F and %x7F.
CONTROLS = [chr(c) for c in [*range(0x09), *range(0x0A, 0x20), 0x7F]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": [("X-A", "a\r\nb")]},
        {"headers": [("X-A", "a\nb")]},
        {"headers": [("X-A", "a\x00b")]},
        {"headers": [("X-A", "a\x1b[31mb")]},
        {"headers": [("X-A", "a\x7fb")]},
        {"headers": [("X-A", "a\x0bb")]},
        {"headers": {"X-A": "a\x0cb"}},
        {"content_type": "text/plain\x00"},
        {"headers": [("X A", "b")]},
        {"headers": [("X-A\r\nY", "b")]},
        {"headers": [("", "b")]},
        {"headers": [("Content-Length", "5")]},
        {"headers": [("Connection", "close")]},
        {"headers": [("X-A", "snowman \u2603")]},
        {"headers": [("X-A", 5)]},
        {"headers": [(b"X-A", "b")]},
        {"reason": "OK\r\nX: y"},
        {"reason": "OK\x1b"},
        {"reason": "OK\x7f"},
        {"reason": "caf\u00e9 \u2603"},
        {"reason": b"OK"},
        {"status": 42},
        {"status": 1000},
        {"status": "200"},
    ],
    ids=repr,
)
def test_refused_when_built(kwargs: dict[str, Any]) -> None:
    # Refused by the constructor, so a handler's traceback points at its own line.
    with pytest.raises(LocalProtocolError):
        Response(**kwargs)


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"{ord(c):#04x}")
def test_every_control_but_htab_is_refused_in_values_and_reasons(char: str) -> None:
    with pytest.raises(LocalProtocolError, match="control character"):
        Response(headers=[("X-A", f"a{char}b")])
    with pytest.raises(LocalProtocolError, match="control character"):
        Response(reason=f"Fine{char}")


def test_htab_obs_text_and_latin1_are_allowed() -> None:
    # RFC 9110 §5.5: HTAB, SP, VCHAR and obs-text (%x80-FF) make a field value.
    response = Response(headers=[("X-A", "a\tb caf\u00e9 \x80\xff")], reason="Tr\u00e8s\tbien")
    head = encode_head(response, 0, keep_alive=True)
    assert head.startswith(b"HTTP/1.1 200 Tr\xe8s\tbien\r\n")
    assert b"\r\nX-A: a\tb caf\xe9 \x80\xff\r\n" in head


@pytest.mark.parametrize(
    "body", [bytearray(b"abc"), memoryview(b"abc"), 3, 1.5, object()], ids=lambda b: type(b).__name__
)
def test_bodies_of_other_types_are_refused(body: object) -> None:
    with pytest.raises(TypeError, match="response body is bytes, str, None"):
        Response(body)


def test_bodies_that_are_accepted() -> None:
    assert Response(None).body == b""
    assert Response("é").body == "é".encode()
    pieces = iter([b"a", "b"])
    assert Response(pieces).body is pieces
    assert Response([b"a"]).body == [b"a"]  # any iterable of bytes or str is streamed
    file_body = FileBody(None, 0, 0)
    assert Response(file_body).body is file_body
    stream = PushStream()
    assert Response(stream).body is stream


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.headers.append(("X-A", "a\r\nb")),
        lambda r: r.headers.append(("X-A", "a\x1bb")),
        lambda r: r.headers.append(("Server", "other")),
        lambda r: r.headers.append(("X-A", "\u2603")),
        lambda r: setattr(r, "reason", "OK\r\n"),
        lambda r: setattr(r, "reason", "\u2603"),
        lambda r: setattr(r, "status", 42),
    ],
)
def test_refused_when_changed_after_it_was_built(change: Callable[[Response], None]) -> None:
    # encode_head checks again: headers are a plain list a handler may change.
    response = Response.text("hi")
    change(response)
    with pytest.raises(LocalProtocolError):
        encode_head(response, 2, keep_alive=True)


def test_date_is_cached_per_second() -> None:
    # Three calls span at most one second boundary: two of them share the object.
    first, second, third = http_date(), http_date(), http_date()
    assert first is second or second is third


def test_informational() -> None:
    assert informational(100) == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_redirect_and_json_helpers() -> None:
    redirect = Response.redirect("/there")
    assert (redirect.status, redirect.get_header("location")) == (303, "/there")
    assert Response.json([1, 2]).body == b"[1,2]"


def test_the_cache_of_checked_values_is_bounded() -> None:
    from reactor.http import response as module

    for i in range(3000):
        Response(headers=[("ETag", f'"{i}"'), ("X-Long", f"{i}" + "v" * 100)])
    assert len(module._valid_values) <= 1024
    assert not [value for value in module._valid_values if len(value) > 64]
    # A value in the cache is still refused in a name the server owns.
    with pytest.raises(LocalProtocolError, match="set by the server"):
        Response(headers=[("Server", '"1"')])


def test_a_head_from_cached_parts_is_the_head_built_in_full() -> None:
    # The second head of a kind comes from parts kept by the first: the same
    # bytes, whatever the status, and still checked when a field changes.
    first = encode_head(Response(b"ok", 201, content_type="text/x-one"), 2, keep_alive=True)
    again = encode_head(Response(b"okay", 201, content_type="text/x-one"), 4, keep_alive=True)
    assert again == first.replace(b"Content-Length: 2", b"Content-Length: 4")
    other = encode_head(Response(b"ok", 404, content_type="text/x-one"), 2, keep_alive=True)
    assert other.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Type: text/x-one\r\nContent-Length: 2\r\n\r\n" in other
    closing = encode_head(Response(b"ok", 201, content_type="text/x-one"), 2, keep_alive=False)
    assert closing.endswith(b"Content-Length: 2\r\nConnection: close\r\n\r\n")
    changed = Response(b"ok", 201, content_type="text/x-one")
    changed.headers[0] = ("Content-Type", "text/x-one\r\nX-Injected: 1")
    with pytest.raises(LocalProtocolError):
        encode_head(changed, 2, keep_alive=True)


def test_the_cache_of_head_parts_is_bounded() -> None:
    from reactor.http import response as module

    for i in range(1000):
        encode_head(Response(b"", content_type=f"text/x-{i}"), 0, keep_alive=True)
    assert len(module._heads) <= module._MAX_HEADS
