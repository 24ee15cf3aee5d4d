"""The benchmark app as plain WSGI, for waitress and gunicorn (no framework in between).

``GET /`` answers ``Hello, World!`` as text/plain; ``POST /echo`` echoes the
body as application/octet-stream: the same routes as ``loadtests/hello.py``.

Run: ``waitress-serve --listen 127.0.0.1:8000 loadtests.peers.wsgi_hello:app`` or
``gunicorn -w 1 -k sync loadtests.peers.wsgi_hello:app``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, World!"
StartResponse = Callable[..., Any]


def _answer(start_response: StartResponse, status: str, content_type: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI application."""
    path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
    if path == "/" and method in ("GET", "HEAD"):
        return _answer(start_response, "200 OK", "text/plain", HELLO)
    if path == "/echo" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        return _answer(start_response, "200 OK", "application/octet-stream", body)
    if path in ("/", "/echo"):
        return _answer(start_response, "405 Method Not Allowed", "text/plain", b"405 Method Not Allowed\n")
    return _answer(start_response, "404 Not Found", "text/plain", b"404 Not Found\n")
