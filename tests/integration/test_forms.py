"""Forms, query fields and cookies over real sockets, sent by ``requests``."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from reactor import App, Request, Response
from tests.conftest import Running, connect, read_until_close


def forms_app() -> App:
    app = App()

    @app.route("/search")
    def search(request: Request) -> dict[str, Any]:
        query = request.query
        return {"q": query.get("q", ""), "page": int(query.get("page", "1")), "tags": query.getall("tag")}

    @app.route("/form", methods=["POST"])
    def form(request: Request) -> dict[str, Any]:
        fields, files = request.form(spool_bytes=4096)
        uploads = [
            [
                name,
                {
                    "filename": upload.filename,
                    "content_type": upload.content_type,
                    "size": upload.size,
                    "sha256": hashlib.sha256(upload.read()).hexdigest(),
                    "on_disk": bool(upload.file._rolled),  # type: ignore[attr-defined]
                },
            ]
            for name, upload in files.multi_items()
        ]
        return {"fields": fields.to_dict(), "files": uploads}

    @app.route("/login", methods=["POST"])
    def login(request: Request) -> Response:
        response = Response.text("welcome")
        response.set_cookie("session", "s3cr3t-" + request.form().fields["user"], httponly=True)
        response.set_cookie("theme", "dark", max_age=3600)
        return response

    @app.route("/whoami")
    def whoami(request: Request) -> dict[str, str]:
        return request.cookies

    @app.route("/logout", methods=["POST"])
    def logout(request: Request) -> Response:
        response = Response.text("bye")
        response.delete_cookie("session")
        return response

    return app


@pytest.fixture
def forms(serve: Callable[..., Running]) -> str:
    running = serve(forms_app())
    return f"http://{running.host}:{running.port}"


def test_query_single_values_and_repeats(forms: str) -> None:
    reply = requests.get(
        f"{forms}/search", params=[("q", "a b&c"), ("tag", "x"), ("tag", "y"), ("page", "3")], timeout=5
    )
    assert reply.status_code == 200
    assert reply.json() == {"q": "a b&c", "page": 3, "tags": ["x", "y"]}
    assert requests.get(f"{forms}/search", timeout=5).json() == {"q": "", "page": 1, "tags": []}


def test_query_with_too_many_fields_is_400(forms: str) -> None:
    reply = requests.get(f"{forms}/search?" + "a&" * 1001, timeout=5)
    assert reply.status_code == 400
    assert "more than 1000 fields" in reply.text


def test_urlencoded_form(forms: str) -> None:
    reply = requests.post(f"{forms}/form", data={"name": "J\u00f6rg & co", "tag": ["a", "b"]}, timeout=5)
    assert reply.status_code == 200
    assert reply.json() == {"fields": {"name": ["J\u00f6rg & co"], "tag": ["a", "b"]}, "files": []}


def test_multipart_upload_with_files_and_data(forms: str) -> None:
    big = os.urandom(100_000)
    small = b"hello\r\n--not a boundary\r\n"
    reply = requests.post(
        f"{forms}/form",
        data={"title": "holiday", "tag": ["sea", "sun"]},
        files=[
            ("photo", ("beach.jpg", big, "image/jpeg")),
            ("photo", ("note.txt", small, "text/plain")),
            ("empty", ("nothing.bin", b"")),
        ],
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["fields"] == {"title": ["holiday"], "tag": ["sea", "sun"]}
    assert body["files"] == [
        [
            "photo",
            {
                "filename": "beach.jpg",
                "content_type": "image/jpeg",
                "size": len(big),
                "sha256": hashlib.sha256(big).hexdigest(),
                "on_disk": True,  # past spool_bytes (4096)
            },
        ],
        [
            "photo",
            {
                "filename": "note.txt",
                "content_type": "text/plain",
                "size": len(small),
                "sha256": hashlib.sha256(small).hexdigest(),
                "on_disk": False,
            },
        ],
        [
            "empty",
            {
                "filename": "nothing.bin",
                "content_type": None,
                "size": 0,
                "sha256": hashlib.sha256(b"").hexdigest(),
                "on_disk": False,
            },
        ],
    ]


def test_big_multipart_file_is_spooled_to_disk_intact(forms: str) -> None:
    big = os.urandom(300_000)
    reply = requests.post(
        f"{forms}/form", files={"f": ("big.bin", big, "application/octet-stream")}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["files"] == [
        [
            "f",
            {
                "filename": "big.bin",
                "content_type": "application/octet-stream",
                "size": len(big),
                "sha256": hashlib.sha256(big).hexdigest(),
                "on_disk": True,
            },
        ]
    ]


def test_json_body_to_a_form_handler_is_415_and_the_connection_goes_on(forms: str) -> None:
    with requests.Session() as session:
        reply = session.post(f"{forms}/form", json={"a": 1}, timeout=5)
        assert reply.status_code == 415
        assert session.get(f"{forms}/search?q=after", timeout=5).json()["q"] == "after"


def test_multipart_without_final_boundary_is_400(forms: str) -> None:
    body = b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
    reply = requests.post(
        f"{forms}/form", data=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"}, timeout=5
    )
    assert reply.status_code == 400
    assert "final boundary" in reply.text


def test_multipart_bad_boundary_is_400_on_the_wire(forms: str) -> None:
    address = forms.removeprefix("http://").split(":")
    sock: socket.socket = connect((address[0], int(address[1])))
    with sock:
        body = b"--" + b"b" * 71 + b"--\r\n"
        sock.sendall(
            b"POST /form HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: multipart/form-data; boundary=" + b"b" * 71 + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        reply = read_until_close(sock)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]


def test_cookies_round_trip_with_a_session(forms: str) -> None:
    with requests.Session() as session:
        login = session.post(f"{forms}/login", data={"user": "ann"}, timeout=5)
        assert login.status_code == 200
        assert login.raw.headers.getlist("Set-Cookie") == [
            "session=s3cr3t-ann; Path=/; HttpOnly; SameSite=Lax",
            "theme=dark; Max-Age=3600; Path=/; SameSite=Lax",
        ]
        assert session.get(f"{forms}/whoami", timeout=5).json() == {"session": "s3cr3t-ann", "theme": "dark"}
        logout = session.post(f"{forms}/logout", timeout=5)
        assert logout.raw.headers.getlist("Set-Cookie") == [
            "session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"
        ]
        assert session.get(f"{forms}/whoami", timeout=5).json() == {"theme": "dark"}


# -- the README's example app ---------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_app() -> App:
    """The ``# myapp.py`` block of the README, run as a module."""
    text = README.read_text()
    start = text.index("```python\n# myapp.py\n") + len("```python\n")
    namespace: dict[str, Any] = {}
    exec(compile(text[start : text.index("```", start)], "README.md:myapp.py", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, App)
    return app


def test_the_readme_example_app_works(serve: Callable[..., Running]) -> None:
    running = serve(readme_app())
    base = f"http://{running.host}:{running.port}"
    assert requests.get(base, timeout=5).text == "Hello, World!"
    assert requests.post(f"{base}/items", json={"name": "a kettle"}, timeout=5).json() == {"id": "2"}
    assert requests.post(f"{base}/items", data=b"{", timeout=5).status_code == 400
    listed = requests.get(f"{base}/items?limit=1&tag=a&tag=b", timeout=5).json()
    assert listed == {"items": ["a teapot"], "tags": ["a", "b"]}
    assert requests.get(f"{base}/items/9", timeout=5).status_code == 404
    uploaded = requests.post(
        f"{base}/upload", data={"title": "me"}, files={"photo": ("me.png", b"\x89PNG")}, timeout=5
    )
    assert uploaded.json() == {"title": "me", "file": "me.png", "bytes": 4}
    assert requests.post(f"{base}/upload", data={"title": "me"}, timeout=5).status_code == 400
    assert requests.post(f"{base}/upload", json={}, timeout=5).status_code == 415
    with requests.Session() as session:
        assert session.get(f"{base}/me", timeout=5).text == "nobody"
        assert session.post(f"{base}/login", data={"user": "Ann Lee"}, timeout=5).text == "hello Ann Lee"
        assert session.get(f"{base}/me", timeout=5).text == "Ann Lee"
