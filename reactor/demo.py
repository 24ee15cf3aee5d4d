"""The built-in demo that ``python -m reactor`` serves with no ``--app``."""

from __future__ import annotations

import html
import platform
import time
from typing import TYPE_CHECKING, Any

from . import __version__
from .app import App
from .http.request import Request
from .http.response import Response
from .streams import Broadcast, EventStream

if TYPE_CHECKING:
    from .loop import Timer
    from .server import Server

__all__ = ["Demo", "make_demo"]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reactor {version}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }}
code {{ background: #f2f2f2; padding: 0 .25em; }}
</style>
</head>
<body>
<h1>reactor {version}</h1>
<p>This page comes from <strong>reactor</strong>, a pure-Python HTTP/1.1 server: one thread, one
<code>selectors</code> loop, and a state machine per connection. It runs on Python {python}.</p>
<h2>Try</h2>
<ul>
<li><a href="/api/info"><code>GET /api/info</code></a>: the server's figures as JSON</li>
<li><a href="/api/time"><code>GET /api/time</code></a>: the time</li>
<li><a href="/hello/world"><code>GET /hello/{{name}}</code></a>: a path parameter</li>
<li><code>curl -d 'hi' http://{host}/api/echo</code>: echoes the body</li>
</ul>
<h2>Serve your own app</h2>
<pre><code>from reactor import App

app = App()

@app.route("/")
def index(request):
    return "Hello, World!"</code></pre>
<p>then <code>python -m reactor --app mymodule:app</code>.</p>
</body>
</html>
"""


class Demo(App):
    """The demo app: an HTML page and a few JSON routes."""

    def __init__(self) -> None:
        super().__init__()
        self.server: Server | None = None
        self.started = time.monotonic()
        # One timer serves every clock subscriber; it runs only while there are any.
        self.clock = Broadcast()
        self._clock_timer: Timer | None = None
        self.chat = Broadcast()
        self._chat_id = 0
        self.add_route("/", self.index)
        self.add_route("/api/info", self.info)
        self.add_route("/api/time", self.now)
        self.add_route("/api/echo", self.echo, methods=["POST"])
        self.add_route("/hello/{name}", self.hello)
        self.add_route("/events/clock", self.clock_events)
        self.add_route("/events/chat", self.chat_events)
        self.add_route("/chat", self.chat_post, methods=["POST"])

    def attach(self, server: Server) -> None:
        """Let the figures routes read ``server``."""
        self.server = server

    def index(self, request: Request) -> Response:
        host = request.headers.get("host") or "127.0.0.1:8000"
        page = _PAGE.format(version=__version__, python=platform.python_version(), host=html.escape(host))
        return Response.html(page)

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
        stream = self.clock.add(EventStream())
        stream.on_close(self._clock_unsubscribed)
        if self._clock_timer is None and self.server is not None:
            loop = self.server.loop
            self._clock_timer = loop.timer(self._tick)
            self._clock_timer.reset(loop.now + 1.0)
        return stream

    def _tick(self) -> None:
        assert self.server is not None and self._clock_timer is not None
        now = time.time()
        self.clock.send_event(time.strftime("%H:%M:%S", time.gmtime(now)), event="time", id=str(int(now)))
        self._clock_timer.reset(self.server.loop.now + 1.0)

    def _clock_unsubscribed(self, stream: object) -> None:
        if not self.clock and self._clock_timer is not None:
            self._clock_timer.cancel()
            self._clock_timer = None

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
