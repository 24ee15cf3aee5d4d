"""The built-in demo that ``python -m reactor`` serves with no ``--app``.

A small static site (``reactor/site/``, package data) served by
:class:`~reactor.static.StaticFiles` at ``/``, whose script shows live figures
from ``/api/info``, plus a few JSON routes and two event streams.
"""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any

from . import __version__, live
from .app import App
from .http.request import Request
from .http.response import Response
from .streams import Broadcast, EventStream

if TYPE_CHECKING:
    from .server import Server

__all__ = ["SITE", "Demo", "make_demo"]

#: The demo site: HTML, CSS, JavaScript and an image, packaged with reactor.
SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")


class Demo(App):
    """The demo app: the packaged site, a few JSON routes and two event streams."""

    def __init__(self) -> None:
        super().__init__()
        self.server: Server | None = None
        self.started = time.monotonic()
        # One timer serves every clock subscriber; it runs only while there are any.
        self.clock = Broadcast()
        self.chat = Broadcast()
        self._chat_id = 0
        self.add_route("/api/info", self.info)
        self.add_route("/api/time", self.now)
        self.add_route("/api/echo", self.echo, methods=["POST"])
        self.add_route("/hello/{name}", self.hello)
        self.add_route("/events/clock", self.clock_events)
        self.add_route("/events/chat", self.chat_events)
        self.add_route("/chat", self.chat_post, methods=["POST"])
        live.mount(self)
        # Last: exact routes win anyway, but patterns are tried in the order
        # they were added, and "/{path:path}" matches every path.
        self.static("/", SITE)

    def attach(self, server: Server) -> None:
        """Let the figures routes read ``server``, and give the clock its loop."""
        super().attach(server)
        self.server = server
        self.clock.every(server.loop, 1.0, self._tick)

    def info(self, request: Request) -> dict[str, Any]:
        info: dict[str, Any] = {
            "server": "reactor",
            "version": __version__,
            "python": platform.python_version(),
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        if self.server is not None:
            info["connections"] = self.server.count_by_state()
            info["accepted"] = self.server.accepted
            info["loop_iterations"] = self.server.loop.iterations
            info["timers"] = self.server.loop.pending_timers()
        return info

    def now(self, request: Request) -> dict[str, Any]:
        return {"unix": time.time(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def echo(self, request: Request) -> Response:
        content_type = request.headers.get("content-type") or "application/octet-stream"
        return Response(request.body, 200, content_type=content_type)

    def hello(self, request: Request) -> str:
        return f"Hello, {request.params['name']}!\n"

    def clock_events(self, request: Request) -> EventStream:
        """One ``time`` event a second, from one timer shared by every subscriber."""
        return self.clock.add(EventStream())

    def _tick(self) -> None:
        now = time.time()
        self.clock.send_event(time.strftime("%H:%M:%S", time.gmtime(now)), event="time", id=str(int(now)))

    def chat_events(self, request: Request) -> EventStream:
        """Every message posted to ``POST /chat``; resumes after ``Last-Event-ID``."""
        return self.chat.add(EventStream())

    def chat_post(self, request: Request) -> dict[str, Any]:
        self._chat_id += 1
        text = request.body.decode("utf-8", "replace")
        delivered = self.chat.send_event(text, event="message", id=str(self._chat_id))
        return {"id": self._chat_id, "delivered": delivered}


def make_demo() -> Demo:
    """A new demo app."""
    return Demo()
