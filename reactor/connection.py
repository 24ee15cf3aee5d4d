"""The HTTP/1.1 protocol of one connection: its state machine and its timers.

Theory of operation
-------------------
A :class:`Connection` is the *protocol* over one
:class:`~reactor.transport.Transport`: the transport moves bytes and calls it
back (``data_received``, ``eof_received``, ``resume_writing``,
``resume_producing``, ``connection_lost``); the connection parses requests,
calls the app, frames responses (:func:`reactor.http.response.frame`, body
producers from :mod:`reactor.http.bodies`) and writes them. It never touches a socket.

A connection is always in one :class:`State`. The only way to change it is
:meth:`Connection._move`, which looks the move up in :data:`TRANSITIONS` and
refuses any move the table does not hold::

    IDLE ──data──> READING_HEADERS ──head (body follows)──> READING_BODY
                        │                                       │
                        └──────────request complete─────────────┴──> WRITING
    WRITING ──stream──> STREAMING ──end──> WRITING     (an iterator or a file)
    WRITING ──push────> PUSHING   ──end──> WRITING     (a push stream)
    READING_BODY, WRITING ──offload──> IN_POOL ──answer──> WRITING   (a worker thread)
    WRITING ──keep-alive──> IDLE
    WRITING ──last──> CLOSING ──close──> CLOSED        (the output is out)
    WRITING ──upgrade──> UPGRADED ──close──> CLOSED    (a 101: the WebSocket's now)
    READING_* ──reject──> CLOSING                      (a 4xx, then close)
    STREAMING, PUSHING ──fail──> CLOSING               (a 500, or cut short)
    any state ──close (error, timeout, peer gone, shutdown)──> CLOSED

``WRITING`` is where a finished response waits for the next request: it
leaves at once (``keep-alive``) unless the queued output is above
``write_high_water_bytes``; then it stays, reading nothing, until the
transport calls ``resume_writing`` (below ``write_low_water_bytes``). A client
that pipelines without reading cannot make the server buffer without bound.
Whether a response is the last one is decided once, when it is framed
(``Connection: close``, a close-delimited body, shutdown): it then ends in
``CLOSING``, which asks the transport to close once the output is sent.

Each state has its timer, set by :meth:`Connection._sync_timer` at the end of
every callback: ``READING_HEADERS`` arms the header deadline (counted from
the state's start, never refreshed), ``READING_BODY`` the gap between body reads;
neither past the request deadline (``request_timeout_s`` from the request's
first byte). That :class:`~reactor.loop.Timer` is the connection's own, made
when first needed and released when the connection goes idle or closes.
``IDLE`` has no timer of its own: the keep-alive timeout is the same for every
connection, so idle connections wait in one :class:`KeepAlive` queue, oldest
first, under one shared timer (an idle connection then costs a dict entry,
not a timer, its heap entry and its deadline). A new connection that has sent
nothing yet waits the same way, in one :class:`FirstBytes` queue: it gets a
timer of its own only if its head arrives in pieces. The write timeout is the
transport's.

An accepted WebSocket handshake (the app answers with a
:class:`~reactor.websocket.route.Upgrade`) writes the ``101``, moves to
``UPGRADED`` and hands the transport to the WebSocket protocol
(:mod:`reactor.websocket.protocol`) with the bytes already buffered behind the
request head; the connection reads nothing more and keeps no timer, but stays
in the server's registry until the WebSocket calls its ``connection_lost``.

Pipelined requests that are already buffered are answered in order in the
same callback, their responses coalesced into one ``send`` by the transport.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from .http.bodies import Producer, producer_for
from .http.errors import LocalProtocolError, ProtocolError
from .http.parser import Event, RequestParser
from .http.request import Request
from .http.response import (
    CHUNKED,
    CLOSE,
    LAST_CHUNK,
    LENGTH,
    NONE,
    Response,
    encode_chunk,
    encode_head,
    frame,
    informational,
    status_text,
)
from .log import access, access_log, error_log, escape
from .pool import ClientDisconnected, Handoff, Offload, PoolStream, release_body
from .proxy import FORWARDING_FIELDS, ProxyHeaderReader, ProxyProtocolError, Trusted, forwarded, trusted
from .websocket.route import Upgrade

if TYPE_CHECKING:
    from .config import Config
    from .loop import Loop, Timer
    from .metrics import Metrics
    from .pool import Pool, Work
    from .transport import Transport

__all__ = [
    "MOVE_COUNTERS",
    "TRANSITIONS",
    "Application",
    "Connection",
    "FirstBytes",
    "KeepAlive",
    "State",
    "count_by_state",
]


class State(enum.Enum):
    """Where a connection is in its request/response cycle."""

    IDLE = "idle"
    READING_HEADERS = "reading headers"
    READING_BODY = "reading body"
    WRITING = "writing"
    STREAMING = "streaming"
    PUSHING = "pushing"
    UPGRADED = "upgraded"
    CLOSING = "closing"
    CLOSED = "closed"
    IN_POOL = "in pool"  # a worker thread runs the handler (reactor/pool.py)

    # Members are singletons compared by identity, so identity hashing is
    # right; it is also C-level, where Enum's own __hash__ runs Python code on
    # every TRANSITIONS look-up (three a request).
    __hash__ = object.__hash__


IDLE = State.IDLE
READING_HEADERS = State.READING_HEADERS
READING_BODY = State.READING_BODY
WRITING = State.WRITING
STREAMING = State.STREAMING
PUSHING = State.PUSHING
CLOSING = State.CLOSING
CLOSED = State.CLOSED
UPGRADED = State.UPGRADED
IN_POOL = State.IN_POOL

# The parser's events, as module names: an enum member looked up on its
# class goes through the enum's metaclass, about ten times a global's cost.
_NEED_DATA: Final = Event.NEED_DATA
_END_OF_MESSAGE: Final = Event.END_OF_MESSAGE
_PEER_DONE: Final = Event.CLOSED
_PAUSED: Final = Event.PAUSED

#: Every allowed move: ``(state, event) -> next state``. ``docs/state-machine.md``
#: draws its diagram from this table.
TRANSITIONS: dict[tuple[State, str], State] = {
    (IDLE, "data"): READING_HEADERS,
    (READING_HEADERS, "head"): READING_BODY,
    (READING_HEADERS, "request"): WRITING,
    (READING_BODY, "request"): WRITING,
    (READING_HEADERS, "reject"): CLOSING,
    (READING_BODY, "reject"): CLOSING,
    (WRITING, "stream"): STREAMING,
    (WRITING, "push"): PUSHING,
    (STREAMING, "end"): WRITING,
    (PUSHING, "end"): WRITING,
    (STREAMING, "fail"): CLOSING,
    (PUSHING, "fail"): CLOSING,
    (WRITING, "keep-alive"): IDLE,
    (WRITING, "last"): CLOSING,
    (IDLE, "last"): CLOSING,
    (READING_HEADERS, "last"): CLOSING,
    (IDLE, "close"): CLOSED,
    (READING_HEADERS, "close"): CLOSED,
    (READING_BODY, "close"): CLOSED,
    (WRITING, "close"): CLOSED,
    (STREAMING, "close"): CLOSED,
    (PUSHING, "close"): CLOSED,
    (CLOSING, "close"): CLOSED,
    (WRITING, "upgrade"): UPGRADED,
    (UPGRADED, "close"): CLOSED,
    # A handler that may block runs in the pool: the request waits there,
    # its body (if it streams) fed to the worker as it arrives.
    (WRITING, "offload"): IN_POOL,
    (READING_BODY, "offload"): IN_POOL,
    (IN_POOL, "answer"): WRITING,
    (IN_POOL, "close"): CLOSED,
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
# The moves of every kept-alive request without a body, numbered from
# the table: the hot path makes them inline (what _move does, less the
# look-up), and only these, which the table holds. --trace (reactor/trace.py)
# sets _inline_moves False, so that every move goes through _move.
_inline_moves = True
_DATA_MOVE: Final = _MOVES[(IDLE, "data")][1]
_REQUEST_MOVE: Final = _MOVES[(READING_HEADERS, "request")][1]
_KEEP_ALIVE_MOVE: Final = _MOVES[(WRITING, "keep-alive")][1]


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


# What each state's timer waits for, as the live view names it.
_TIMER_NAMES = {IDLE: "keep-alive", READING_HEADERS: "header", READING_BODY: "body"}

# Bodies up to this size are copied behind the head so that one send() carries
# both; larger ones are written as they are and sent with sendmsg().
_COALESCE_BYTES = 16384


class Application(Protocol):
    """What a connection needs from the app: a response for each request."""

    def handle(self, request: Request) -> Response:
        """The response to ``request`` (the body has been read)."""
        ...

    def respond_early(self, request: Request) -> Response | None:
        """A final response to send instead of ``100 Continue``, or None."""
        ...


class KeepAlive:
    """The connections waiting in ``IDLE`` for their next request, oldest first.

    Every connection waits ``keepalive_timeout_s`` (one figure, from the
    server's config), so the order they went idle in is the order their
    deadlines come in: one timer, for the oldest, serves them all. A
    connection that leaves ``IDLE`` (or closes) leaves the queue; one that
    comes back goes to its end. The dict holds each connection only while it
    is idle, and a closed connection is never in it.
    """

    __slots__ = ("waiting", "armed", "_timer")

    def __init__(self) -> None:
        #: The idle connections, oldest first. A connection going idle moves
        #: itself to the end (``Connection._sync_timer``, on the hot path:
        #: a pop and a store, no call), then calls :meth:`arm` if not ``armed``.
        self.waiting: dict[Connection, None] = {}
        #: Whether the timer is armed for the oldest one's deadline (or earlier).
        self.armed = False
        self._timer: Timer | None = None  # made with the first idle connection, on its loop

    def __len__(self) -> int:
        return len(self.waiting)

    def deadline(self, connection: Connection) -> float:
        """When ``connection``, waiting here, times out (the loop's clock)."""
        return connection.entered + connection.config.keepalive_timeout_s

    def add(self, connection: Connection) -> None:
        """``connection`` begins to wait: at the end, its deadline the latest."""
        waiting = self.waiting
        waiting.pop(connection, None)
        waiting[connection] = None
        if not self.armed:
            self.arm(connection)

    def arm(self, connection: Connection) -> None:
        """Arm the timer for ``connection``, which began to wait with no timer armed."""
        timer = self._timer
        if timer is None:
            timer = self._timer = connection.loop.timer(self._expire)
        timer.reset(self.deadline(connection))
        self.armed = True

    def discard(self, connection: Connection) -> None:
        """``connection`` is no longer idle (the timer, if it was the oldest,
        finds the next one when it fires)."""
        self.waiting.pop(connection, None)

    def release(self) -> None:
        """Let go of the shared timer, which calls back into the queue (see
        :meth:`~reactor.loop.Timer.release`); the next arm() makes a new one."""
        self.armed = False
        if self._timer is not None:
            self._timer.release()
            self._timer = None

    def _expire(self) -> None:
        """Time the oldest out, up to the first whose deadline is still to come."""
        assert self._timer is not None
        waiting = self.waiting
        due = []
        for connection in waiting:
            deadline = self.deadline(connection)
            if deadline > connection.loop.now:
                self._timer.reset(deadline)
                break
            due.append(connection)
        else:
            self.armed = False  # nobody left waiting: armed again by the next to go idle
        for connection in due:
            del waiting[connection]
            connection()  # its state's timeout: keep-alive, or no request in time


class FirstBytes(KeepAlive):
    """The new connections that have sent nothing yet, oldest first.

    The same for every connection of a server, as the keep-alive timeout is:
    a new connection waits ``header_timeout_s`` (or ``request_timeout_s``, if
    that is shorter) for its request, counted from accept, so one timer for
    the oldest serves all of them, and a connection opened and left silent
    (a browser's preconnect, or a Slowloris client) costs a dict entry, not a
    timer and its heap entry. It leaves at its first byte; a head that then
    arrives in pieces gets the connection's own timer, with the same deadline.
    """

    __slots__ = ()

    def deadline(self, connection: Connection) -> float:
        config = connection.config
        return connection.entered + min(config.header_timeout_s, config.request_timeout_s)

    def _expire(self) -> None:
        super()._expire()  # its own name, for the live view's list of timers


class ConnectionOwner(Protocol):
    """What a connection needs from the server that accepted it."""

    @property
    def accepting(self) -> bool: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def keepalive(self) -> KeepAlive: ...
    @property
    def first_bytes(self) -> FirstBytes: ...
    @property
    def pool(self) -> Pool | None: ...
    def connection_closed(self, connection: Connection) -> None: ...


class Connection:
    """The HTTP/1.1 protocol of one connection. See the module docs."""

    __slots__ = (
        "transport",
        "client",
        "state",
        "loop",
        "config",
        "app",
        "owner",
        "parser",
        "request",
        "_timer",
        "_timer_armed_for",
        "entered",
        "_started",
        "_body",
        "_moves",
        "_idle",
        "_trust",
        "_shown",
        "scheme",
        "_handoff",
        "__weakref__",
    )

    def __init__(
        self, client: tuple[str, int], loop: Loop, config: Config, app: Application, owner: ConnectionOwner
    ) -> None:
        # self.transport is set by connection_made, before any other callback.
        self.client = client
        self.loop = loop
        self.config = config
        self.app = app
        self.owner = owner
        self.parser = RequestParser(config)
        self.request: Request | None = None
        # Its state timer, made when a state needs one (see _sync_timer); it
        # calls the connection itself (see __call__).
        self._timer: Timer | None = None
        self._timer_armed_for: State | None = None
        # When the current request began: its first byte (or accept, until
        # one arrives). The request deadline and the logged duration run from it.
        self._started = loop.now
        # The response body being streamed or pushed (None otherwise).
        self._body: _Streaming | None = None
        # A new connection is waiting for a request head: the header deadline
        # runs from accept (an idle preconnect is closed at that deadline).
        self.state = READING_HEADERS
        #: When it entered its state, by the loop's clock (for the live view).
        self.entered = loop.now
        # The owner's counts of moves made, kept by _move (see count_by_state).
        self._moves = owner.metrics.moves
        self._moves[_OPENED] += 1
        self._idle = owner.keepalive  # where it waits while IDLE
        self._trust: Trusted | None = None
        self._shown = ""  # the client as logged
        #: Its requests' scheme: ``https`` on a TLS listener (set at accept).
        self.scheme = "http"
        # The request in the pool (and its streamed response), or None.
        self._handoff: Handoff | None = None
        self.proxied(client)

    def proxied(self, client: tuple[str, int]) -> None:
        """Take ``client`` as the peer (at accept, or from a PROXY header):
        it decides whether forwarding headers are believed, once."""
        self.client = client
        self._shown = str(client[0])
        trust = trusted(self.config.forwarded_allow_ips)
        self._trust = trust if client[0] in trust else None

    def __repr__(self) -> str:
        transport = getattr(self, "transport", None)
        out = transport.buffered if transport is not None else 0
        return f"<Connection {self.state.name} in={self.parser.buffered}B out={out}B>"

    # -- the state machine -------------------------------------------------

    def _move(self, event: str) -> None:
        """Make the move ``event`` from the current state, or refuse it."""
        move = _MOVES.get((self.state, event))
        if move is None:
            raise LocalProtocolError(f"can't go from {self.state.name} on {event!r}")
        self.state, number = move
        self._moves[number] += 1
        self._timer_armed_for = None
        self.entered = self.loop.now

    def _sync_timer(self) -> None:
        """Make the state's timer follow the state."""
        state = self.state
        if self._timer_armed_for is state or state is CLOSED:
            return
        self._timer_armed_for = state
        timer = self._timer
        if state is IDLE:
            # The shared keep-alive queue times it out; an idle connection
            # keeps no timer (its stale heap entry holds only the released timer).
            if timer is not None:
                timer.release()
                self._timer = None
            # KeepAlive.add(self), inline: every kept-alive request comes here.
            idle = self._idle
            waiting = idle.waiting
            waiting.pop(self, None)  # to the end: its deadline is now the latest
            waiting[self] = None
            if not idle.armed:
                idle.arm(self)
            return
        self._idle.discard(self)
        config = self.config
        if state is READING_HEADERS or state is READING_BODY:
            if timer is None:
                timer = self._timer = self.loop.timer(self)
            # The header deadline runs from the state's start (accept, for a
            # new connection), never past the request's; in READING_BODY, the
            # gap between reads.
            if state is READING_HEADERS:
                deadline = self.entered + config.header_timeout_s
            else:
                deadline = self.loop.now + config.body_timeout_s
            timer.reset(min(deadline, self._started + config.request_timeout_s))
        elif timer is not None:
            timer.cancel()

    def armed_timer(self) -> tuple[str, float] | None:
        """Which of its timers is armed, and when it fires (the loop's clock), or None.

        For the live view: read when asked, nothing kept for it.
        """
        armed_for = self._timer_armed_for
        if armed_for is IDLE:
            return _TIMER_NAMES[IDLE], self._idle.deadline(self)
        timer = self._timer
        if armed_for is READING_HEADERS and timer is None:
            return _TIMER_NAMES[READING_HEADERS], self.owner.first_bytes.deadline(self)
        if timer is not None and not timer.cancelled and armed_for is not None:
            return _TIMER_NAMES.get(armed_for, "state"), timer.when
        transport = getattr(self, "transport", None)
        write = transport.write_timer if transport is not None else None
        if write is not None and not write.cancelled:
            return "write", write.when
        return None

    # -- what the transport calls ------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        # The header deadline runs from here, at accept. Until the first byte
        # the connection waits, as an idle one does, in a shared queue, and
        # keeps no timer (see FirstBytes); it leaves it at that byte, for good.
        self.entered = self.loop.now
        self._timer_armed_for = READING_HEADERS
        self.owner.first_bytes.add(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        parser = self.parser
        if state is IDLE:
            if _inline_moves:  # _move("data"), inline: the first move of every request
                self.state = READING_HEADERS
                self._moves[_DATA_MOVE] += 1
                self._timer_armed_for = None
                self.entered = self.loop.now
            else:
                self._move("data")
            self._started = self.loop.now
        elif state is READING_HEADERS:
            if not parser.in_message:
                # The first bytes on a new connection: it leaves the queue
                # of silent ones (and gets its own timer if its head is cut).
                self._started = self.loop.now
                self.owner.first_bytes.discard(self)
                self._timer_armed_for = None
        elif state is READING_BODY:
            self._timer_armed_for = None  # a body read restarts the body timer
        elif state is PUSHING:
            # A push stream's connection reads only to notice the client
            # leaving; a pipelined request waits, up to one head's worth.
            parser.receive_data(data)
            if parser.buffered > self.config.max_head_bytes:
                self.transport.pause_reading()
            return
        elif state is IN_POOL:
            parser.receive_data(data)
            self._pump_body()
            return
        parser.receive_data(data)
        self._answer_buffered()
        self._sync_timer()

    def eof_received(self) -> None:
        """End of input. Not always the client leaving: it may have only
        half-closed (``shutdown(SHUT_WR)``) and still be reading (RFC 9112
        §9.6), so a response in progress goes on."""
        state = self.state
        transport = self.transport
        if state is IDLE and not transport.buffered:
            transport.abort()  # the peer closed between requests: nothing to say
            return
        if state is STREAMING or state is PUSHING:
            error_log.debug("%s half-closed during a streamed response", self._client())
            self.parser.receive_data(b"")  # answered, or ended, after the stream
            return
        if state is IN_POOL:
            self.parser.receive_data(b"")
            self._pump_body()  # a body cut short fails the worker's next read
            return
        self.parser.receive_data(b"")
        self._answer_buffered()
        self._sync_timer()

    def pause_writing(self) -> None:
        """The output is above the high-water mark. Nothing to do at once:
        each producer of output looks (see ``_response_done`` and
        :attr:`writable`)."""

    def resume_writing(self) -> None:
        """The output has drained below the low-water mark."""
        state = self.state
        if state is WRITING:
            # A finished response held by backpressure: take up the next request.
            self.transport.resume_reading()
            self._next_cycle()
            self._answer_buffered()
            self._sync_timer()
        elif state is PUSHING:
            assert self._body is not None
            self._body.producer.drained()

    def resume_producing(self) -> None:
        """The socket can take more of a streamed body."""
        body = self._body
        assert body is not None and self.state is STREAMING
        try:
            done = body.producer.produce(self)
        except Exception as exc:
            # A producer failed (or produced something that is not a body):
            # never leave the response half-sent and unwatched.
            self._response_failed(exc)
            return
        if done and self.state is STREAMING:
            self._end_body()

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport has closed: let go of everything."""
        if self.state is CLOSED:
            return
        self._move("close")
        # The timer calls back into the connection: released, it no longer
        # holds it, so reference counting alone frees a closed connection.
        if self._timer is not None:
            self._timer.release()
            self._timer = None
        self._idle.discard(self)
        self.owner.first_bytes.discard(self)
        handoff = self._handoff
        if handoff is not None:
            # The worker's next read or write raises; its answer is dropped.
            self._handoff = None
            self.parser.body_sink = None
            handoff.cancel()
        if self._body is not None:
            # A streamed response cut short (the client left, a timeout, an
            # error) is still a response: log it with the bytes that went out.
            self._finish_response()
        self.owner.connection_closed(self)

    def __call__(self) -> None:
        """The state timer's callback: time is up.

        Being its own callback spares every connection a bound-method object.
        """
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

    # -- requests ------------------------------------------------------------

    def _next_cycle(self) -> None:
        """The response is queued and may persist: wait for the next request."""
        self._move("keep-alive")
        if self.parser.start_next_cycle():  # the next request has begun
            self._move("data")
            self._started = self.loop.now

    def _answer_buffered(self) -> None:
        """Parse buffered input and write a response to each complete request.

        The common request (a head with no body, kept alive) goes round this
        loop with two calls to the parser and one to :meth:`_respond`; its
        moves (``request``, ``keep-alive`` and, when the next request is
        buffered, ``data``) are made inline.
        """
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._reject(exc)
                return
            if event.__class__ is Request:
                request: Request = event  # narrowed by the class test (a cast() would be a call)
                request.client = self.client
                request.scheme = self.scheme
                if self._trust is not None:
                    if request.headers.has_any(FORWARDING_FIELDS):
                        forwarded(request, self._trust)  # a trusted proxy names the client
                    self._shown = request.client[0]
                self.request = request
                if request.chunked or request.content_length:  # request.has_body, without a call
                    if not self._at_head(request):
                        return
                    continue
                parser.next_event()  # END_OF_MESSAGE: there is no body
                if _inline_moves:  # _move("request"), inline
                    self.state = WRITING
                    self._moves[_REQUEST_MOVE] += 1
                    self.entered = self.loop.now
                else:
                    self._move("request")
            elif event is _NEED_DATA:
                return
            elif event is _END_OF_MESSAGE:
                self._move("request")  # the body is in
            elif event is _PEER_DONE:
                self._last()  # the client is done: close once our output is out
                return
            else:  # _PAUSED
                return
            keep_alive = self._respond()
            if self.state is not WRITING:
                return  # streaming, pushing, in the pool, upgraded
            if not keep_alive:
                self._last()
                return
            if self.transport.buffered > self.config.write_high_water_bytes:
                self.transport.pause_reading()  # held in WRITING until resume_writing
                return
            if not _inline_moves:
                self._next_cycle()
            else:  # _next_cycle(), inline
                self.state = IDLE
                self._moves[_KEEP_ALIVE_MOVE] += 1
                self._timer_armed_for = None
                self.entered = now = self.loop.now
                if parser.start_next_cycle():  # the next request has begun
                    self.state = READING_HEADERS
                    self._moves[_DATA_MOVE] += 1
                    self._started = now
            if self.state is IDLE and not parser.eof:
                return  # nothing buffered: wait for the next request

    def _at_head(self, request: Request) -> bool:
        """A head whose body follows: start reading it (the move ``head``),
        unless a worker takes the request now or it is answered early;
        whether to go on reading."""
        parser = self.parser
        self._move("head")
        # An app whose routes may take the request at its head says
        # so (at_head), and then which work takes it (stream_body).
        app = self.app
        work = app.stream_body(request) if getattr(app, "at_head", False) else None  # type: ignore[attr-defined]
        if work is not None:
            self._offload_streaming(request, work)
            return False
        if request.expect_continue and not parser.buffered:
            early = self.app.respond_early(request)
            if early is not None:
                # RFC 9110 §10.1.1: a final status instead of 100;
                # the unread body means the connection must close.
                self._move("request")
                self._send_response(request, early, keep_alive=False)
                if self.state is WRITING:
                    self._last()
                return False
            self.transport.write(informational(100))
        return True

    def _response_done(self, keep_alive: bool) -> bool:
        """A response is written (in WRITING): go on to the next request if
        it may persist (``keep_alive``, which says whether the server is still
        accepting) and the output allows; True if it did."""
        if not keep_alive:
            self._last()
            return False
        transport = self.transport
        if transport.buffered > self.config.write_high_water_bytes:
            transport.pause_reading()  # held until resume_writing
            return False
        self._next_cycle()
        return True

    def _last(self) -> None:
        """This connection's last response is queued: close once it is out."""
        self._move("last")
        # Linger only if the client may still be sending (an error cut its
        # request short, or more is buffered), as nginx does.
        self.transport.close(linger=not self.parser.at_rest)

    def _respond(self) -> bool:
        """Call the handler and write its response; whether it may persist."""
        request = self.request
        assert request is not None
        time = self.loop.time
        started = time()
        try:
            response = self.app.handle(request)
        except Offload as offload:
            # A blocking handler: a worker runs it (no instruction on the
            # plain path: a try costs nothing until something is raised).
            if self._offload(request, offload.work, True):
                return False
            return self._send_response(request, _busy(), False)
        except Exception:
            error_log.exception("handler failed for %s %s", request.method, escape(request.path))
            response = _plain(500)
        now = time()
        if response.__class__ is Upgrade:
            return self._upgrade(request, response, now)
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
        return self._send_response(request, response, True, now)

    def _upgrade(self, request: Request, upgrade: Upgrade, now: float) -> bool:
        """Switch protocols (a WebSocket handshake the app accepted), or send its refusal."""
        if upgrade.start is None or upgrade.head is None or not self.owner.accepting:
            # Refused (or shutting down): an ordinary answer, then close.
            refusal = upgrade if upgrade.start is None else _plain(503)
            return self._send_response(request, refusal, False, now)
        transport = self.transport
        transport.write(upgrade.head)
        self.request = None
        self._record(request, 101, 0, now)
        self._move("upgrade")
        if self._timer is not None:
            self._timer.release()
            self._timer = None
        rest = self.parser.take_rest()  # the client may have sent its first frames already
        self.parser = _upgraded_parser(self.config)  # nothing more is parsed: one shared, idle parser
        protocol = upgrade.start(self)
        transport.set_protocol(protocol)
        if rest:
            protocol.data_received(rest)
        return False

    # -- the thread pool (see reactor.pool) -------------------------------------

    def _offload(self, request: Request, work: Work, input_done: bool) -> bool:
        """Hand ``request`` to the pool (the move ``offload`` to ``IN_POOL``);
        False if the pool is full (admission control: answer 503)."""
        pool = self.owner.pool
        config = self.config
        handoff = Handoff(
            self,
            self.loop,
            work,
            f"{request.method} {escape(request.route or request.path)}",
            config.write_high_water_bytes,
            config.body_timeout_s,
            config.write_timeout_s,
            input_done,
            self._started + config.request_timeout_s,
        )
        if pool is None or not pool.submit(handoff):
            error_log.warning(
                "503 for %s %s from %s: the thread pool's queue is full",
                request.method,
                escape(request.path),
                self._client(),
            )
            return False
        self._move("offload")
        self._handoff = handoff
        # Reading goes on: a client that leaves (a reset) is noticed at once,
        # and a pipelined request waits in the parser, up to one head's worth.
        return True

    def _offload_streaming(self, request: Request, work: Work) -> None:
        """At the head of a request with a body: the worker starts now and
        reads the body as it arrives (``wsgi.input``)."""
        if request.expect_continue and not self.parser.buffered:
            self.transport.write(informational(100))
        if not self._offload(request, work, False):
            # The body is unread: the connection closes after the 503.
            self._move("request")
            self._send_response(request, _busy(), keep_alive=False)
            if self.state is WRITING:
                self._last()
            return
        self.parser.body_sink = self._body_piece
        self._pump_body()

    def _body_piece(self, data: bytes) -> None:
        """The parser's sink for a streamed body: the worker's input."""
        handoff = self._handoff
        if handoff is not None and handoff.feed(data):
            self.transport.pause_reading()  # until the worker has taken most of it

    def _pump_body(self) -> None:
        """In ``IN_POOL``: parse what arrived of the body into the worker's input."""
        handoff = self._handoff
        parser = self.parser
        if handoff is None or handoff.input_done:
            # The body is in: a pipelined request waits, up to one head's worth.
            if parser.buffered > self.config.max_head_bytes:
                self.transport.pause_reading()
            return
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            error_log.info("%d from %s: %s", exc.status, self._client(), escape(str(exc)))
            handoff.feed_end(f"bad request body: {exc}")
            self.transport.pause_reading()
            return
        if event is Event.END_OF_MESSAGE:
            parser.body_sink = None
            handoff.feed_end()

    def pool_answer(self, handoff: Handoff, response: Response) -> None:
        """On the loop: the worker's response (its body may still be coming)."""
        if handoff is not self._handoff or self.state is not IN_POOL:
            release_body(response.body)
            return
        request = self.request
        assert request is not None
        self._move("answer")
        self.parser.body_sink = None
        # A body the handler left unread (or that broke) ends the connection.
        keep_alive = handoff.input_done and handoff.intact
        body = response.body
        if isinstance(body, PoolStream):
            handoff.attach_stream(body)  # released with the stream (_finish_response)
        else:
            self._handoff = None
        if keep_alive:
            self.transport.resume_reading()
        keep_alive = self._send_response(request, response, keep_alive, self.loop.time())
        if self.state is WRITING and self._response_done(keep_alive):
            self._answer_buffered()
        self._sync_timer()

    def pool_failed(self, handoff: Handoff, exc: BaseException) -> None:
        """On the loop: the handler raised (or broke its response) in the worker."""
        if handoff is not self._handoff:
            return
        if self.state is IN_POOL:
            request = self.request
            assert request is not None
            self._handoff = None
            self._move("answer")
            self.parser.body_sink = None
            # A body that never came in time is the client's fault: 408, as on the loop.
            timed_out = isinstance(exc, ClientDisconnected) and not handoff.input_done
            self._send_response(request, _plain(408 if timed_out else 500), keep_alive=False)
            if self.state is WRITING:
                self._last()
        elif self.state is PUSHING:
            # The worker has handed its head over, so the application was told
            # it is sent (a start_response with exc_info re-raises): the
            # client gets that head and a cut body, never a 500 in its place,
            # even when the loop has not flushed it yet.
            self._response_failed(
                exc if isinstance(exc, Exception) else RuntimeError(repr(exc)), replace=False
            )
        self._sync_timer()

    def pool_resume_reading(self, handoff: Handoff) -> None:
        """On the loop: the worker has taken most of its unread body."""
        if handoff is self._handoff and self.state is IN_POOL and not handoff.input_done:
            self.transport.resume_reading()

    def _send_response(
        self, request: Request, response: Response, keep_alive: bool = True, now: float | None = None
    ) -> bool:
        """Frame ``response`` and write its head (and a bytes body); whether
        the connection may persist after it: the one place that is decided."""
        keep_alive = keep_alive and request.keep_alive and self.owner.accepting
        status = response.status
        body = response.body
        producer: Producer | None = None
        try:
            if body.__class__ is bytes:
                length: int | None = len(body)
            else:
                producer = producer_for(body)  # TypeError for a body it cannot send
                if producer is None:
                    length = len(body)
                else:
                    body = b""
                    length = producer.length
            framing = frame(status, request.version, length)
            if framing is CLOSE:
                keep_alive = False  # RFC 9112 §6.3: the body ends when we close
            head = encode_head(
                response,
                length if framing is LENGTH else None,
                keep_alive=keep_alive,
                http10_keep_alive=keep_alive and request.version == "HTTP/1.0",
                chunked=framing is CHUNKED,
            )
        except Exception as exc:
            return self._bad_response(request, response, producer, exc)
        if framing is NONE or request.method == "HEAD":
            if producer is not None:
                release_body(producer)
                producer = None
            body = b""
        transport = self.transport
        if len(body) <= _COALESCE_BYTES:
            transport.write(head + body if body else head)
        else:
            transport.write(head)
            transport.write(body)
        self.request = None
        if producer is None:
            self._record(request, status, len(body), now)
            return keep_alive
        self._body = _Streaming(
            producer,
            framing is CHUNKED,
            keep_alive,
            request,
            status,
            head,
            f"{request.method} {request.route or request.path}",
        )
        if producer.pushed:
            self._move("push")
            try:
                producer.start(self)
            except Exception as exc:
                self._response_failed(exc)
        else:
            self._move("stream")
            transport.pause_reading()
            transport.set_producer(True)
        return keep_alive

    def _bad_response(
        self, request: Request, response: Response, producer: Producer | None, exc: Exception
    ) -> bool:
        """A response that cannot be framed. Nothing has been written yet:
        answer 500, and close, since the handler that made this response may
        have made others like it."""
        error_log.error(
            "bad response from handler for %s %s: %s",
            request.method,
            escape(request.route or request.path),
            _describe(exc),
        )
        release_body(producer if producer is not None else response.body)
        return self._send_response(request, _plain(500), False)

    def _reject(self, exc: ProtocolError) -> None:
        """Answer a protocol error once, then read nothing more and close."""
        request = self.request
        if request is None:
            self._shown = str(self.client[0])  # no head: no proxy has named a client
        error_log.info(
            "%d from %s: %s",
            exc.status,
            self._client(),
            escape(str(exc)).encode("ascii", "backslashreplace").decode("ascii"),
        )
        self._move("reject")
        self.request = None
        response = _plain(exc.status)
        head = encode_head(response, len(response.body), keep_alive=False)
        transport = self.transport
        transport.write(head + response.body)
        self.owner.metrics.rejected += 1
        self._record(request if request is not None else exc.request_line, exc.status, len(response.body))
        transport.close(linger=not self.parser.at_rest)

    def _record(
        self, request: Request | str | None, status: int, size: int, now: float | None = None
    ) -> None:
        """Count a finished response in the metrics and write its access log line."""
        duration_s = (now if now is not None else self.loop.time()) - self._started
        self.owner.metrics.observe(status, duration_s)
        if self.config.access_log and access_log.isEnabledFor(20):
            access(self._client(), request, status, size, duration_s)

    def _client(self) -> str:
        return self._shown

    # -- the body sink (see reactor.http.bodies.BodySink) --------------------

    @property
    def writable(self) -> bool:
        """Whether the unsent output is at or below the high-water mark."""
        return self.state is not CLOSED and self.transport.buffered <= self.config.write_high_water_bytes

    def write_body(self, data: bytes) -> None:
        """Write a piece of the streamed body, framed as the response says."""
        body = self._body
        assert body is not None
        body.sent += len(data)
        transport = self.transport
        if body.chunked:
            for part in encode_chunk(data):
                transport.write(part)
        else:
            transport.write(data)

    def send_file(self, file: Any, offset: int, count: int) -> int:
        sent = self.transport.sendfile(file, offset, count)
        assert self._body is not None
        self._body.sent += sent
        return sent

    def _end_body(self) -> None:
        """The body is complete: its last chunk, then the next request (or close)."""
        body = self._body
        assert body is not None
        if body.chunked:
            self.transport.write(LAST_CHUNK)
        streaming = self.state is STREAMING
        self._finish_response()
        self._move("end")
        transport = self.transport
        if streaming:
            transport.set_producer(False)
            transport.resume_reading()
        if self._response_done(body.keep_alive and self.owner.accepting):
            self._answer_buffered()
        self._sync_timer()

    def _finish_response(self) -> None:
        """The body producer is done (or failed): release it and log the response."""
        body, self._body = self._body, None
        assert body is not None
        self._handoff = None  # a pool stream's handoff, if any: done with
        release_body(body.producer)
        self._record(body.request, body.status, body.sent)

    def _response_failed(self, exc: Exception, replace: bool = True) -> None:
        """Sending the streamed response failed (its producer raised, or gave
        something that is not a body): answer 500 instead if no byte of its
        head has left yet (and ``replace``), else end the connection without
        the rest.

        Either way the connection ends: it is never left with a half-sent
        response and no timer.
        """
        body, self._body = self._body, None
        assert body is not None
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            handoff.cancel()  # the worker streaming it stops at its next write
        error_log.error("response to %s failed: %s", escape(body.route), _describe(exc), exc_info=exc)
        release_body(body.producer)
        transport = self.transport
        transport.set_producer(False)
        if replace and transport.retract(body.head):
            response = _plain(500)
            transport.write(encode_head(response, len(response.body), keep_alive=False) + response.body)
            self._record(body.request, 500, len(response.body))
        else:
            # Too late for a 500: what is queued goes out, then the connection
            # closes without the final chunk, so the client sees a cut response.
            self._record(body.request, body.status, body.sent)
        if self.state is not CLOSED:
            self._move("fail")
            transport.close(linger=not self.parser.at_rest)

    # -- the push stream's side (see reactor.streams.StreamSink) ------------

    def stream_write(self, data: bytes) -> None:
        """A push stream's producer wrote ``data``: frame it (sent on the next pass)."""
        if self.state is PUSHING:
            self.write_body(data)

    def stream_end(self) -> None:
        """The push stream's producer closed it: end the body."""
        if self.state is PUSHING:
            self._end_body()

    def stream_writable(self) -> bool:
        """Whether the unsent output is at or below the high-water mark."""
        return self.writable

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection now."""
        self.transport.abort()

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response.

        A push stream never ends by itself, so it is ended here, normally
        (with its last chunk): an SSE client reconnects to the next server.
        Responses framed from now on carry ``Connection: close`` (the owner
        is no longer accepting).
        """
        state = self.state
        transport = self.transport
        if (state is IDLE and not transport.buffered) or (
            state is READING_HEADERS and not self.parser.in_message
        ):
            self.close()
        elif state is IDLE or state is WRITING:
            self._last()
        elif state is PUSHING:
            assert self._body is not None
            stream = self._body.producer.body
            if not getattr(stream, "ends_itself", False):  # a worker's ends when it is sent
                stream.close()
        elif state is UPGRADED:
            cast(Any, transport.protocol).shutdown()  # the WebSocket: Close 1001


class ProxyProtocolReader:
    """The first protocol of a ``--proxy-protocol`` connection: it reads the
    PROXY header, then hands the transport to the HTTP connection.

    The connection is made at once, so its header deadline (from accept)
    covers the PROXY header too. Bytes after the header are the first of the
    HTTP stream and go to the connection unchanged. Only a peer the server
    trusts gets here (see ``Server._accept``).
    """

    __slots__ = ("connection", "transport", "_reader")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._reader = ProxyHeaderReader(connection.config.max_head_bytes)

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.connection.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        try:
            header = self._reader.feed(data)
        except ProxyProtocolError as exc:
            error_log.info("bad PROXY header from %s: %s", connection._client(), escape(str(exc)))
            self.transport.abort()
            return
        if header is None:
            return
        if header.source is not None:
            connection.proxied(header.source)
        self.transport.set_protocol(connection)  # from now on, HTTP
        if header.rest:
            connection.data_received(header.rest)

    def eof_received(self) -> None:
        error_log.debug("%s closed before its PROXY header ended", self.connection._client())
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        """Nothing is written before the header is read."""

    def resume_writing(self) -> None:
        """Nothing is written before the header is read."""

    def resume_producing(self) -> None:
        """Nothing is produced before the header is read."""


class _Streaming:
    """A response body being streamed or pushed: exists only while one is."""

    __slots__ = ("producer", "chunked", "keep_alive", "request", "status", "sent", "head", "route")

    def __init__(
        self,
        producer: Producer,
        chunked: bool,
        keep_alive: bool,
        request: Request,
        status: int,
        head: bytes,
        route: str,
    ) -> None:
        self.producer = producer
        self.chunked = chunked  # frame pieces as chunks (else: raw, close-delimited or sized)
        self.keep_alive = keep_alive  # the head promised persistence (no Connection: close)
        self.request = request  # for the access log line written at the end
        self.status = status
        self.sent = 0  # body bytes so far
        self.head = head  # the response's head, as written (to tell whether it has left)
        self.route = route  # method and route, for the error log


# The parser every upgraded connection holds instead of its own: it never
# sees a byte, so one (made with the first config that needs it) serves all.
_UPGRADED_PARSER: list[RequestParser] = []


def _upgraded_parser(config: Config) -> RequestParser:
    if not _UPGRADED_PARSER:
        _UPGRADED_PARSER.append(RequestParser(config))
    return _UPGRADED_PARSER[0]


def _describe(exc: BaseException) -> str:
    """``TypeError: message``, escaped, on one line."""
    return escape(f"{type(exc).__name__}: {exc}")


def _busy() -> Response:
    """Admission control's answer: the pool is full, come back in a second."""
    return Response.text(status_text(503, "the server is busy"), 503, headers=[("Retry-After", "1")])


def _plain(status: int) -> Response:
    return Response.text(status_text(status), status)
