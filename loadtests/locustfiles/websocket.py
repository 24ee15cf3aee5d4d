"""WebSocket users: each holds one connection to ``/ws/echo`` and sends a message now and then.

A locust user may open raw sockets (gevent makes them cooperative), so this
scenario needs no plugin: :class:`WebSocketUser` does the handshake with the
stdlib socket (the bytes of :mod:`loadtests.wsclient`), then each task sends a
masked 256-byte text message and times its echo, reported to locust as a
``WS`` request. Most users wait 1 to 5 s between messages (held, mostly idle
WebSockets); :data:`BUSY_USERS` send back to back. App: ``loadtests.ws_apps:app``.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from locust import User, between, constant, events, task

from loadtests.locustfiles import (
    common,  # noqa: F401 (registers the final CSV reports)
    shapes,
)
from loadtests.wsclient import handshake_request
from reactor.websocket.frames import Opcode, client_frame

BUSY_USERS = 5
MESSAGE = b"w" * 256
ANSWER = 4 + len(MESSAGE)  # the server's unmasked frame: 2 bytes, a 2-byte length, the payload


class _WebSocketUser(User):
    abstract = True
    label = "/ws/echo"

    def on_start(self) -> None:
        host, _, port = (self.host or "").removeprefix("http://").partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        self.sock.sendall(handshake_request("/ws/echo", host))
        head = b""
        while b"\r\n\r\n" not in head:
            piece = self.sock.recv(4096)
            if not piece:
                raise ConnectionError("closed during the handshake")
            head += piece
        ok = head.startswith(b"HTTP/1.1 101 ")
        self._report("WS handshake", started, len(head), None if ok else ConnectionError(head[:40]))

    def on_stop(self) -> None:
        try:
            self.sock.sendall(client_frame(Opcode.CLOSE, b"\x03\xe8", os.urandom(4)))
        finally:
            self.sock.close()

    @task
    def echo(self) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self.sock.sendall(client_frame(Opcode.TEXT, MESSAGE, os.urandom(4)))
            got = 0
            while got < ANSWER:
                piece = self.sock.recv(65536)
                if not piece:
                    raise ConnectionError("the server closed the WebSocket")
                got += len(piece)
        except OSError as exc:
            error = exc
        self._report(self.label, started, len(MESSAGE), error)

    def _report(self, name: str, started: float, length: int, error: Exception | None) -> None:
        info: dict[str, Any] = {
            "request_type": "WS",
            "name": name,
            "response_time": (time.perf_counter() - started) * 1000,
            "response_length": length,
            "exception": error,
            "context": {},
        }
        events.request.fire(**info)


class HeldUser(_WebSocketUser):
    label = "/ws/echo (held)"
    wait_time = between(1.0, 5.0)


class BusyUser(_WebSocketUser):
    label = "/ws/echo (busy)"
    wait_time = constant(0)
    fixed_count = BUSY_USERS


Shape = shapes.selected()
