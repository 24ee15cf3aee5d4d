"""One client connection: the state machine, its buffers and its timers.

Theory of operation
-------------------
A connection is always in one :class:`State`. The only way to change it is
:meth:`Connection._move`, which looks the move up in :data:`TRANSITIONS` and
refuses any move the table does not hold::

    IDLE ──data──> READING_HEADERS ──head (body follows)──> READING_BODY
                        │                                       │
                        └──────────request complete─────────────┴──> WRITING
    WRITING ──response queued, keep-alive──> IDLE
    WRITING ──output flushed, closing──> CLOSED
    any state ──close (error, timeout, peer gone, shutdown)──> CLOSED

Everything else follows from the state, in :meth:`Connection._sync`, which
runs once at the end of every I/O callback:

* the selector mask: reading states watch ``EVENT_READ``; ``EVENT_WRITE`` is
  watched only while output is pending; ``modify()`` runs only when the mask
  changes;
* the state's timer: ``IDLE`` arms the keep-alive timeout, ``READING_HEADERS``
  the header deadline (counted from the first byte, never refreshed),
  ``READING_BODY`` the gap between body reads; neither of the last two past
  the request deadline (``request_timeout_s`` from the request's first byte).
  One :class:`~reactor.loop.Timer` per connection is reset, never re-created,
  and released when the connection closes.

Output is queued and sent at once; what the socket does not take waits for
``EVENT_WRITE``. Pipelined requests that are already buffered are answered in
order in the same pass, their responses coalesced into one ``send``, while the
queued output stays under ``write_high_water_bytes``. Above it the connection
stays in ``WRITING`` and reads nothing until the output drains below
``write_low_water_bytes``: a client that pipelines without reading cannot make
the server buffer without bound.

This is the only module that calls ``recv`` and ``send`` on a client socket.
"""

from __future__ import annotations

import enum
import errno
import os
import socket
from collections import deque
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

from .http.errors import LocalProtocolError, ProtocolError
from .http.parser import Event, RequestParser
from .http.request import Request
from .http.response import FileBody, Response, body_allowed, encode_head, informational
from .log import access, access_log, error_log, escape
from .loop import EVENT_READ, EVENT_WRITE, Loop, Timer
from .streams import PushStream

if TYPE_CHECKING:
    from .config import Config
    from .metrics import Metrics

__all__ = ["MOVE_COUNTERS", "TRANSITIONS", "Application", "Connection", "State", "count_by_state"]


class State(enum.Enum):
    """Where a connection is in its request/response cycle."""

    IDLE = "idle"
    READING_HEADERS = "reading headers"
    READING_BODY = "reading body"
    WRITING = "writing"
    CLOSED = "closed"

    # Members are singletons compared by identity, so identity hashing is
    # right; it is also C-level, where Enum's own __hash__ runs Python code on
    # every TRANSITIONS look-up (three a request).
    __hash__ = object.__hash__


IDLE = State.IDLE
READING_HEADERS = State.READING_HEADERS
READING_BODY = State.READING_BODY
WRITING = State.WRITING
CLOSED = State.CLOSED

#: Every allowed move: ``(state, event) -> next state``. ``docs/state-machine.md``
#: draws its diagram from this table.
TRANSITIONS: dict[tuple[State, str], State] = {
    (IDLE, "data"): READING_HEADERS,
    (READING_HEADERS, "head"): READING_BODY,
    (READING_HEADERS, "request"): WRITING,
    (READING_BODY, "request"): WRITING,
    (READING_HEADERS, "reject"): WRITING,
    (READING_BODY, "reject"): WRITING,
    (WRITING, "keep-alive"): IDLE,
    (IDLE, "close"): CLOSED,
    (READING_HEADERS, "close"): CLOSED,
    (READING_BODY, "close"): CLOSED,
    (WRITING, "close"): CLOSED,
}

# The same moves, numbered: (state, event) -> (next state, its number). Each
# move a connection makes adds one to its owner's ``Metrics.moves[number]``
# (one list increment); connections by state follow from those counts (see
# count_by_state) without walking the connections. The last number counts
# connections opened, in READING_HEADERS.
_MOVES = {key: (new, number) for number, (key, new) in enumerate(TRANSITIONS.items())}
_OPENED = len(_MOVES)
#: How many counters ``Metrics.moves`` needs.
MOVE_COUNTERS = _OPENED + 1


def count_by_state(moves: list[int]) -> dict[State, int]:
    """Connections in each state, from the counts of the moves they made.

    O(number of transitions), whatever the number of connections. A closed
    connection stays counted in CLOSED.
    """
    counts = dict.fromkeys(State, 0)
    counts[READING_HEADERS] = moves[_OPENED]
    for (state, _), (new, number) in _MOVES.items():
        made = moves[number]
        counts[state] -= made
        counts[new] += made
    return counts


# Bodies up to this size are copied behind the head so that one send() carries
# both; larger ones are queued as they are and sent with sendmsg().
_COALESCE_BYTES = 16384
# Resets and broken pipes are the peer leaving: logged at debug level only.
_IOV_MAX = 512
# Rounds of send-and-pull per flush, and pieces pulled from an iterator per
# round: bounds on how long one connection keeps the loop.
_FLUSH_ROUNDS = 8
_PULLS_PER_ROUND = 64
# Largest single sendfile() step.
_SENDFILE_BYTES = 1 << 22
_DISCONNECTED = frozenset((errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT))


class Application(Protocol):
    """What a connection needs from the app: a response for each request."""

    def handle(self, request: Request) -> Response:
        """The response to ``request`` (the body has been read)."""
        ...

    def respond_early(self, request: Request) -> Response | None:
        """A final response to send instead of ``100 Continue``, or None."""
        ...


class ConnectionOwner(Protocol):
    """What a connection needs from the server that accepted it."""

    @property
    def accepting(self) -> bool: ...
    @property
    def metrics(self) -> Metrics: ...
    def connection_closed(self, connection: Connection) -> None: ...
    def linger(self, sock: socket.socket) -> None: ...


class Connection:
    """The state machine for one accepted socket. See the module docs."""

    __slots__ = (
        "sock",
        "client",
        "state",
        "loop",
        "config",
        "app",
        "owner",
        "parser",
        "request",
        "_out",
        "_out_bytes",
        "_mask",
        "_timer",
        "_timer_armed_for",
        "_write_timer",
        "_closing",
        "_started",
        "_body",
        "_moves",
        "__weakref__",
    )

    def __init__(
        self,
        sock: socket.socket,
        client: tuple[str, int],
        loop: Loop,
        config: Config,
        app: Application,
        owner: ConnectionOwner,
    ) -> None:
        self.sock = sock
        self.client = client
        self.loop = loop
        self.config = config
        self.app = app
        self.owner = owner
        self.parser = RequestParser(config)
        self.request: Request | None = None
        # Pending output; None when empty, so an idle connection owns no buffer.
        self._out: deque[bytes | memoryview] | None = None
        self._out_bytes = 0
        # Its one state timer calls the connection itself, with no mask.
        self._timer: Timer = loop.timer(self)
        self._timer_armed_for: State | None = None
        self._write_timer: Timer | None = None
        self._closing = False  # the current response is the last one
        # When the current request began: its first byte (or accept, until
        # one arrives). The request deadline and the logged duration run from it.
        self._started = loop.now
        # A body being streamed after the queued output (None otherwise).
        self._body: _Streaming | None = None
        # A new connection is waiting for a request head: the header deadline
        # runs from accept (an idle preconnect is closed at that deadline).
        self.state = READING_HEADERS
        # The owner's counts of moves made, kept by _move (see count_by_state).
        self._moves = owner.metrics.moves
        self._moves[_OPENED] += 1
        self._mask = 0  # not in the selector yet: see start()

    def start(self) -> None:
        """Begin: read at once, then watch the socket (its owner has it registered).

        Clients send their request right after connecting, so it has often
        arrived by the time it is accepted. A connection answered and closed
        here never enters the selector at all.
        """
        try:
            self._read()
            if self.state is not CLOSED:
                # The connection is its own selector handler (see __call__): no
                # bound method object per socket.
                self._sync()
        except Exception as exc:
            self._crashed(exc)

    def __repr__(self) -> str:
        fd = self.sock.fileno()
        return f"<Connection fd={fd} {self.state.name} in={self.parser.buffered}B out={self._out_bytes}B>"

    # -- the state machine -------------------------------------------------

    def _move(self, event: str) -> None:
        """Make the move ``event`` from the current state, or refuse it."""
        move = _MOVES.get((self.state, event))
        if move is None:
            raise LocalProtocolError(f"can't go from {self.state.name} on {event!r}")
        self.state, number = move
        self._moves[number] += 1
        self._timer_armed_for = None

    def _sync(self) -> None:
        """Make the selector mask and the state's timer follow the state."""
        state = self.state
        if state is CLOSED:
            return
        parser = self.parser
        body = self._body
        if body is None:
            mask = 0 if state is WRITING or parser.eof else EVENT_READ
            if self._out_bytes:
                mask |= EVENT_WRITE
        else:
            pushed = isinstance(body.producer, PushStream)
            # A push stream's connection reads only to notice the client leaving.
            reading = pushed and not parser.eof and parser.buffered <= self.config.max_head_bytes
            mask = EVENT_READ if reading else 0
            if self._out_bytes or not pushed:
                mask |= EVENT_WRITE
        if mask != self._mask:
            # A selector cannot watch for nothing: an empty mask unregisters.
            if not mask:
                self.loop.unregister(self.sock)
            elif not self._mask:
                self.loop.register(self.sock, mask, self)
            else:
                self.loop.modify(self.sock, mask, self)
            self._mask = mask
        if self._timer_armed_for is not state:
            self._timer_armed_for = state
            config = self.config
            now = self.loop.now
            if state is IDLE:
                self._timer.reset(now + config.keepalive_timeout_s)
            elif state is READING_HEADERS:
                deadline = self._started + config.request_timeout_s
                self._timer.reset(min(now + config.header_timeout_s, deadline))
            elif state is READING_BODY:
                # The body's gap timer, but never past the request's deadline.
                deadline = self._started + config.request_timeout_s
                self._timer.reset(min(now + config.body_timeout_s, deadline))
            else:
                self._timer.cancel()

    # -- I/O ---------------------------------------------------------------

    def __call__(self, mask: int = 0) -> None:
        """The selector's handler (the socket is ready for ``mask``), and the
        state timer's callback (no mask: nothing is ready, time is up).

        Being its own callback spares every connection two bound-method
        objects, which is most of what an idle connection would otherwise add.
        """
        try:
            if not mask:
                self._on_timeout()
                return
            if mask & EVENT_WRITE:
                self._write_ready()
            if mask & EVENT_READ and self.state is not CLOSED:
                if self.state is WRITING:
                    self._read_while_streaming()
                else:
                    self._read()
            if self.state is not CLOSED:
                self._sync()
        except Exception as exc:
            self._crashed(exc)

    def _crashed(self, exc: Exception) -> None:
        """The last line of defence: an error nothing else handled closes the
        connection (and is logged), so that it is not left open with no timer."""
        error_log.error("connection with %s failed: %s", self._client(), _describe(exc), exc_info=exc)
        self.close()

    def _write_ready(self) -> None:
        """Send what can be sent; then take up the next request if it was held."""
        self._flush()
        if self._drained_after_backpressure():
            self._next_cycle()
            self._process()

    def _drained_after_backpressure(self) -> bool:
        """Whether a response held in WRITING (by the high-water mark) is done."""
        return (
            self.state is WRITING
            and self.request is None
            and self._body is None
            and not self._closing
            and self._out_bytes <= self.config.write_low_water_bytes
        )

    def _next_cycle(self) -> None:
        """The response is queued and may persist: wait for the next request."""
        self._move("keep-alive")
        self.parser.start_next_cycle()
        if self.parser.buffered:
            self._move("data")
            self._started = self.loop.now

    def _recv(self) -> bytes | None:
        """One ``recv``: the bytes (``b""`` at end of input), or None when
        nothing came after all, or the connection failed and is closed."""
        try:
            data = self.sock.recv(self.config.recv_bytes)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._abort(exc)
            return None
        self.owner.metrics.bytes_received += len(data)
        return data

    def _read(self) -> None:
        data = self._recv()
        if data is None:
            return
        state = self.state
        if not data:
            if state is IDLE and not self._out_bytes:
                self.close()  # the peer closed between requests: nothing to say
                return
        elif state is IDLE:
            self._move("data")
            self._started = self.loop.now
        elif state is READING_HEADERS and not self.parser.in_message:
            self._started = self.loop.now  # the first bytes on a new connection
        elif state is READING_BODY:
            self._timer_armed_for = None  # a body read restarts the body timer
        self.parser.receive_data(data)
        self._process()

    def _process(self) -> None:
        """Answer every complete request in the input, in order, and send."""
        while True:
            self._answer_buffered()
            self._flush()
            if not self._drained_after_backpressure():
                return
            self._next_cycle()

    def _answer_buffered(self) -> None:
        """Parse buffered input and queue a response to each complete request."""
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._reject(exc)
                break
            if event is Event.NEED_DATA:
                break
            if event is Event.END_OF_MESSAGE:
                self._move("request")
                self._respond()
                if (
                    self._closing
                    or self._body is not None
                    or self._out_bytes > self.config.write_high_water_bytes
                ):
                    break  # stay in WRITING: closing, streaming, or backpressure
                self._next_cycle()
                if self.state is IDLE and not parser.eof:
                    break  # nothing buffered: wait for the next request
                continue
            if event is Event.CLOSED:
                if not self._out_bytes:
                    self.close()
                else:
                    self._closing = True
                break
            if event is Event.PAUSED:
                break
            # A request head.
            request = event
            request.client = self.client
            self.request = request
            if request.has_body:
                self._move("head")
                if request.expect_continue and not parser.buffered:
                    early = self.app.respond_early(request)
                    if early is not None:
                        # RFC 9110 §10.1.1: a final status instead of 100;
                        # the unread body means the connection must close.
                        self._move("request")
                        self._closing = True
                        self._send_response(request, early)
                        break
                    self._queue(informational(100))

    def _respond(self) -> None:
        request = self.request
        assert request is not None
        time = self.loop.time
        started = time()
        try:
            response = self.app.handle(request)
        except Exception:
            error_log.exception("handler failed for %s %s", request.method, escape(request.path))
            response = _plain(500)
        now = time()
        if now - started > self.config.watchdog_threshold_s:
            # The watchdog: a handler runs on the loop, so while it ran,
            # every other connection waited. That wait is the loop's lag, and
            # it is counted here, at once: the lag probe's timer fires only
            # after this pass, maybe after a callback that reads the figures.
            metrics = self.owner.metrics
            metrics.slow_handlers += 1
            metrics.loop_lag_max_s = max(metrics.loop_lag_max_s, now - started)
            error_log.warning(
                "handler for %s %s blocked the loop for %.0f ms",
                request.method,
                escape(request.route or request.path),
                (now - started) * 1000,
            )
        self._send_response(request, response, now)

    def _send_response(self, request: Request, response: Response, now: float | None = None) -> None:
        keep_alive = request.keep_alive and not self._closing and self.owner.accepting
        status = response.status
        body = response.body
        allowed = body_allowed(status)
        length: int | None = None
        chunked = False
        producer: Iterator[bytes | str] | FileBody | PushStream | None = None
        try:
            if isinstance(body, bytes):
                length = len(body) if allowed else None
            elif isinstance(body, (bytearray, memoryview, str)):
                # Iterating one would yield ints (or characters), piece by piece.
                raise TypeError(f"a response body must be bytes, not {type(body).__name__}")
            elif isinstance(body, FileBody):
                producer, body = body, b""
                length = producer.length if allowed else None
            else:
                producer = body if isinstance(body, PushStream) else iter(body)
                body = b""
                if request.version == "HTTP/1.1":
                    chunked = allowed
                else:
                    keep_alive = False  # RFC 9112 §6.3: the body ends when we close
            head = encode_head(
                response,
                length,
                keep_alive=keep_alive,
                http10_keep_alive=keep_alive and request.version == "HTTP/1.0",
                chunked=chunked,
            )
        except Exception as exc:
            # Nothing has been queued yet: answer 500, and close, since the
            # handler that made this response may have made others like it.
            error_log.error(
                "bad response from handler for %s %s: %s",
                request.method,
                escape(request.route or request.path),
                _describe(exc),
            )
            _release(producer if producer is not None else body)
            producer = None
            keep_alive = False
            response = _plain(500)
            status, body, chunked = 500, response.body, False
            head = encode_head(response, len(body), keep_alive=False)
        if request.method == "HEAD" or not allowed:
            _release(producer)
            producer, body = None, b""
        if len(body) <= _COALESCE_BYTES:
            self._queue(head + body if body else head)
        else:
            self._queue(head)
            self._queue(body)
        self.request = None
        if not keep_alive:
            self._closing = True
        if producer is None:
            self._record(request, status, len(body), now)
            return
        self._body = _Streaming(
            producer,
            chunked,
            request,
            status,
            head,
            f"{request.method} {request.route or request.path}",
        )
        if isinstance(producer, PushStream):
            try:
                producer.attach(self)
            except Exception as exc:
                self._response_failed(exc)

    def _reject(self, exc: ProtocolError) -> None:
        """Answer a protocol error once, then read nothing more."""
        request = self.request
        error_log.info(
            "%d from %s: %s",
            exc.status,
            self._client(),
            escape(str(exc)).encode("ascii", "backslashreplace").decode("ascii"),
        )
        self._move("reject")
        self._closing = True
        self.request = None
        response = _plain(exc.status)
        head = encode_head(response, len(response.body), keep_alive=False)
        self._queue(head + response.body)
        self.owner.metrics.rejected += 1
        self._record(request if request is not None else exc.request_line, exc.status, len(response.body))

    def _record(
        self, request: Request | str | None, status: int, size: int, now: float | None = None
    ) -> None:
        """Count a finished response in the metrics and write its access log line."""
        duration_s = (now if now is not None else self.loop.time()) - self._started
        self.owner.metrics.observe(status, duration_s)
        if self.config.access_log and access_log.isEnabledFor(20):
            access(self._client(), request, status, size, duration_s)

    def _client(self) -> str:
        return str(self.client[0])

    def _queue(self, data: bytes) -> None:
        if self._out is None:
            self._out = deque()
        self._out.append(data)
        self._out_bytes += len(data)

    def _flush(self) -> None:
        """Send queued output, then pull the body producer, while the socket takes it.

        Bounded to a few rounds per call so that one fast stream cannot starve
        the other connections: with work left, ``EVENT_WRITE`` brings it back.
        """
        progress = False
        for _ in range(_FLUSH_ROUNDS):
            out = self._out
            if out is not None:
                try:
                    if len(out) == 1:
                        sent = self.sock.send(out[0])
                    else:
                        sent = self.sock.sendmsg(list(out)[:_IOV_MAX])
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as exc:
                    self._abort(exc)
                    return
                progress = progress or sent > 0
                self._out_bytes -= sent
                self.owner.metrics.bytes_sent += sent
                if not self._out_bytes:
                    self._out = None
                else:
                    while sent:
                        first = out[0]
                        if sent >= len(first):
                            sent -= len(first)
                            out.popleft()
                        else:
                            out[0] = memoryview(first)[sent:]
                            sent = 0
                    break  # the socket is full
            if self._body is None:
                break
            producer = self._body.producer
            try:
                if isinstance(producer, PushStream):
                    if self._out_bytes <= self.config.write_low_water_bytes:
                        producer.drained()  # may call its producer's on_drain
                    break  # its producer writes when it has something
                if isinstance(producer, FileBody):
                    done, sent = self._send_file(producer)
                    progress = progress or sent > 0
                    if not done and self.state is not CLOSED and producer.length:
                        if sent < _SENDFILE_BYTES:
                            break  # the socket is full
                else:
                    self._pull(producer)
            except Exception as exc:
                # A producer failed (or produced something that is not a
                # body): never leave the response half-sent and unwatched.
                self._response_failed(exc)
            if self.state is CLOSED:
                return
        if self._out_bytes or (self._body is not None and not isinstance(self._body.producer, PushStream)):
            # Work is left: the write deadline measures time without progress.
            if progress or self._write_timer is None or self._write_timer.cancelled:
                self._arm_write_timer()
            return
        if self._write_timer is not None:
            self._write_timer.cancel()
        # Everything is out; a closing connection closes now. (A connection
        # that is still reading a request under shutdown closes after its
        # response instead.)
        if self._closing and self._body is None and (self.state is WRITING or self.state is IDLE):
            # Linger only if the client may still be sending (an error cut
            # its request short, or more is buffered), as nginx does.
            self.close(linger=not self.parser.at_rest)

    # -- body producers ------------------------------------------------------

    def _pull(self, iterator: Iterator[bytes | str]) -> None:
        """Queue pieces of a streamed body until the high-water mark or its end."""
        high = self.config.write_high_water_bytes
        for _ in range(_PULLS_PER_ROUND):
            if self._out_bytes >= high:
                return
            try:
                piece = next(iterator)
            except StopIteration:
                self._end_body()
                return
            # Any other exception reaches _flush, which ends the response.
            if type(piece) is not bytes:
                piece = _piece_bytes(piece)
            if piece:
                self._queue_body(piece)

    def _queue_body(self, piece: bytes) -> None:
        assert self._body is not None
        self._body.sent += len(piece)
        if not self._body.chunked:
            self._queue(piece)
        elif len(piece) <= _COALESCE_BYTES:
            self._queue(b"%x\r\n%b\r\n" % (len(piece), piece))
        else:
            self._queue(b"%x\r\n" % len(piece))
            self._queue(piece)
            self._queue(b"\r\n")

    def _end_body(self) -> None:
        assert self._body is not None
        if self._body.chunked:
            self._queue(b"0\r\n\r\n")
        self._finish_response()

    def _finish_response(self) -> None:
        """The body producer is done (or failed): release it and log the response."""
        body, self._body = self._body, None
        assert body is not None
        _release(body.producer)
        self._record(body.request_line, body.status, body.sent)

    def _response_failed(self, exc: Exception) -> None:
        """Sending the streamed response failed (its producer raised, or gave
        something that is not a body): answer 500 instead if no byte of its
        head has left yet, else end the connection without the rest.

        Either way the connection ends: it is never left in ``WRITING`` with
        a half-sent response and no timer.
        """
        body, self._body = self._body, None
        assert body is not None
        error_log.error("response to %s failed: %s", escape(body.route), _describe(exc), exc_info=exc)
        _release(body.producer)
        self._closing = True
        if self._unqueue(body.head):
            response = _plain(500)
            self._queue(encode_head(response, len(response.body), keep_alive=False) + response.body)
            self._record(body.request_line, 500, len(response.body))
        else:
            # Too late for a 500: what is queued goes out, then the connection
            # closes without the final chunk, so the client sees a cut response.
            self._record(body.request_line, body.status, body.sent)

    def _unqueue(self, head: bytes) -> bool:
        """Drop ``head`` and everything queued after it, if none of it was sent."""
        out = self._out
        if out is None:
            return False
        for index, piece in enumerate(out):
            if piece is head:  # a partly sent head is a memoryview of it
                while len(out) > index:
                    self._out_bytes -= len(out.pop())
                if not out:
                    self._out = None
                return True
        return False

    def _send_file(self, body: FileBody) -> tuple[bool, int]:
        """One ``os.sendfile`` step; (whether the body is done, bytes sent)."""
        if not body.length:
            self._finish_response()  # an empty range: nothing to send
            return True, 0
        try:
            sent = os.sendfile(
                self.sock.fileno(), body.file.fileno(), body.offset, min(body.length, _SENDFILE_BYTES)
            )
        except (BlockingIOError, InterruptedError):
            return False, 0
        except OSError as exc:
            self._abort(exc)
            return False, 0
        if sent == 0:
            # The file is shorter than announced (truncated while being sent):
            # the Content-Length cannot be kept, so the connection must end.
            error_log.error("%r ended %d bytes early", body, body.length)
            self.close()
            return False, 0
        self.owner.metrics.bytes_sent += sent
        body.offset += sent
        body.length -= sent
        assert self._body is not None
        self._body.sent += sent
        if not body.length:
            self._finish_response()
            return True, sent
        return False, sent

    # -- the push stream's side (see reactor.streams.StreamSink) ------------

    def stream_write(self, data: bytes) -> None:
        """A push stream's producer wrote ``data``: frame it, flush soon."""
        if self.state is CLOSED:
            return
        self._queue_body(data)
        self._schedule_flush()

    def stream_end(self) -> None:
        """The push stream's producer closed it: end the body, flush soon."""
        if self.state is CLOSED or self._body is None or not isinstance(self._body.producer, PushStream):
            return
        self._end_body()
        self._schedule_flush()

    def stream_writable(self) -> bool:
        """Whether the unsent output is at or below the high-water mark."""
        return self.state is not CLOSED and self._out_bytes <= self.config.write_high_water_bytes

    def _schedule_flush(self) -> None:
        # Writes made during one pass of the loop leave in one send.
        body = self._body
        if body is not None and not body.flush_soon:
            body.flush_soon = True
            self.loop.call_soon(self._flush_scheduled)
        elif body is None:
            self.loop.call_soon(self._flush_scheduled)  # the last chunk of a stream

    def _flush_scheduled(self) -> None:
        if self._body is not None:
            self._body.flush_soon = False
        if self.state is not CLOSED:
            try:
                self._write_ready()
                if self.state is not CLOSED:
                    self._sync()
            except Exception as exc:
                self._crashed(exc)

    def _read_while_streaming(self) -> None:
        """Read during a long-lived response: a pipelined request, or the end of input.

        End of input is not the client leaving: it may have only half-closed
        (``shutdown(SHUT_WR)``) and still be reading (RFC 9112 §9.6). The
        stream goes on until it ends or a write fails; then the connection
        closes, as it does at end of input between requests. Reading stops
        (the parser's ``eof`` takes ``EVENT_READ`` out of the mask).
        """
        data = self._recv()
        if data is None:
            return
        if not data:
            error_log.debug("%s half-closed during a streamed response", self._client())
        self.parser.receive_data(data)  # a pipelined request (answered later), or the end

    def _arm_write_timer(self) -> None:
        """(Re)start the write deadline: it measures time without progress."""
        timer = self._write_timer
        if timer is None:
            timer = self._write_timer = self.loop.timer(self._on_write_timeout)
        timer.reset(self.loop.now + self.config.write_timeout_s)

    # -- timeouts and closing ------------------------------------------------

    def _on_timeout(self) -> None:
        state = self.state
        if state is IDLE:
            error_log.debug("keep-alive timeout from %s", self._client())
            self.close()
        elif state is READING_HEADERS or state is READING_BODY:
            if state is READING_HEADERS and not self.parser.in_message:
                error_log.debug("no request from %s before the header timeout", self._client())
                self.close()
                return
            if self.loop.now >= self._started + self.config.request_timeout_s:
                what = "request"  # the total deadline, not the state's own timer
            else:
                what = state.value
            self._reject(ProtocolError(f"{what} timeout", 408))
            self._flush()
            if self.state is not CLOSED:
                self._sync()

    def _on_write_timeout(self) -> None:
        if self.state is not CLOSED:
            error_log.info("write timeout to %s with %d bytes unsent", self._client(), self._out_bytes)
            self.close()

    def _abort(self, exc: OSError) -> None:
        if exc.errno in _DISCONNECTED:
            error_log.debug("%s from %s", errno.errorcode.get(exc.errno or 0, exc), self._client())
        else:
            error_log.warning("socket error with %s: %s", self._client(), exc)
        self.close()

    def close(self, linger: bool = False) -> None:
        """Close the connection now (``linger``: drain unread input first)."""
        if self.state is CLOSED:
            return
        self._move("close")
        # Each timer calls back into the connection: released, they no longer
        # hold it, so reference counting alone frees a closed connection.
        self._timer.release()
        if self._write_timer is not None:
            self._write_timer.release()
        if self._mask:
            self.loop.unregister(self.sock)
            self._mask = 0
        self._out = None
        self._out_bytes = 0
        if self._body is not None:
            # A streamed response cut short (the client left, a timeout, an
            # error) is still a response: log it with the bytes that went out.
            self._finish_response()
        if linger and not self.parser.eof:
            # RFC 9112 §9.6: close the sending side first and drain what the
            # client still sends, so that closing with unread input does not
            # reset the connection before the client has read our answer.
            self.owner.linger(self.sock)
        else:
            self.sock.close()
        self.owner.connection_closed(self)

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response.

        A push stream never ends by itself, so it is ended here, normally
        (with its last chunk): an SSE client reconnects to the next server.
        """
        if (self.state is IDLE and not self._out_bytes) or (
            self.state is READING_HEADERS and not self.parser.in_message
        ):
            self.close()
            return
        self._closing = True
        if self._body is not None and isinstance(self._body.producer, PushStream):
            self._body.producer.close()


class _Streaming:
    """A response body being streamed: exists only while one is."""

    __slots__ = ("producer", "chunked", "request_line", "status", "sent", "flush_soon", "head", "route")

    def __init__(
        self,
        producer: Iterator[bytes | str] | FileBody | PushStream,
        chunked: bool,
        request_line: Request,
        status: int,
        head: bytes,
        route: str,
    ) -> None:
        self.producer = producer
        self.chunked = chunked  # frame pieces as chunks (else: raw, close-delimited or sized)
        self.request_line = request_line  # for the access log line written at the end
        self.status = status
        self.sent = 0  # body bytes so far
        self.flush_soon = False  # a flush is scheduled for a push stream's writes
        self.head = head  # the response's head, as queued (to tell whether it has left)
        self.route = route  # method and route, for the error log


def _release(body: object) -> None:
    """Let go of a response body: close its file, end its stream, close its generator."""
    if isinstance(body, PushStream):
        body.detach()
    elif body is not None and not isinstance(body, bytes):
        close = getattr(body, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                error_log.exception("closing the body %r failed", body)


def _piece_bytes(piece: object) -> bytes:
    """A streamed body's piece as bytes, or TypeError."""
    if isinstance(piece, str):
        return piece.encode()
    if isinstance(piece, (bytearray, memoryview)):
        return bytes(piece)
    raise TypeError(f"a streamed body yielded {type(piece).__name__}, not bytes or str")


def _describe(exc: BaseException) -> str:
    """``TypeError: message``, escaped, on one line."""
    return escape(f"{type(exc).__name__}: {exc}")


def _plain(status: int) -> Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return Response.text(f"{status} {phrase}\n", status)
