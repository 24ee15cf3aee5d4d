"""The built-in demo that ``python -m reactor`` serves with no ``--app``.

A small static site (``reactor/site/``, package data) served by
:class:`~reactor.static.StaticFiles` at ``/``, whose script shows live figures
from ``/api/info``, plus a few JSON routes and two event streams, and
WebSockets: an echo at ``/ws/echo`` (the endpoint the Autobahn|Testsuite run
uses) and the chat at ``/ws/chat``, which joins the same broadcast as the
chat's event stream.
"""

from __future__ import annotations

import os
import platform
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import __version__, live
from .app import App
from .broker import Broker
from .http.request import Request
from .http.response import Response
from .streams import Broadcast, EventStream, format_event
from .websocket.protocol import WebSocket

if TYPE_CHECKING:
    from .server import Server

__all__ = [
    "CHAT_CHANNEL",
    "CHAT_HISTORY_BYTES",
    "CHAT_HISTORY_MESSAGES",
    "ECHO_MAX_MESSAGE_BYTES",
    "SITE",
    "Demo",
    "make_demo",
]

#: The demo site: HTML, CSS, JavaScript and an image, packaged with reactor.
SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")

#: The chat history replayed after ``Last-Event-ID`` holds at most this many
#: messages...
CHAT_HISTORY_MESSAGES = 100
#: ...and at most this many bytes of event frames, whichever bound is hit first:
#: a hundred large messages must not pin megabytes.
CHAT_HISTORY_BYTES = 64 << 10
#: The Redis channel of the chat, with ``--broker``.
CHAT_CHANNEL = "reactor:chat"
#: The largest message ``/ws/echo`` takes: Autobahn's 9.* cases send up to 16 MiB.
ECHO_MAX_MESSAGE_BYTES = 16 << 20
#: An event id is the decimal message number: longer ``Last-Event-ID`` values
#: are bogus and get the whole history, as unparsable ones do.
_MAX_ID_DIGITS = 20

# Every answer here says whether a cache may keep it: without Cache-Control
# (and with no validator), a cache may store it and serve it for a lifetime
# of its own choosing (RFC 9111 §4.2.2). Live figures, the time and the
# answers to POSTs are stale at once (or belong to the one request), so no
# cache keeps them: no-store.
_NO_STORE = (("Cache-Control", "no-store"),)
# A greeting is a function of its URL alone, the same on every request while
# the code is: caches may keep it, for a minute (an edited greeting is seen
# within one) rather than a heuristic lifetime.
_ONE_MINUTE = (("Cache-Control", "max-age=60"),)


class Demo(App):
    """The demo app: the packaged site, a few JSON routes and two event streams."""

    def __init__(self) -> None:
        super().__init__()
        self.server: Server | None = None
        self.started = time.monotonic()
        # One timer serves every clock subscriber; it runs only while there are any.
        self.clock = Broadcast()
        self.chat = Broadcast()
        #: With ``--broker``: the chat goes through Redis (see attach()).
        self.broker: Broker | None = None
        self._chat_id = 0
        # (id, event frame) of the last messages, oldest first; see CHAT_HISTORY_*.
        self._chat_history: deque[tuple[int, bytes]] = deque()
        self._chat_history_bytes = 0
        self.add_route("/api/info", self.info)
        self.add_route("/api/time", self.now)
        self.add_route("/api/echo", self.echo, methods=["POST"])
        self.add_route("/hello/{name}", self.hello)
        self.add_route("/events/clock", self.clock_events)
        self.add_route("/events/chat", self.chat_events)
        self.add_route("/chat", self.chat_post, methods=["POST"])
        self.websocket("/ws/echo", on_message=_echo, max_message=ECHO_MAX_MESSAGE_BYTES)
        self.websocket("/ws/chat", on_open=self._chat_joined, on_message=self._chat_said)
        live.mount(self)
        # Last: exact routes win anyway, but patterns are tried in the order
        # they were added, and "/{path:path}" matches every path.
        self.static("/", SITE)

    def attach(self, server: Server) -> None:
        """Let the figures routes read ``server``, and give the clock its loop."""
        super().attach(server)
        self.server = server
        self.clock.every(server.loop, 1.0, self._tick)
        # With a broker, chat messages cross processes. The clock does not:
        # every process ticks for its own subscribers, from its own timer.
        # The tick is a function of the wall clock, the same on every host;
        # relayed, N processes would each send every subscriber N ticks a
        # second, unless one were elected to publish (a lease in Redis, and
        # a failover when its holder dies) to save nothing. Local ticks also
        # go on while Redis is down, and cost nothing where nobody listens.
        if server.config.broker is not None:
            self.broker = Broker(server.loop, server.config.broker)
            self.chat.link(self.broker, CHAT_CHANNEL, self._chat_received)
            self.broker.start()

    def close(self) -> None:
        """Close the broker's connections (the server has stopped)."""
        if self.broker is not None:
            self.broker.close()
            self.broker = None

    def info(self, request: Request) -> Response:
        info: dict[str, Any] = {
            "server": "reactor",
            "version": __version__,
            "python": platform.python_version(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            # Which process answered: with --workers N, one of N.
            "pid": os.getpid(),
        }
        if self.server is not None:
            info["connections"] = self.server.count_by_state()
            info["accepted"] = self.server.accepted
            info["loop_iterations"] = self.server.loop.iterations
            info["timers"] = self.server.loop.pending_timers()
        if self.broker is not None:
            info["broker"] = self.broker.status()
        return Response.json(info, headers=_NO_STORE)

    def now(self, request: Request) -> Response:
        now = {"unix": time.time(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return Response.json(now, headers=_NO_STORE)

    def echo(self, request: Request) -> Response:
        content_type = request.headers.get("content-type") or "application/octet-stream"
        return Response(request.body, 200, headers=_NO_STORE, content_type=content_type)

    def hello(self, request: Request) -> Response:
        return Response.text(f"Hello, {request.params['name']}!\n", headers=_ONE_MINUTE)

    def clock_events(self, request: Request) -> EventStream:
        """One ``time`` event a second, from one timer shared by every subscriber."""
        return self.clock.add(EventStream())

    def _tick(self) -> None:
        now = time.time()
        self.clock.send_event(time.strftime("%H:%M:%S", time.gmtime(now)), event="time", id=str(int(now)))

    def chat_events(self, request: Request) -> EventStream:
        """Every message posted to ``POST /chat``; resumes after ``Last-Event-ID``.

        A client that sends ``Last-Event-ID: N`` first gets the kept messages
        whose id is above ``N``; an id that is not a message number, or one
        newer than the last message (from before a restart), gets all of them.
        """
        stream = EventStream()
        last = request.headers.get("last-event-id")
        if last is not None:
            after = self._chat_resume_point(last)
            for message_id, frame in self._chat_history:
                if message_id > after:
                    stream.send(frame)  # queued until the response starts
        return self.chat.add(stream)

    def _chat_resume_point(self, last_event_id: str) -> int:
        """The id to replay after: ``Last-Event-ID`` if it names a message, else 0 (all)."""
        value = last_event_id.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= _MAX_ID_DIGITS):
            return 0
        after = int(value)
        return after if after <= self._chat_id else 0

    def chat_post(self, request: Request) -> Response:
        """Deliver the message here at once; with a broker, also to every other process.

        While Redis is down the post still succeeds (200): the message has
        reached this process's subscribers and its history, and the broker
        queues it (bounded) for the others. A 503 would invite a retry that
        this process's subscribers would see twice. ``broker`` in the reply
        says which: ``sent``, ``queued`` or ``refused`` (too large).
        """
        delivered = self._chat_deliver(request.body)
        reply: dict[str, Any] = {"id": self._chat_id, "delivered": delivered}
        if self.broker is not None:
            connected = self.broker.connected
            forwarded = self.chat.forward(request.body)
            reply["broker"] = "refused" if not forwarded else "sent" if connected else "queued"
        return Response.json(reply, headers=_NO_STORE)

    def _chat_joined(self, ws: WebSocket) -> None:
        """A WebSocket chat client: it gets what the event-stream clients get."""
        self.chat.add(ws)

    def _chat_said(self, ws: WebSocket, data: str | bytes) -> None:
        """A message sent over a WebSocket is posted as ``POST /chat`` posts it."""
        body = data.encode() if isinstance(data, str) else data
        self._chat_deliver(body)
        if self.broker is not None:
            self.chat.forward(body)

    def _chat_received(self, data: bytes) -> None:
        """A message posted to another process: numbered here, as a local one is."""
        self._chat_deliver(data)

    def _chat_deliver(self, body: bytes) -> int:
        # Ids number the messages in the order this process saw them: with a
        # broker, each process has its own numbering (see docs/broker.md).
        self._chat_id += 1
        text = body.decode("utf-8", "replace")
        frame = format_event(text, event="message", id=str(self._chat_id))
        self._remember(self._chat_id, frame)
        return self.chat.deliver(frame, text)  # the event to streams, the text to WebSockets

    def _remember(self, message_id: int, frame: bytes) -> None:
        """Keep ``frame`` in the history, dropping the oldest past either bound."""
        history = self._chat_history
        history.append((message_id, frame))
        self._chat_history_bytes += len(frame)
        while len(history) > CHAT_HISTORY_MESSAGES or self._chat_history_bytes > CHAT_HISTORY_BYTES:
            _, dropped = history.popleft()
            self._chat_history_bytes -= len(dropped)


def _echo(ws: WebSocket, data: str | bytes) -> None:
    ws.send(data)


def make_demo() -> Demo:
    """A new demo app."""
    return Demo()
