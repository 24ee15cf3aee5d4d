"""The request API: query fields, forms, cookies read, and cookies set."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reactor import HTTPError, MultiDict, Response
from reactor.http.cookies import parse_cookie_header
from reactor.http.fields import MAX_FIELDS, parse_urlencoded
from reactor.http.request import Headers, Request
from reactor.http.response import encode_head


def make_request(
    query: str = "", headers: list[tuple[str, str]] | None = None, body: bytes = b"", method: str = "GET"
) -> Request:
    target = "/p" + ("?" + query if query else "")
    fields = [("host", "x"), *(headers or [])]
    return Request(method, target, "/p", query, "HTTP/1.1", Headers(fields), body=body)


# -- query ----------------------------------------------------------------------------


def test_query_single_values_and_repeats() -> None:
    query = make_request("n=1&tag=a&tag=b&n=2").query
    assert query["n"] == "1"  # the first of a repeated name
    assert query.get("n") == "1"
    assert query.getall("n") == ["1", "2"]
    assert query.getall("tag") == ["a", "b"]
    assert query.get("missing") is None
    assert query.get("missing", "7") == "7"
    assert query.getall("missing") == []
    assert list(query) == ["n", "tag"]
    assert len(query) == 2
    assert "tag" in query and "x" not in query
    assert query.multi_items() == [("n", "1"), ("tag", "a"), ("tag", "b"), ("n", "2")]
    assert query.to_dict() == {"n": ["1", "2"], "tag": ["a", "b"]}
    with pytest.raises(KeyError):
        query["missing"]


def test_query_blanks_decoding_and_plus() -> None:
    query = make_request("a=&b&c=%41%20%E2%82%AC&d=x+y&e=%2B&&f==").query
    assert query["a"] == ""
    assert query["b"] == ""  # a name without "=" is a blank value
    assert query["c"] == "A \u20ac"  # percent-decoded as UTF-8
    assert query["d"] == "x y"  # "+" is a space
    assert query["e"] == "+"
    assert query["f"] == "="  # split on the first "=" only
    assert "" not in query  # "&&" makes no field


def test_query_is_parsed_once() -> None:
    request = make_request("a=1")
    assert request.query is request.query


def test_query_is_read_only() -> None:
    query = make_request("a=1").query
    with pytest.raises(TypeError):
        query["a"] = "2"  # type: ignore[index]


def test_empty_query() -> None:
    assert len(make_request("").query) == 0


def test_query_field_limit() -> None:
    assert len(make_request("&".join(f"a{i}=1" for i in range(MAX_FIELDS))).query) == MAX_FIELDS
    with pytest.raises(HTTPError) as caught:
        make_request("&".join(f"a{i}=1" for i in range(MAX_FIELDS + 1))).query  # noqa: B018
    assert caught.value.status == 400
    with pytest.raises(HTTPError):
        parse_urlencoded("a&" * 5, max_fields=3)


def test_multidict_equals_a_dict_of_first_values() -> None:
    assert MultiDict([("a", "1"), ("a", "2")]) == {"a": "1"}


# -- form: urlencoded and content types -------------------------------------------------

URLENCODED = [("content-type", "application/x-www-form-urlencoded")]


def test_urlencoded_form() -> None:
    request = make_request(headers=URLENCODED, body=b"name=J%C3%B6rg+K&tag=a&tag=b&empty=", method="POST")
    fields, files = request.form()
    assert fields["name"] == "J\u00f6rg K"
    assert fields.getall("tag") == ["a", "b"]
    assert fields["empty"] == ""
    assert len(files) == 0
    assert request.form() is request.form()


def test_urlencoded_content_type_with_charset_and_case() -> None:
    request = make_request(
        headers=[("content-type", "Application/X-WWW-Form-URLEncoded; charset=UTF-8")], body=b"a=1"
    )
    assert request.form().fields["a"] == "1"


def test_urlencoded_field_limit_is_413() -> None:
    request = make_request(headers=URLENCODED, body=b"a=1&" * 20)
    with pytest.raises(HTTPError) as caught:
        request.form(max_fields=10)
    assert caught.value.status == 413


def test_urlencoded_not_utf8_is_400() -> None:
    with pytest.raises(HTTPError) as caught:
        make_request(headers=URLENCODED, body=b"a=\xff").form()
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/plain", "multipart/mixed; boundary=x"]
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    headers = [] if content_type is None else [("content-type", content_type)]
    with pytest.raises(HTTPError) as caught:
        make_request(headers=headers, body=b"a=1").form()
    assert caught.value.status == 415


# -- cookies read -------------------------------------------------------------------------


def test_cookies_parsed() -> None:
    request = make_request(headers=[("cookie", 'session=abc123; theme="dark"; empty=; eq=a=b')])
    assert request.cookies == {"session": "abc123", "theme": "dark", "empty": "", "eq": "a=b"}
    assert request.cookies is request.cookies


def test_cookies_skip_malformed_pairs_and_keep_the_rest() -> None:
    assert parse_cookie_header("junk; =novalue; a=1;;  b = 2 ; a=3") == {"a": "1", "b": "2"}


def test_cookies_from_several_headers_and_none() -> None:
    assert make_request(headers=[("cookie", "a=1"), ("cookie", "b=2")]).cookies == {"a": "1", "b": "2"}
    assert make_request().cookies == {}


def test_cookies_not_decoded() -> None:
    assert parse_cookie_header("a=%20x\\y") == {"a": "%20x\\y"}


# -- cookies set ----------------------------------------------------------------------------


def set_cookies(response: Response) -> list[str]:
    return [value for name, value in response.headers if name == "Set-Cookie"]


def test_set_cookie_defaults() -> None:
    response = Response.text("ok")
    response.set_cookie("session", "abc123")
    assert set_cookies(response) == ["session=abc123; Path=/; SameSite=Lax"]
    assert b"\r\nSet-Cookie: session=abc123; Path=/; SameSite=Lax\r\n" in encode_head(
        response, 2, keep_alive=True
    )


def test_set_cookie_every_attribute() -> None:
    response = Response()
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    response.set_cookie(
        "id",
        "v",
        max_age=3600,
        expires=when,
        path="/app",
        domain="example.com",
        secure=True,
        httponly=True,
        samesite="none",
    )
    assert set_cookies(response) == [
        "id=v; Max-Age=3600; Expires=Wed, 02 Jan 2030 02:04:05 GMT; Domain=example.com; Path=/app;"
        " Secure; HttpOnly; SameSite=None"
    ]


def test_set_cookie_expires_as_unix_time_and_no_samesite() -> None:
    response = Response()
    response.set_cookie("a", "1", expires=0, path=None, samesite=None)
    assert set_cookies(response) == ["a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT"]


def test_each_call_adds_a_field() -> None:
    response = Response()
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    response.delete_cookie("old", path="/x")
    assert set_cookies(response) == [
        "a=1; Path=/; SameSite=Lax",
        "b=2; Path=/; SameSite=Lax",
        "old=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/x",
    ]


@pytest.mark.parametrize("name", ["", "a b", "a;b", "a=b", "a\r\nSet-Cookie: x", "caf\u00e9", "a,b", "(a)"])
def test_set_cookie_refuses_a_name_that_is_not_a_token(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Response().set_cookie(name, "v")


@pytest.mark.parametrize("value", ["a b", "a;b", 'a"b', "a,b", "a\\b", "a\r\nX: y", "\x00", "\x7f", "\u00e9"])
def test_set_cookie_refuses_a_value_that_is_not_cookie_octets(value: str) -> None:
    response = Response()
    with pytest.raises(ValueError, match="value"):
        response.set_cookie("a", value)
    assert set_cookies(response) == []


def test_set_cookie_accepts_every_cookie_octet() -> None:
    octets = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '";,\\')
    response = Response()
    response.set_cookie("a", octets)
    assert set_cookies(response)[0].startswith(f"a={octets}; ")


@pytest.mark.parametrize(
    "options",
    [
        {"path": "/a;b"},
        {"domain": "x\r\n"},
        {"samesite": "sometimes"},
        {"samesite": "None"},  # without secure
        {"max_age": 1.5},
        {"expires": datetime(2030, 1, 1)},  # naive: which zone?
    ],
)
def test_set_cookie_refuses_bad_attributes(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Response().set_cookie("a", "1", **options)  # type: ignore[arg-type]


# -- the load-test site reads its paging parameters with the new API ------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", (0, 20)),
        ("offset=3&limit=500", (3, 100)),
        ("limit=5&limit=7", (0, 5)),
        ("limit=", None),
        ("limit=x", None),
    ],
)
def test_site_paging_parameters(query: str, expected: tuple[int, int] | None) -> None:
    from loadtests.site import _int_param

    request = make_request(query)
    got = (_int_param(request, "offset", 0, 0, 1 << 31), _int_param(request, "limit", 20, 1, 100))
    assert (None if None in got else got) == expected
