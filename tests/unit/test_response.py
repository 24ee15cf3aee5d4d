"""Response serialization: the exact bytes, and what is refused."""

from __future__ import annotations

import re

import pytest

from reactor import Response
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


@pytest.mark.parametrize(
    "response",
    [
        Response(headers=[("X-A", "a\r\nb")]),
        Response(headers=[("X-A", "a\nb")]),
        Response(headers=[("X-A", "a\x00b")]),
        Response(headers=[("X A", "b")]),
        Response(headers=[("X-A\r\nY", "b")]),
        Response(headers=[("Content-Length", "5")]),
        Response(headers=[("Connection", "close")]),
        Response(reason="OK\r\nX: y"),
        Response(status=42),
        Response(headers=[("X-A", "snowman \u2603")]),
    ],
)
def test_refused(response: Response) -> None:
    with pytest.raises(LocalProtocolError):
        encode_head(response, 0, keep_alive=True)


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
