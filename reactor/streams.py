"""Long-lived responses: push streams, Server-Sent Events, and broadcasting.

A handler that returns a :class:`PushStream` (or a :class:`Response` whose
body is one) keeps its response open; loop callbacks and timers write to it
later with :meth:`PushStream.send` and end it with :meth:`PushStream.close`::

    clients = Broadcast()

    @app.route("/events")
    def events(request):
        stream = EventStream()
        clients.add(stream)          # removed again when the client leaves
        return stream

    def tick():                      # from a loop timer
        clients.send_event(time.ctime(), event="tick")

Flow control: :attr:`PushStream.writable` is False while the connection holds
more than its high-water mark of unsent output; :meth:`PushStream.on_drain`
is called when it falls below the low-water mark again. A producer that
respects them never makes the server buffer more than one high-water mark for
a slow client. :meth:`PushStream.on_close` learns that the stream ended, by
``close()`` or because the client went away.

A :class:`Broadcast` takes WebSockets (:class:`reactor.websocket.protocol.WebSocket`)
as well as push streams: one :meth:`Broadcast.send_event` reaches an SSE
client as an event and a WebSocket as one text message. The message is
framed once, uncompressed (RFC 7692 lets any message go uncompressed, so the
same bytes suit every socket, whatever it negotiated), and those same bytes
are queued to each socket.

This module imports no socket: a stream talks to its connection through the
small :class:`StreamSink` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from .http.bodies import BodySink, Producer, register_producer
from .websocket.frames import encode_message

if TYPE_CHECKING:
    from .loop import Loop, Timer

__all__ = ["Broadcast", "EventStream", "PushStream", "StreamClosed", "format_event"]


S = TypeVar("S", bound="PushStream | Socket")


class StreamClosed(Exception):
    """Raised by :meth:`PushStream.send` once the stream has ended."""


class StreamSink(Protocol):
    """What a connection offers a push stream it is sending."""

    @property
    def loop(self) -> Loop: ...
    def stream_write(self, data: bytes) -> None: ...
    def stream_end(self) -> None: ...
    def stream_writable(self) -> bool: ...


class PushStream:
    """A response body written to over time. See the module docs.

    Args:
        content_type: the ``Content-Type`` of the response it becomes.
    """

    __slots__ = ("content_type", "_sink", "_pending", "_state", "_on_close", "_on_drain", "_held")

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        self.content_type = content_type
        self._sink: StreamSink | None = None
        self._pending: list[bytes] | None = None  # sent before the connection took it
        self._state = "new"  # new -> open -> closed
        self._on_close: list[Callable[[PushStream], object]] | None = None
        self._on_drain: Callable[[PushStream], object] | None = None
        self._held = False  # writable said False; on_drain is owed

    # -- for producers -------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        """Queue ``data`` for the client (sent at once if the socket takes it).

        Raises:
            StreamClosed: the stream has ended (closed, or the client left).
            TypeError: ``data`` is neither bytes nor str (the stream is unharmed).
        """
        if self._state == "closed":
            raise StreamClosed("the stream is closed")
        if isinstance(data, str):
            data = data.encode()
        elif type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"a push stream sends bytes or str, not {type(data).__name__}")
            data = bytes(data)  # the caller may reuse its buffer
        if not data:
            return
        if self._sink is None:
            if self._pending is None:
                self._pending = []
            self._pending.append(data)
        else:
            self._sink.stream_write(data)

    def close(self) -> None:
        """End the response normally. Safe to call twice."""
        if self._state == "closed":
            return
        sink = self._sink
        self._finish()
        if sink is not None:
            sink.stream_end()

    @property
    def closed(self) -> bool:
        """Whether the stream has ended (closed, or the client went away)."""
        return self._state == "closed"

    @property
    def writable(self) -> bool:
        """False while the connection's unsent output is above its high-water mark."""
        if self._state == "closed":
            return False
        if self._sink is None or self._sink.stream_writable():
            return True
        self._held = True
        return False

    @property
    def loop(self) -> Loop | None:
        """The loop of the connection sending this stream (None until it starts)."""
        return self._sink.loop if self._sink is not None else None

    def on_close(self, callback: Callable[[PushStream], object]) -> None:
        """Call ``callback(stream)`` once when the stream ends, for any reason."""
        if self._state == "closed":
            callback(self)
            return
        if self._on_close is None:
            self._on_close = []
        self._on_close.append(callback)

    def on_drain(self, callback: Callable[[PushStream], object] | None) -> None:
        """Call ``callback(stream)`` when output held back (``writable`` was False)
        has drained below the low-water mark."""
        self._on_drain = callback

    # -- for the connection --------------------------------------------------

    def attach(self, sink: StreamSink) -> None:
        """The connection starts sending this stream."""
        if self._state != "new":
            raise RuntimeError("a push stream can be the body of one response only")
        self._sink = sink
        self._state = "open"
        self.started()
        pending, self._pending = self._pending, None
        for data in pending or ():
            sink.stream_write(data)

    def started(self) -> None:
        """Hook: the response has started (subclasses arm timers here)."""

    def drained(self) -> None:
        """The connection's output is at or below the low-water mark."""
        if self._held and self._state == "open":
            self._held = False
            if self._on_drain is not None:
                self._on_drain(self)

    def detach(self) -> None:
        """The connection is gone (or done): end the stream without writing."""
        if self._state != "closed":
            self._finish()

    def _finish(self) -> None:
        # Drop everything that may refer back to the stream (the sink holds
        # it as its body; a callback may be a closure over it): once ended,
        # the stream is freed by reference counting alone.
        self._state = "closed"
        self._sink = None
        self._pending = None
        self._on_drain = None
        callbacks, self._on_close = self._on_close, None
        for callback in callbacks or ():
            callback(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state}>"


def format_event(
    data: str = "", event: str | None = None, id: str | None = None, retry_ms: int | None = None
) -> bytes:
    """One Server-Sent Event, as the HTML standard's ``text/event-stream`` frames it.

    Multi-line ``data`` becomes one ``data:`` line per line (CRLF, CR and LF
    all end a line). ``event`` and ``id`` may not contain line breaks (and
    ``id`` no NUL), or a client would parse a different event.
    """
    lines = []
    if event is not None:
        _check_field("event", event)
        lines.append(f"event: {event}\n")
    if id is not None:
        _check_field("id", id)
        if "\0" in id:
            raise ValueError("an event id may not contain NUL")
        lines.append(f"id: {id}\n")
    if retry_ms is not None:
        lines.append(f"retry: {int(retry_ms)}\n")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}\n")
    lines.append("\n")
    return "".join(lines).encode()


def _check_field(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an event {name} may not contain a line break: {value!r}")


class EventStream(PushStream):
    """A ``text/event-stream`` response (Server-Sent Events).

    Args:
        heartbeat_s: send a comment line after this many seconds without an
            event, so that proxies and clients do not time the stream out
            (None: never).
    """

    __slots__ = ("heartbeat_s", "_heartbeat")

    def __init__(self, heartbeat_s: float | None = 15.0) -> None:
        super().__init__("text/event-stream")
        self.heartbeat_s = heartbeat_s
        self._heartbeat: Timer | None = None

    def send_event(
        self, data: str = "", event: str | None = None, id: str | None = None, retry_ms: int | None = None
    ) -> None:
        """Send one event (see :func:`format_event`)."""
        self.send(format_event(data, event, id, retry_ms))

    def comment(self, text: str = "") -> None:
        """Send a comment line, which clients ignore (a heartbeat)."""
        _check_field("comment", text)
        self.send(f": {text}\n\n".encode())

    def send(self, data: bytes | str) -> None:
        """Send raw stream bytes; any send postpones the next heartbeat."""
        super().send(data)
        if self._heartbeat is not None and self.heartbeat_s is not None and self._sink is not None:
            self._heartbeat.reset(self._sink.loop.now + self.heartbeat_s)

    def started(self) -> None:
        if self.heartbeat_s is not None and self._sink is not None:
            loop = self._sink.loop
            self._heartbeat = loop.timer(self._beat)
            self._heartbeat.reset(loop.now + self.heartbeat_s)

    def _beat(self) -> None:
        if not self.closed:
            self.comment()

    def _finish(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.release()  # its callback is this stream's _beat
            self._heartbeat = None
        super()._finish()


class Socket(Protocol):
    """What a :class:`Broadcast` needs of a WebSocket subscriber."""

    @property
    def writable(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def send_frame(self, frame: bytes) -> bool: ...
    def on_close(self, callback: Callable[[Any], object]) -> None: ...


class Relay(Protocol):
    """What :meth:`Broadcast.link` needs: a broker such as :class:`reactor.broker.Broker`."""

    def subscribe(self, channel: str, handler: Callable[[bytes], object]) -> None: ...
    def publish(self, channel: str, data: bytes) -> bool: ...


class Broadcast:
    """A set of streams that receive the same messages.

    A stream leaves the set by itself when it ends. A subscriber that is not
    :attr:`~PushStream.writable` (its client reads too slowly) misses the
    message instead of making the server buffer it: ``skipped`` counts those.

    :meth:`link` shares the broadcast with other processes through a broker:
    :meth:`publish` then sends to the local subscribers and to the others.
    """

    __slots__ = ("streams", "sockets", "skipped", "_every", "_ticker", "_relay", "_channel")

    def __init__(self) -> None:
        self.streams: set[PushStream] = set()
        #: The WebSocket subscribers.
        self.sockets: set[Socket] = set()
        self.skipped = 0
        self._every: tuple[Loop, float, Callable[[], object]] | None = None
        self._ticker: Timer | None = None
        self._relay: Relay | None = None
        self._channel = ""

    def link(self, relay: Relay, channel: str, receive: Callable[[bytes], object] | None = None) -> None:
        """Share this broadcast with other processes through ``relay`` on ``channel``.

        What other processes publish on the channel goes to ``receive(data)``
        (by default :meth:`send`: straight to the local subscribers).
        """
        self._relay = relay
        self._channel = channel
        relay.subscribe(channel, receive if receive is not None else self.send)

    def forward(self, data: bytes) -> bool:
        """Publish ``data`` to the other processes only; False if not linked or refused."""
        return self._relay is not None and self._relay.publish(self._channel, data)

    def publish(self, data: bytes) -> int:
        """:meth:`send` to the local subscribers, then :meth:`forward`; returns :meth:`send`'s count."""
        delivered = self.send(data)
        self.forward(data)
        return delivered

    def add(self, stream: S) -> S:
        """Subscribe ``stream`` (a push stream or a WebSocket); returns it."""
        if isinstance(stream, PushStream):
            self.streams.add(stream)
        else:
            self.sockets.add(cast(Socket, stream))
        stream.on_close(self._remove)
        if self._every is not None and self._ticker is None:
            loop, interval_s, _ = self._every
            self._ticker = loop.timer(self._tick)
            self._ticker.reset(loop.time() + interval_s)
        return stream

    def _remove(self, stream: Any) -> None:
        self.streams.discard(stream)
        self.sockets.discard(stream)
        if not self.streams and not self.sockets and self._ticker is not None:
            self._ticker.release()  # its callback is this broadcast's _tick
            self._ticker = None

    def every(self, loop: Loop, interval_s: float, callback: Callable[[], object]) -> None:
        """Call ``callback()`` every ``interval_s`` while there are subscribers.

        One timer serves them all, and it runs only while the set is not empty:
        a clock, a ticker or a live view costs nothing when nobody listens.
        """
        self._every = (loop, interval_s, callback)

    @property
    def ticking(self) -> bool:
        """Whether the :meth:`every` timer is running."""
        return self._ticker is not None

    def _tick(self) -> None:
        assert self._every is not None and self._ticker is not None
        loop, interval_s, callback = self._every
        callback()
        if self._ticker is not None:
            self._ticker.reset(loop.time() + interval_s)

    def __len__(self) -> int:
        return len(self.streams) + len(self.sockets)

    def send(self, data: bytes | str) -> int:
        """Send ``data`` to every writable subscriber: as it is to a push
        stream, as one message to a WebSocket (text for ``str``, binary for
        ``bytes``); returns how many got it."""
        return self.deliver(data, data)

    def send_event(
        self, data: str = "", event: str | None = None, id: str | None = None, retry_ms: int | None = None
    ) -> int:
        """Send one event to every writable :class:`EventStream`, and ``data``
        as a text message to every writable WebSocket; returns how many got it."""
        return self.deliver(format_event(data, event, id, retry_ms), data)

    def deliver(self, stream_data: bytes | str, message: bytes | str) -> int:
        """``stream_data`` to the push streams and ``message`` to the WebSockets,
        framed once for all of them; returns how many subscribers got it."""
        delivered = 0
        for stream in list(self.streams):
            if stream.writable:
                stream.send(stream_data)
                delivered += 1
            elif not stream.closed:
                self.skipped += 1
        if self.sockets:
            frame = encode_message(message)  # once, uncompressed: valid on every socket
            for socket in list(self.sockets):
                if socket.writable:
                    socket.send_frame(frame)
                    delivered += 1
                elif not socket.closed:
                    self.skipped += 1
        return delivered

    def close(self) -> None:
        """End every subscriber's stream, and close every WebSocket (1001 Going Away)."""
        for stream in list(self.streams):
            stream.close()
        for socket in list(self.sockets):
            cast(Any, socket).close(1001)

    def __iter__(self) -> Iterator[PushStream]:
        return iter(list(self.streams))


class _PushProducer(Producer):
    """A push stream as a response body: its owner writes, the sink never pulls."""

    __slots__ = ()

    pushed = True
    body: PushStream

    def start(self, sink: BodySink) -> None:
        # The connection that sends a push stream is also its StreamSink.
        self.body.attach(cast(StreamSink, sink))

    def produce(self, sink: BodySink) -> bool:
        return False  # never pulled

    def drained(self) -> None:
        self.body.drained()

    def close(self) -> None:
        self.body.detach()


register_producer(PushStream, _PushProducer)
