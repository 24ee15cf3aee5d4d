"""The handler table, with requests built by hand."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reactor import App, Headers, HTTPError, Request, Response, to_response
from reactor.http.errors import LocalProtocolError


def request(method: str, path: str, body: bytes = b"") -> Request:
    return Request(method, path, path, "", "HTTP/1.1", Headers([("host", "t")]), body=body)


@pytest.fixture
def app() -> App:
    app = App()
    app.add_route("/", lambda r: "root")
    app.add_route("/items/{id}", lambda r: {"id": r.params["id"]}, methods=["GET", "DELETE"])
    app.add_route("/files/{rest:path}", lambda r: r.params["rest"])
    app.add_route("/items/special", lambda r: "special")
    app.add_route("/upload", lambda r: "", methods=["POST"])
    return app


def test_exact_and_parameter_routes(app: App) -> None:
    assert app.handle(request("GET", "/")).body == b"root"
    assert app.handle(request("GET", "/items/42")).body == b'{"id":"42"}'
    assert app.handle(request("GET", "/items/special")).body == b"special"
    assert app.handle(request("GET", "/files/a/b/c.txt")).body == b"a/b/c.txt"


def test_parameter_matches_one_segment(app: App) -> None:
    assert app.handle(request("GET", "/items/1/2")).status == 404


def test_404_and_405_with_allow(app: App) -> None:
    assert app.handle(request("GET", "/nope")).status == 404
    response = app.handle(request("POST", "/items/1"))
    assert response.status == 405
    assert response.get_header("allow") == "DELETE, GET, HEAD, OPTIONS"


def test_head_uses_get_and_options_lists_methods(app: App) -> None:
    assert app.handle(request("HEAD", "/")).body == b"root"  # the connection drops it
    response = app.handle(request("OPTIONS", "/items/1"))
    assert (response.status, response.get_header("allow")) == (204, "DELETE, GET, HEAD, OPTIONS")


def test_respond_early_only_for_refusals(app: App) -> None:
    assert app.respond_early(request("POST", "/")) is not None
    assert app.respond_early(request("GET", "/nope")) is not None
    assert app.respond_early(request("GET", "/")) is None


def test_duplicate_route_and_bad_path_are_refused(app: App) -> None:
    with pytest.raises(ValueError, match="already has a handler"):
        app.add_route("/", lambda r: "again")
    with pytest.raises(ValueError, match="must start with '/'"):
        app.add_route("nope", lambda r: "")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/{a}{b}", "one parameter per path segment"),
        ("/{a}-{b}", "one parameter per path segment"),
        ("/x/{a}.{b}/y", "one parameter per path segment"),
        ("/{rest:path}/{name}", "must be the last one"),
        ("/{a:path}/{b:path}", "must be the last one"),
    ],
)
def test_routes_that_could_match_two_ways_are_refused(path: str, why: str) -> None:
    # Each would let a failing match try every way of cutting the path.
    with pytest.raises(ValueError, match=why):
        App().add_route(path, lambda r: "")


def test_a_parameter_may_share_its_segment_with_literals() -> None:
    app = App()
    app.add_route("/docs/{name}.txt", lambda r: r.params["name"])
    app.add_route("/tree/{rest:path}/edit", lambda r: r.params["rest"])
    app.add_route("/v{version}/items", lambda r: r.params["version"])
    assert app.handle(request("GET", "/docs/a.b.txt")).body == b"a.b"
    assert app.handle(request("GET", "/tree/a/edit/b/edit")).body == b"a/edit/b"
    assert app.handle(request("GET", "/v2/items")).body == b"2"
    assert app.handle(request("GET", "/docs/a.txtx")).status == 404


def test_decorator_returns_the_handler() -> None:
    app = App()

    @app.route("/x", methods=["post"])
    def handler(r: Request) -> str:
        return "x"

    assert handler(request("POST", "/x")) == "x"
    assert app.handle(request("POST", "/x")).body == b"x"


@pytest.mark.parametrize(
    ("result", "status", "content_type", "body"),
    [
        ("text", 200, "text/plain; charset=utf-8", b"text"),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        ({"a": [1, "é"]}, 200, "application/json", '{"a":[1,"é"]}'.encode()),
        (None, 204, None, b""),
        (Response.html("<p>", 201), 201, "text/html; charset=utf-8", b"<p>"),
    ],
)
def test_shorthand_results(result: object, status: int, content_type: str | None, body: bytes) -> None:
    response = to_response(result)
    assert (response.status, response.get_header("content-type"), response.body) == (
        status,
        content_type,
        body,
    )


@pytest.mark.parametrize("result", [3, bytearray(b"x"), memoryview(b"x"), {1, 2}], ids=repr)
def test_unknown_result_type_is_an_error(result: object) -> None:
    with pytest.raises(TypeError, match=f"returned {type(result).__name__}"):
        to_response(result)


def test_shorthand_results_go_through_the_response_checks() -> None:
    with pytest.raises(LocalProtocolError, match="control character"):
        to_response(Response(headers=[("X", "\x1b")]))
    stream = iter([b"x"])
    assert to_response(stream).body is stream


# -- 501: a method no route knows --------------------------------------------


def test_a_method_no_route_knows_is_501_and_a_known_one_is_405(app: App) -> None:
    # DELETE is known (on /items/{id}), POST too (on /upload): elsewhere they are 405.
    response = app.handle(request("DELETE", "/"))
    assert (response.status, response.get_header("allow")) == (405, "GET, HEAD, OPTIONS")
    # No route takes PATCH or BREW: 501 on every path, with no Allow.
    for method, path in [("PATCH", "/"), ("PATCH", "/items/1"), ("BREW", "/nope")]:
        response = app.handle(request(method, path))
        assert (response.status, response.body) == (501, b"501 Not Implemented\n"), (method, path)
        assert response.get_header("allow") is None
    assert app.respond_early(request("PATCH", "/")) is not None


def test_get_head_and_options_are_always_known() -> None:
    app = App()
    app.add_route("/upload", lambda r: "ok", methods=["POST"])
    for method in ("GET", "HEAD"):
        response = app.handle(request(method, "/upload"))
        assert (response.status, response.get_header("allow")) == (405, "OPTIONS, POST")
    assert app.handle(request("GET", "/nope")).status == 404
    assert app.handle(request("OPTIONS", "/upload")).status == 204
    assert app.handle(request("PUT", "/upload")).status == 501


def test_a_static_mount_makes_get_known_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    app = App()
    app.static("/", tmp_path)
    assert app.handle(request("GET", "/a.txt")).status == 200
    assert app.handle(request("POST", "/a.txt")).status == 501
    assert app.knows("HEAD") and not app.knows("POST")
    app.add_route("/form", lambda r: "", methods=["POST"])  # a route added later counts
    response = app.handle(request("POST", "/a.txt"))
    assert (response.status, response.get_header("allow")) == (405, "GET, HEAD, OPTIONS")


# -- HTTPError -----------------------------------------------------------------


def raiser(error: HTTPError) -> App:
    app = App()

    def handler(r: Request) -> str:
        raise error

    app.add_route("/", handler)
    return app


def test_http_error_is_its_status_a_text_body_and_its_headers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "reactor.error")
    error = HTTPError(405, "read-only", headers=[("Allow", "GET")])
    response = raiser(error).handle(request("GET", "/"))
    assert response.status == 405
    assert response.body == b"405 Method Not Allowed: read-only\n"
    assert response.get_header("content-type") == "text/plain; charset=utf-8"
    assert response.get_header("allow") == "GET"
    (record,) = [r for r in caplog.records if r.name == "reactor.error"]
    assert (record.levelno, record.getMessage()) == (logging.DEBUG, "405 from handler for GET /: read-only")
    assert record.exc_info is None


def test_http_error_5xx_is_logged_at_info_with_controls_escaped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "reactor.error")
    app = raiser(HTTPError(503, "down\r\nfor\x1b now", headers={"Retry-After": "5"}))
    response = app.handle(request("GET", "/"))
    assert (response.status, response.get_header("retry-after")) == (503, "5")
    assert response.body == b"503 Service Unavailable: down\r\nfor\x1b now\n"
    (record,) = [r for r in caplog.records if r.name == "reactor.error"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == "503 from handler for GET /: down\\x0d\\x0afor\\x1b now"


def test_http_error_without_detail_and_with_an_unnamed_status() -> None:
    assert (
        raiser(HTTPError(401, headers=[("WWW-Authenticate", 'Basic realm="x"')]))
        .handle(request("GET", "/"))
        .body
        == b"401 Unauthorized\n"
    )
    assert raiser(HTTPError(499)).handle(request("GET", "/")).body == b"499 Error\n"


def test_http_error_headers_are_checked() -> None:
    with pytest.raises(LocalProtocolError, match="control character"):
        raiser(HTTPError(401, headers=[("WWW-Authenticate", "a\r\nSet-Cookie: x")])).handle(
            request("GET", "/")
        )


@pytest.mark.parametrize("status", [200, 302, 399, 600, "404"])
def test_http_error_takes_4xx_and_5xx_only(status: object) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        HTTPError(status)  # type: ignore[arg-type]


# -- request.json() --------------------------------------------------------------


def test_json_parses_utf8() -> None:
    assert request("POST", "/", '{"a": ["é", 1.5, null]}'.encode()).json() == {"a": ["é", 1.5, None]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "not JSON: Expecting value at line 1 column 1"),
        (b'{"a": 1', "not JSON: Expecting ',' delimiter at line 1 column 8"),
        (b"\xff{}", "not UTF-8 (byte 0)"),
        ('"é"'.encode("utf-16"), "not UTF-8 (byte 0)"),
        (b"\xef\xbb\xbf{}", "not JSON: Expecting value at line 1 column 1"),  # RFC 8259 §8.1: no BOM
        (b"[NaN]", "not JSON: NaN is not JSON"),
        (b"-Infinity", "not JSON: -Infinity is not JSON"),
        (b"1" * 5000, "not JSON: Exceeds the limit"),
        (b"[" * 100_000, "nests too deeply"),
    ],
    ids=["empty", "truncated", "latin1", "utf16", "bom", "nan", "infinity", "digits", "deep"],
)
def test_malformed_json_is_an_http_error_400(body: bytes, detail: str) -> None:
    with pytest.raises(HTTPError) as caught:
        request("POST", "/", body).json()
    assert caught.value.status == 400
    assert detail in caught.value.detail


def test_malformed_json_in_a_handler_answers_400() -> None:
    app = App()
    app.add_route("/", lambda r: r.json(), methods=["POST"])
    response = app.handle(request("POST", "/", b"{oops"))
    assert response.status == 400
    assert response.body.startswith(b"400 Bad Request: the body is not JSON: Expecting property name")
