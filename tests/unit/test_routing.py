"""The handler table, with requests built by hand."""

from __future__ import annotations

import pytest

from reactor import App, Headers, Request, Response, to_response


def request(method: str, path: str) -> Request:
    return Request(method, path, path, "", "HTTP/1.1", Headers([("host", "t")]))


@pytest.fixture
def app() -> App:
    app = App()
    app.add_route("/", lambda r: "root")
    app.add_route("/items/{id}", lambda r: {"id": r.params["id"]}, methods=["GET", "DELETE"])
    app.add_route("/files/{rest:path}", lambda r: r.params["rest"])
    app.add_route("/items/special", lambda r: "special")
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


def test_unknown_result_type_is_an_error() -> None:
    with pytest.raises(TypeError, match="returned int"):
        to_response(3)
