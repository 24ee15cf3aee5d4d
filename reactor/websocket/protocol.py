"""The WebSocket protocol over a transport, after the HTTP connection hands it over.

Theory of operation
-------------------
The HTTP/1.1 :class:`~reactor.connection.Connection` answers an accepted
handshake with ``101 Switching Protocols``, moves to ``UPGRADED`` and hands
its transport to a :class:`WebSocket` with
:meth:`~reactor.transport.Transport.set_protocol`; bytes that arrived behind
the request head go straight to :meth:`WebSocket.data_received`. From then on
the transport calls the WebSocket, which feeds the codec
(:class:`reactor.websocket.frames.Reader`) and calls the handler on the loop
thread. The HTTP connection stays in the server's registry, in ``UPGRADED``,
until the WebSocket closes: so graceful shutdown, the connection limit and the
counts by state see it.

A WebSocket is always in one :class:`WSState`; :meth:`WebSocket._move` looks
each move up in :data:`WS_TRANSITIONS`::

    OPEN ──close sent (close(), a protocol error, shutdown)──> CLOSING
    OPEN ──close received (answered at once)─────────────────> CLOSING
    CLOSING ──close (the TCP connection is closed)───────────> CLOSED
    OPEN ──close (the peer vanished, a timeout)──────────────> CLOSED

In ``CLOSING`` after sending a Close, the WebSocket waits for the peer's Close
at most ``ws_close_timeout_s``, reading (and dropping) anything else; on the
peer's Close the server closes the TCP connection first (RFC 6455 §7.1.1).

Timers: idle WebSockets share one :class:`Heartbeat` per loop, the way idle
HTTP connections share :class:`~reactor.connection.KeepAlive`: each socket
waits in an ordered dict, quiet ones by when they were last heard from, pinged
ones by when the ping left; every socket has the same interval and timeout, so
that order is their deadlines' order and one timer (for the oldest) serves them
all. A socket that sends anything (a pong, a message) goes back to the end of
the quiet queue: a dict pop and a store per read. One that does not answer a
ping within ``ws_ping_timeout_s`` is cut. The close timer is the socket's own,
made only while closing. The write timeout is the transport's: a client that
never reads is cut when its output makes no progress for ``write_timeout_s``.

Backpressure: while the transport holds more than ``write_high_water_bytes``
unsent, :attr:`WebSocket.writable` is False and nothing more is read from the
client (an echo to a client that does not read cannot grow the buffer); once
it drains below ``write_low_water_bytes`` the handler's ``on_drain(ws)`` runs.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..http.cookies import parse_cookie_header
from ..http.fields import MAX_FIELDS, MultiDict, parse_urlencoded
from ..http.request import Headers, Request
from ..log import error_log, escape
from .frames import Close, Message, Ping, Reader, WebSocketError, close_frame, encode_message, pong
from .frames import ping as ping_frame

if TYPE_CHECKING:
    from ..config import Config
    from ..loop import Loop, Timer
    from ..transport import Transport

__all__ = ["WS_TRANSITIONS", "HandshakeRequest", "Heartbeat", "WSState", "WebSocket", "WebSocketClosed"]


class WSState(enum.Enum):
    """Where a WebSocket is in its life."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"

    __hash__ = object.__hash__  # identity, as connection.State does


OPEN = WSState.OPEN
CLOSING = WSState.CLOSING
CLOSED = WSState.CLOSED

#: Every allowed move: ``(state, event) -> next state``.
WS_TRANSITIONS: dict[tuple[WSState, str], WSState] = {
    (OPEN, "close sent"): CLOSING,
    (OPEN, "close received"): CLOSING,
    (CLOSING, "close"): CLOSED,
    (OPEN, "close"): CLOSED,
}

# RFC 6455 §7.4.1 codes the server sends itself.
_NORMAL = 1000
_GOING_AWAY = 1001
_ABNORMAL = 1006
_INTERNAL_ERROR = 1011


class HandshakeRequest:
    """What a WebSocket keeps of its upgrade request, as ``ws.request``.

    The request's own attributes a handler reads (``path``, ``params``,
    ``headers``, ``query``, ``cookies``, ``client``, ``scheme``, ``host``,
    ``route``, ``method``, ``target``, ``version``) and none of its body or
    framing: an idle socket holds it for its whole life, and a
    :class:`~reactor.http.request.Request` has twice the slots.
    """

    __slots__ = (
        "method",
        "target",
        "path",
        "query_string",
        "version",
        "_headers",
        "host",
        "client",
        "scheme",
        "params",
        "route",
        "_query",
    )

    def __init__(self, request: Request, fields: tuple[tuple[str, str], ...]) -> None:
        # The handshake is a GET: the shared constant, not the parsed copy.
        self.method = "GET" if request.method == "GET" else request.method
        # A fixed route's path and target, equal to its pattern, are kept as the
        # table's one string, not as each request's own copy.
        path = request.path
        if path == request.route:
            path = request.route
        self.target = path if request.target == path else request.target
        self.path = path
        self.query_string = request.query_string
        self.version = request.version
        # The kept fields as an exactly sized tuple; the Headers around them is
        # made when a handler first reads ws.request.headers (most never do).
        self._headers: tuple[tuple[str, str], ...] | Headers = fields
        self.host = request.host
        self.client = request.client
        self.scheme = request.scheme
        self.params: Mapping[str, str] = request.params
        self.route = request.route
        self._query: MultiDict[str] | None = None

    @property
    def headers(self) -> Headers:
        """As :attr:`Request.headers <reactor.http.request.Request.headers>`, less the handshake's fields."""
        headers = self._headers
        if isinstance(headers, tuple):
            headers = self._headers = Headers(list(headers))
        return headers

    @property
    def query(self) -> MultiDict[str]:
        """As :attr:`Request.query <reactor.http.request.Request.query>`."""
        if self._query is None:
            self._query = parse_urlencoded(self.query_string, max_fields=MAX_FIELDS, status=400)
        return self._query

    @property
    def cookies(self) -> dict[str, str]:
        """As :attr:`Request.cookies <reactor.http.request.Request.cookies>` (parsed at each use)."""
        cookies = self.headers.get_all("cookie")
        return parse_cookie_header("; ".join(cookies)) if cookies else {}

    def __repr__(self) -> str:
        return f"<HandshakeRequest {self.method} {self.target!r} {self.version}>"


class WebSocketClosed(Exception):
    """Raised by :meth:`WebSocket.send` once a Close has been sent or received."""


class Handler(Protocol):
    """What a WebSocket route's handler object may have (every method is optional)."""

    def on_open(self, ws: WebSocket) -> object: ...
    def on_message(self, ws: WebSocket, data: str | bytes) -> object: ...
    def on_close(self, ws: WebSocket, code: int, reason: str) -> object: ...
    def on_drain(self, ws: WebSocket) -> object: ...


class Upgraded(Protocol):
    """What the WebSocket needs from the HTTP connection that handed it over."""

    @property
    def loop(self) -> Loop: ...
    @property
    def config(self) -> Config: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


class WebSocket:
    """One open WebSocket: the transport's protocol and the handler's handle. See the module docs.

    Attributes:
        request: the upgrade request (``request.params`` holds the path parameters).
        subprotocol: the subprotocol chosen in the handshake, or None.
        origin: the client's ``Origin``, or None.
    """

    __slots__ = (
        "transport",
        "connection",
        "loop",
        "handler",
        "request",
        "subprotocol",
        "origin",
        "state",
        "seen",
        "_reader",
        "_max_message",
        "_deflate",
        "_heartbeat",
        "_close_timer",
        "_code",
        "_reason",
        "_watchers",
        "__weakref__",
    )

    def __init__(
        self,
        connection: Upgraded,
        handler: Any,
        request: Request | HandshakeRequest,
        *,
        max_message: int,
        subprotocol: str | None = None,
        origin: str | None = None,
        deflate: Any = None,
    ) -> None:
        self.connection = connection
        self.loop = connection.loop
        self.handler = handler
        self.request = request
        self.subprotocol = subprotocol
        self.origin = origin
        self.state = OPEN
        #: When the peer was last heard from (or pinged), by the loop's clock.
        self.seen = self.loop.now
        # The codec's reader, made when the client first sends something: a
        # socket that only listens (a broadcast's subscriber) never pays for one.
        self._reader: Reader | None = None
        self._max_message = max_message
        self._deflate = deflate
        self._heartbeat = heartbeat_for(self.loop, connection.config)
        self._close_timer: Timer | None = None
        self._code = _ABNORMAL  # what on_close reports, unless a Close says otherwise
        self._reason = ""
        # on_close callbacks: one (the common case: a broadcast), a list of more, or None.
        self._watchers: Callable[[WebSocket], object] | list[Callable[[WebSocket], object]] | None = None

    @property
    def config(self) -> Config:
        """The server's settings (the HTTP connection's: one slot less on every socket)."""
        return self.connection.config

    def __repr__(self) -> str:
        return f"<WebSocket {self.state.name} {escape(self.request.path)}>"

    # -- the handler's side ----------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send one message: text for ``str``, binary for ``bytes``.

        Raises:
            WebSocketClosed: a Close has been sent or received.
        """
        if self.state is not OPEN:
            raise WebSocketClosed(f"the WebSocket is {self.state.value}")
        self.transport.write(encode_message(data, self._deflate))

    def send_text(self, text: str) -> None:
        """Send a text message."""
        if not isinstance(text, str):
            raise TypeError(f"send_text takes a str, not {type(text).__name__}")
        self.send(text)

    def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_bytes takes bytes, not {type(data).__name__}")
        self.send(bytes(data))

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already framed message (a broadcast frames once for every
        socket); False if this socket is not open."""
        if self.state is not OPEN:
            return False
        self.transport.write(frame)
        return True

    def close(self, code: int = _NORMAL, reason: str = "") -> None:
        """Start the close handshake: send a Close, wait ``ws_close_timeout_s``
        for the peer's. Safe to call twice."""
        if self.state is not OPEN:
            return
        self._move("close sent")
        self._code, self._reason = code, reason
        self.transport.write(close_frame(code, reason))
        timer = self._close_timer = self.loop.timer(self._close_timed_out)
        timer.reset(self.loop.now + self.config.ws_close_timeout_s)
        self._heartbeat.discard(self)

    def on_close(self, callback: Callable[[WebSocket], object]) -> None:
        """Call ``callback(ws)`` once the socket has closed (a :class:`~reactor.streams.Broadcast`
        drops it so); at once if it has."""
        if self.state is CLOSED:
            callback(self)
            return
        watchers = self._watchers
        if watchers is None:
            self._watchers = callback
        elif isinstance(watchers, list):
            watchers.append(callback)
        else:
            self._watchers = [watchers, callback]

    @property
    def buffered(self) -> int:
        """Bytes queued for this client and not yet sent."""
        return self.transport.buffered if self.state is not CLOSED else 0

    @property
    def writable(self) -> bool:
        """False while the unsent output is above ``write_high_water_bytes``
        (or the socket is closing): wait for ``on_drain``."""
        high_water = self.connection.config.write_high_water_bytes
        return self.state is OPEN and self.transport.buffered <= high_water

    @property
    def closed(self) -> bool:
        """Whether a Close has been sent or received (nothing more can be sent)."""
        return self.state is not OPEN

    def shutdown(self) -> None:
        """Graceful shutdown of the server: close with 1001 Going Away."""
        self.close(_GOING_AWAY, "server shutting down")

    # -- the state machine -------------------------------------------------------

    def _move(self, event: str) -> None:
        new = WS_TRANSITIONS.get((self.state, event))
        if new is None:
            raise RuntimeError(f"can't go from {self.state.name} on {event!r}")
        self.state = new

    # -- what the transport calls ------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._heartbeat.heard(self)
        self._call("on_open")

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is CLOSED:
            return
        if state is OPEN:
            self._heartbeat.heard(self)
        reader = self._reader
        if reader is None:
            reader = self._reader = Reader(max_message=self._max_message, deflate=self._deflate)
        try:
            events = reader.feed(data)
        except WebSocketError as exc:
            # The reader keeps the error to raise it again; its traceback would
            # hold this frame, and so this socket, in a cycle with the reader.
            exc.__traceback__ = None
            # What the client sent correctly before the violation is still handled.
            self._handle(exc.events)
            if self.state is not CLOSED:
                self._fail(exc.code, exc.reason)
            return
        self._handle(events)

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if self.state is not OPEN and event.__class__ is not Close:
                continue  # closing: only the peer's Close matters now
            cls = event.__class__
            if cls is Message:
                self._call("on_message", event.data)
            elif cls is Ping:
                self.transport.write(pong(event.payload))
            elif cls is Close:
                self._close_received(event.code, event.reason)
                return
            # A Pong: being heard from is all it says.

    def eof_received(self) -> None:
        """The peer stopped sending without a Close (or after ours, unanswered)."""
        self.transport.abort()

    def pause_writing(self) -> None:
        """Too much unsent output: read nothing more until it drains."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.state is CLOSED:
            return
        self.transport.resume_reading()
        if self.state is OPEN:
            self._call("on_drain")

    def resume_producing(self) -> None:
        """Never registered as a producer."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is CLOSED:
            return
        self._move("close")
        self._heartbeat.discard(self)
        if self._close_timer is not None:
            self._close_timer.release()  # it calls back into this socket
            self._close_timer = None
        self._reader = _CLOSED_READER  # its buffers and inflater go at once
        try:
            self._call("on_close", self._code, self._reason)
            watchers, self._watchers = self._watchers, None
            for callback in watchers if isinstance(watchers, list) else (watchers,) if watchers else ():
                callback(self)
        finally:
            self.connection.connection_lost(exc)

    # -- closing -------------------------------------------------------------------

    def _close_received(self, code: int, reason: str) -> None:
        """The peer's Close (``code`` 1005 when it had none): answered with the
        same code (RFC 6455 §5.5.1) unless ours went first; then the server
        closes the TCP connection first (§7.1.1)."""
        if self.state is OPEN:
            self._move("close received")
            self._heartbeat.discard(self)
            self.transport.write(close_frame(code))  # 1005: an empty Close, as the peer's
        self._code = code
        self._reason = reason
        self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error (RFC 6455 §7.1.7): send a Close with its code, then close."""
        error_log.info(
            "websocket %s from %s: %d %s",
            escape(self.request.path),
            self.request.client[0] if self.request.client else "?",
            code,
            escape(reason),
        )
        if self.state is OPEN:
            self._move("close sent")
            self._code, self._reason = code, reason
            self.transport.write(close_frame(code, reason))
        # The client may still be sending: drain it, so that it reads our Close, not a reset.
        self.transport.close(linger=True)

    def _close_timed_out(self) -> None:
        error_log.info("websocket close timeout from %s", escape(self.request.path))
        self.transport.abort(TimeoutError("websocket close timeout"))

    def ping_timed_out(self) -> None:
        """The peer has not answered a ping within ``ws_ping_timeout_s``: cut it."""
        error_log.info(
            "websocket ping timeout from %s",
            self.request.client[0] if self.request.client else "?",
        )
        self.transport.abort(TimeoutError("websocket ping timeout"))

    def send_ping(self) -> None:
        """The heartbeat's ping."""
        self.transport.write(ping_frame(b""))

    # -- calling the handler ----------------------------------------------------

    def _call(self, name: str, *args: Any) -> None:
        method = getattr(self.handler, name, None)
        if method is None:
            return
        try:
            method(self, *args)
        except Exception:
            error_log.exception("websocket handler %s failed for %s", name, escape(self.request.path))
            if name != "on_close" and self.state is OPEN:
                self._fail(_INTERNAL_ERROR, "handler failed")


class _ClosedReader:
    """The reader of a closed socket: it hears nothing."""

    def feed(self, data: bytes) -> list[Any]:
        return []


_CLOSED_READER: Any = _ClosedReader()


_ABSENT = object()


class Heartbeat:
    """The open WebSockets of one loop, by when they were last heard from. See the module docs.

    ``quiet`` holds the sockets heard from within the ping interval, oldest
    first; ``pinged`` those sent a ping and not yet heard from, oldest ping
    first. One timer, released when both are empty, serves them all.
    """

    __slots__ = ("_loop", "interval_s", "timeout_s", "quiet", "pinged", "_timer", "_armed_for", "__weakref__")

    def __init__(self, loop: Loop, interval_s: float, timeout_s: float) -> None:
        # Weakly: the heartbeat is the value of a weak-keyed dict whose key is the loop.
        self._loop = weakref.ref(loop)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.quiet: dict[WebSocket, None] = {}
        self.pinged: dict[WebSocket, None] = {}
        self._timer: Timer | None = None
        self._armed_for = 0.0  # the deadline the timer is set for (0: not armed)

    def __len__(self) -> int:
        return len(self.quiet) + len(self.pinged)

    def heard(self, ws: WebSocket) -> None:
        """``ws`` sent something: to the end of the quiet queue."""
        ws.seen = now = ws.loop.now
        quiet = self.quiet
        if quiet.pop(ws, _ABSENT) is _ABSENT:
            self.pinged.pop(ws, None)
        quiet[ws] = None
        if not self._armed_for:
            self._arm(now + self.interval_s)

    def discard(self, ws: WebSocket) -> None:
        """``ws`` is closing: no more pings."""
        if self.quiet.pop(ws, _ABSENT) is _ABSENT:
            self.pinged.pop(ws, None)
        if not self.quiet and not self.pinged:
            self._release()

    def _arm(self, when: float) -> None:
        timer = self._timer
        if timer is None:
            loop = self._loop()
            assert loop is not None  # a socket of this loop is open
            timer = self._timer = loop.timer(self._expire)
        timer.reset(when)
        self._armed_for = when

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.release()  # it calls back into the heartbeat
            self._timer = None
        self._armed_for = 0.0

    def _expire(self) -> None:
        loop = self._loop()
        assert loop is not None  # it is running this timer
        now = loop.now
        self._armed_for = 0.0
        quiet, pinged = self.quiet, self.pinged
        late = []
        for ws in pinged:
            if ws.seen + self.timeout_s > now:
                break
            late.append(ws)
        due = []
        for ws in quiet:
            if ws.seen + self.interval_s > now:
                break
            due.append(ws)
        for ws in due:
            del quiet[ws]
            pinged[ws] = None
            ws.seen = now
            ws.send_ping()
        for ws in late:
            pinged.pop(ws, None)
            ws.ping_timed_out()
        deadlines = []
        if quiet:
            deadlines.append(next(iter(quiet)).seen + self.interval_s)
        if pinged:
            deadlines.append(next(iter(pinged)).seen + self.timeout_s)
        if deadlines:
            self._arm(min(deadlines))
        else:
            self._release()


# One heartbeat per loop and (interval, timeout): a server has one loop and one
# config, so in practice one heartbeat, made with its first WebSocket.
_HEARTBEATS: weakref.WeakKeyDictionary[Loop, dict[tuple[float, float], Heartbeat]] = (
    weakref.WeakKeyDictionary()
)


def heartbeat_for(loop: Loop, config: Config) -> Heartbeat:
    """The shared :class:`Heartbeat` of ``loop`` for ``config``'s ping interval and timeout."""
    beats = _HEARTBEATS.get(loop)
    if beats is None:
        beats = _HEARTBEATS[loop] = {}
    key = (config.ws_ping_interval_s, config.ws_ping_timeout_s)
    beat = beats.get(key)
    if beat is None:
        beat = beats[key] = Heartbeat(loop, *key)
    return beat


HandlerFactory = Callable[[], Any]
