"""The benchmark app as plain ASGI, for uvicorn (no framework in between).

``GET /`` answers ``Hello, World!`` as text/plain; ``POST /echo`` echoes the
body as application/octet-stream: the same two routes as ``loadtests/hello.py``
serves on reactor, so both servers do the same work per request.

Run: ``uvicorn loadtests.peers.asgi_hello:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, World!"
_TEXT = [(b"content-type", b"text/plain")]
_NOT_FOUND = b"404 Not Found\n"


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/":
        if method in ("GET", "HEAD"):
            await _respond(send, 200, _TEXT, HELLO)
        else:
            await _respond(send, 405, [*_TEXT, (b"allow", b"GET, HEAD")], b"405 Method Not Allowed\n")
    elif path == "/echo":
        if method == "POST":
            body = await _read_body(receive)
            await _respond(send, 200, [(b"content-type", b"application/octet-stream")], body)
        else:
            await _respond(send, 405, [*_TEXT, (b"allow", b"POST")], b"405 Method Not Allowed\n")
    else:
        await _respond(send, 404, _TEXT, _NOT_FOUND)
