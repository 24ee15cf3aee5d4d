"""The thread pool: where blocking application code runs, off the loop.

The loop keeps every socket; threads only run application code. A request
whose handler may block (a route marked ``blocking=True``, every WSGI
request) is handed to the pool as a :class:`Handoff`, and its connection
waits in ``IN_POOL`` meanwhile, reading nothing but that request's body. The
two threads meet only in the handoff:

* **loop -> worker**: the request body, piece by piece as it arrives
  (:meth:`Handoff.feed`); the loop stops reading the socket while the worker
  has more than :data:`INPUT_BYTES` unread, and the worker asks it to read
  again when it has taken most of it (:meth:`Handoff.read`).
* **worker -> loop**: the response, through :meth:`Loop.call_soon_threadsafe
  <reactor.loop.Loop.call_soon_threadsafe>` (:meth:`Handoff.respond`); a body
  the worker pulls from an iterator goes piece by piece (:meth:`Handoff.send`),
  and the worker waits while the connection's unsent output is above
  ``write_high_water_bytes``, so a slow client holds one thread, never the
  loop and never more than a few high-water marks of memory.

Every wait has a deadline (``body_timeout_s`` for a read, ``write_timeout_s``
for a write), and a client that leaves makes the worker's next read or write
raise :class:`ClientDisconnected`. A thread is never killed: a handler that
never returns keeps its thread; the server logs it once it has run past
``thread_stuck_s`` (see :meth:`Pool.report_stuck`).

Admission control: at most ``threads`` handoffs run and ``thread_queue_count``
wait; past that :meth:`Pool.submit` refuses, and the connection answers 503
with ``Retry-After`` at once instead of queuing without limit.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .http.bodies import register_producer
from .http.response import FileBody, Response
from .log import error_log
from .streams import PushStream, StreamClosed, _PushProducer

if TYPE_CHECKING:
    from .loop import Loop

__all__ = [
    "INPUT_BYTES",
    "WAIT_BUCKETS_S",
    "ClientDisconnected",
    "Handoff",
    "Offload",
    "Pool",
    "PoolStream",
    "default_threads",
]

#: Upper bounds of the pool's queue-wait histogram, in seconds.
WAIT_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

#: Unread request body a worker may have waiting for it; past it the loop stops
#: reading that socket (four 64 KiB reads).
INPUT_BYTES = 262144


def default_threads() -> int:
    """4, waitress's default: threads run Python under one GIL, so more of them
    add no CPU, only overlap for code that waits (a database, a file, a
    service); 4 covers a few slow calls at once without the memory and
    switching of dozens. gunicorn's gthread worker defaults to 1 thread,
    which lets a single slow call hold every request up."""
    return 4


class Offload(Exception):
    """Raised by an application's ``handle()``: run ``work(handoff)`` in the
    pool instead of answering now. An exception, so that the plain handler's
    path through :meth:`Connection._respond <reactor.connection.Connection>`
    pays nothing for it: a ``try`` costs no instruction until something is raised."""

    def __init__(self, work: Work) -> None:
        super().__init__()
        self.work = work


class ClientDisconnected(ConnectionError):
    """The client left (or stopped sending or reading past a deadline):
    raised by a worker's next read or write. An :class:`OSError`, as a
    socket's own errors are, so WSGI frameworks treat it as one."""


# Makes each Handoff's Condition once, whichever thread asks for it first.
_MAKING_COND = threading.Lock()

#: What runs in a worker: it answers through the handoff it is given.
Work = Callable[["Handoff"], None]


class HandoffOwner(Protocol):
    """The connection side of a handoff (every method runs on the loop)."""

    def pool_answer(self, handoff: Handoff, response: Response) -> None: ...
    def pool_failed(self, handoff: Handoff, exc: BaseException) -> None: ...
    def pool_resume_reading(self, handoff: Handoff) -> None: ...


class PoolStream(PushStream):
    """A response body that a worker pushes as it pulls the application's
    iterator; ``length`` is its ``Content-Length`` when the application gave one."""

    __slots__ = ("length",)

    #: Graceful shutdown lets it end by itself (its worker is still sending).
    ends_itself = True

    def __init__(self, content_type: str, length: int | None) -> None:
        super().__init__(content_type)
        self.length = length


class _PoolStreamProducer(_PushProducer):
    __slots__ = ()

    body: PoolStream

    @property
    def length(self) -> int | None:
        return self.body.length


register_producer(PoolStream, _PoolStreamProducer)


class Handoff:
    """One request handed to the pool: the meeting point of loop and worker.

    Every field that both threads touch is guarded by :attr:`cond`; the
    loop's side never waits on it for longer than a few assignments.
    """

    __slots__ = (
        "owner",
        "loop",
        "work",
        "label",
        "high_water_bytes",
        "read_timeout_s",
        "write_timeout_s",
        "request_deadline",
        "submitted",
        "started",
        "_cond",
        "_input",
        "_unread",
        "input_done",
        "_input_error",
        "_reading_paused",
        "gone",
        "stopped",
        "responded",
        "stream",
        "_inflight",
        "_held",
        "_to_send",
        "warned",
    )

    def __init__(
        self,
        owner: HandoffOwner,
        loop: Loop,
        work: Work,
        label: str,
        high_water_bytes: int,
        read_timeout_s: float,
        write_timeout_s: float,
        input_done: bool = True,
        request_deadline: float = float("inf"),
    ) -> None:
        self.owner: HandoffOwner | None = owner
        self.loop = loop
        self.work = work
        self.label = label  # "GET /route", escaped, for the log
        self.high_water_bytes = high_water_bytes
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        #: When the whole body must be in (``time.monotonic``, the loop's clock):
        #: ``request_timeout_s`` from the request's first byte, never refreshed.
        self.request_deadline = request_deadline
        self.submitted = 0.0
        self.started = 0.0  # when a worker took it (0: still queued)
        self._cond: threading.Condition | None = None  # made on first use: see cond
        self._input: deque[bytes] = deque()
        self._unread = 0
        self.input_done = input_done  # the whole body has arrived
        self._input_error: str | None = None
        self._reading_paused = False
        self.gone = False  # the client left: reads and writes raise
        self.stopped = False  # the body is not wanted (HEAD, 204, the client left)
        self.responded = False  # the head is on its way to the loop
        self.stream: PoolStream | None = None
        self._inflight = 0  # bytes posted to the loop, not yet queued on the transport
        self._held = False  # the transport is above its high-water mark
        self._to_send: int | None = None  # Content-Length bytes still owed
        self.warned = False  # the stuck-handler warning was logged

    @property
    def cond(self) -> threading.Condition:
        """What guards the fields both threads touch, and what each waits on.

        Made on first use: a request without a body whose answer fits in one
        piece (most of them) never needs one, and making a Condition runs
        Python (1.5 µs by timeit, a fiftieth of a Flask hello-world).
        """
        cond = self._cond
        if cond is None:
            with _MAKING_COND:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(threading.Lock())
        return cond

    @property
    def intact(self) -> bool:
        """Whether the request body (so far) was well formed."""
        return self._input_error is None

    # -- the loop's side -------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """A piece of the request body arrived; True: stop reading the socket."""
        with self.cond:
            self._input.append(data)
            self._unread += len(data)
            self.cond.notify_all()
            if self._unread > INPUT_BYTES:
                self._reading_paused = True
                return True
            return False

    def feed_end(self, error: str | None = None) -> None:
        """The body is complete (or broken: ``error`` says how)."""
        with self.cond:
            self.input_done = True
            self._input_error = error
            self.cond.notify_all()

    def cancel(self) -> None:
        """The client is gone: the worker's next read or write raises."""
        with self.cond:
            self.gone = self.stopped = True
            self.owner = None
            self.cond.notify_all()

    def _stream_closed(self, stream: PushStream) -> None:
        with self.cond:
            self.stopped = True  # HEAD or a body-less status: drop what is sent
            self.cond.notify_all()

    def _drained(self, stream: PushStream) -> None:
        with self.cond:
            self._held = False
            self.cond.notify_all()

    def attach_stream(self, stream: PoolStream) -> None:
        """The connection took the streamed response (on the loop)."""
        stream.on_close(self._stream_closed)
        stream.on_drain(self._drained)

    def _queue(self, stream: PoolStream, data: bytes) -> None:
        """On the loop: queue a piece the worker sent on the transport."""
        try:
            stream.send(data)
            held = not stream.writable
        except StreamClosed:
            held = False
        with self.cond:
            self._inflight -= len(data)
            self._held = held
            self.cond.notify_all()

    def _resume_reading(self) -> None:
        owner = self.owner
        if owner is not None:
            owner.pool_resume_reading(self)

    def _answer(self, response: Response) -> None:
        owner = self.owner
        if owner is None:
            release_body(response.body)  # the client left while the handler ran
            return
        owner.pool_answer(self, response)

    def _fail(self, exc: BaseException) -> None:
        owner = self.owner
        if owner is not None:
            owner.pool_failed(self, exc)

    # -- the worker's side -------------------------------------------------------

    def read(self, size: int = -1, partial: bool = False) -> bytes:
        """Up to ``size`` bytes of the body (all of it for -1); b"" at its end.

        Waits for ``size`` bytes (or the end), or with ``partial`` for any;
        at most ``read_timeout_s`` between arrivals.

        Raises:
            ClientDisconnected: the client left, the body was malformed, or
                nothing arrived before the deadline.
        """
        cond = self.cond
        with cond:
            while True:
                if self.gone:
                    raise ClientDisconnected("the client disconnected")
                if self._input_error is not None:
                    raise ClientDisconnected(self._input_error)
                # All of it asked for: wait for the end. A size: wait for that
                # much, or the end, or a full buffer (the loop has stopped
                # reading, so no more comes until some is taken).
                if (
                    self.input_done
                    or 0 <= size <= self._unread
                    or (size >= 0 and (self._reading_paused or (partial and self._unread)))
                ):
                    break
                left = self.request_deadline - time.monotonic()
                if left <= 0:
                    raise ClientDisconnected("the request body did not arrive before the request timeout")
                if not cond.wait(min(self.read_timeout_s, left)) and left > self.read_timeout_s:
                    raise ClientDisconnected(f"no request body for {self.read_timeout_s:g} s")
            data = self._take(size)
            resume = self._reading_paused and self._unread <= INPUT_BYTES // 4
            if resume:
                self._reading_paused = False
        if resume:
            self.loop.call_soon_threadsafe(self._resume_reading)
        return data

    def _take(self, size: int) -> bytes:
        pieces = self._input
        if size < 0 or size >= self._unread:
            data = b"".join(pieces)
            pieces.clear()
        else:
            out = []
            left = size
            while left:
                piece = pieces[0]
                if len(piece) <= left:
                    out.append(pieces.popleft())
                    left -= len(piece)
                else:
                    out.append(piece[:left])
                    pieces[0] = piece[left:]
                    left = 0
            data = b"".join(out)
        self._unread -= len(data)
        return data

    def respond(self, response: Response) -> None:
        """Hand the response to the loop. A body that is an iterator is pulled
        here, in the worker: what it yields before the first high-water mark
        is sent with the head (in one piece, with a ``Content-Length``, if
        that is all of it), the rest through :meth:`send`."""
        body = response.body
        if type(body) is bytes or isinstance(body, (FileBody, PushStream)):
            self._post_response(response)
            return
        if not isinstance(body, Iterable):
            self._post_response(response)  # the connection answers 500 for it
            return
        pieces = iter(body)
        try:
            first, done = _gather(pieces, self.high_water_bytes)
        except BaseException:
            release_body(body)
            raise
        if done:
            release_body(body)
            response.body = first
            self._post_response(response)
            return
        try:
            self.begin(response, None)
            if first:
                self.send(first)
            for piece in pieces:
                self.send(piece)
            self.end()
        finally:
            release_body(body)

    def begin(self, response: Response, length: int | None) -> None:
        """Send the head of a response whose body follows through :meth:`send`
        (``length``: its Content-Length, or None for chunked)."""
        stream = PoolStream("application/octet-stream", length)
        response.body = stream
        self.stream = stream
        self._to_send = length
        self._post_response(response)

    def send(self, data: bytes | bytearray | str) -> None:
        """Send a piece of the body begun with :meth:`begin`; waits while the
        connection's unsent output is above its high-water mark.

        Raises:
            ClientDisconnected: the client left, or read nothing for
                ``write_timeout_s``.
        """
        if not isinstance(data, bytes):
            data = data.encode() if isinstance(data, str) else bytes(data)
        stream = self.stream
        assert stream is not None, "send() before begin()"
        if self._to_send is not None:
            data = data[: self._to_send]  # never past the Content-Length promised
            self._to_send -= len(data)
        if not data:
            return
        cond = self.cond
        high = self.high_water_bytes
        with cond:
            while not self.stopped and (self._held or self._inflight > high):
                if not cond.wait(self.write_timeout_s):
                    self.gone = self.stopped = True
                    raise ClientDisconnected(f"the client read nothing for {self.write_timeout_s:g} s")
            if self.gone:
                raise ClientDisconnected("the client disconnected")
            if self.stopped:
                return  # HEAD, or a status without a body
            self._inflight += len(data)
        self.loop.call_soon_threadsafe(self._queue, stream, data)

    def end(self) -> None:
        """The body begun with :meth:`begin` is complete."""
        stream = self.stream
        assert stream is not None
        if self._to_send:
            # Fewer bytes than the Content-Length promised: the client must
            # not take the next response for the rest of this one.
            self.loop.call_soon_threadsafe(
                self._fail, ClientDisconnected(f"the body ended {self._to_send} bytes short")
            )
            return
        self.loop.call_soon_threadsafe(stream.close)

    def _post_response(self, response: Response) -> None:
        self.responded = True
        self.loop.call_soon_threadsafe(self._answer, response)

    def run(self) -> None:
        """The worker runs the work; whatever happens, the loop hears of it."""
        try:
            self.work(self)
        except BaseException as exc:
            if not self.gone:
                error_log.error("handler for %s failed in the pool", self.label, exc_info=exc)
            self.loop.call_soon_threadsafe(self._fail, exc)
        else:
            if not self.responded:
                self.loop.call_soon_threadsafe(
                    self._fail, RuntimeError("the handler returned without a response")
                )


def _gather(pieces: Iterator[Any], limit: int) -> tuple[bytes, bool]:
    """Pull pieces until their bytes pass ``limit`` or the iterator ends:
    ``(bytes, ended)``."""
    out: list[bytes] = []
    size = 0
    for piece in pieces:
        if not isinstance(piece, bytes):
            if isinstance(piece, str):
                piece = piece.encode()
            elif isinstance(piece, (bytearray, memoryview)):
                piece = bytes(piece)
            else:
                raise TypeError(f"a streamed body yielded {type(piece).__name__}, not bytes or str")
        out.append(piece)
        size += len(piece)
        if size > limit:
            return b"".join(out), False
    return b"".join(out), True


def release_body(body: object) -> None:
    """Let go of a response body or its producer that will not be sent on
    (close its file, end its stream or iterator); the pool and the
    connection both use it."""
    if body is None or isinstance(body, bytes):
        return
    close = getattr(body, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            error_log.exception("closing the body %r failed", body)


class Pool:
    """A fixed set of threads, started as needed, and a bounded queue.

    Args:
        threads: how many handlers run at once.
        queue_count: how many may wait for a thread; past it :meth:`submit` refuses.
        stuck_s: a handler running longer is logged by :meth:`report_stuck`.
        loop: the loop that submits; given, sleeping workers are woken once
            its pass is over (see :meth:`submit`), else at once.

    One plain lock guards the queue and the figures; an idle worker sleeps on
    a lock of its own, which is released to hand it work. Both are C-level
    locks: a handoff costs two acquire/release pairs and, when a worker
    sleeps, one wakeup, where a :class:`threading.Condition` would allocate a
    lock and run a few dozen lines of Python for each wait.
    """

    def __init__(self, threads: int, queue_count: int, stuck_s: float, loop: Loop | None = None) -> None:
        self.threads = threads
        self.queue_count = queue_count
        self.stuck_s = stuck_s
        self._loop = loop
        self._queue: deque[Handoff] = deque()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._idle = 0  # workers not running a handoff (asleep, or awake and about to look)
        # The sleeping workers' locks, the most recent last (it is woken
        # first: its stack and the code it runs are still in the cache).
        self._sleeping: list[threading.Lock] = []
        self._wake_due = False  # a wakeup is set for the end of the loop's pass
        self._running: set[Handoff] = set()
        self._closing = False
        #: Figures for the metrics and the live view (written under the lock).
        self.submitted = 0
        self.completed = 0
        self.rejected = 0
        self.wait_counts = [0] * (len(WAIT_BUCKETS_S) + 1)  # the last: +Inf
        self.wait_sum_s = 0.0
        self.stuck = 0

    @property
    def busy(self) -> int:
        """Handlers running now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """Handoffs waiting for a thread."""
        return len(self._queue)

    def submit(self, handoff: Handoff) -> bool:
        """Queue ``handoff`` for a thread; False (and nothing queued) past the bound.

        Called on the loop. A sleeping worker is woken when the loop's pass is
        over, not here: on one core, a worker woken now would take the CPU from
        the loop at once, find the interpreter lock held (the loop runs Python
        until it waits) and sleep again, two context switches for nothing, and
        the loop would lose the lock to it at each of its next system calls.
        Woken as the loop goes to wait, the workers find the lock free, and
        they run every handoff of the pass between them. (Measured with
        ``/proc/PID/task/*/status`` under ``wrk -c50`` on the Flask
        benchmark, docs/wsgi.md: 3.3 context switches a request before, 0.6
        after.)
        """
        with self._lock:
            queue = self._queue
            if self._closing or len(queue) >= self.queue_count + self._idle:
                self.rejected += 1
                return False
            handoff.submitted = time.monotonic()
            queue.append(handoff)
            self.submitted += 1
            sleeping = self._sleeping
            # Each idle worker that is awake (finishing, woken or just started)
            # takes one handoff next: the rest need a worker woken or started.
            unserved = len(queue) - (self._idle - len(sleeping))
            if unserved > len(sleeping) and len(self._workers) < self.threads:
                self._idle += 1  # it is started for this handoff
                unserved -= 1
                thread = threading.Thread(target=self._serve, name=f"reactor-pool-{len(self._workers)}")
                thread.daemon = True  # never joined past the shutdown timeout
                self._workers.append(thread)
                thread.start()
            if unserved > 0 and sleeping and not self._wake_due:
                if self._loop is None:
                    sleeping.pop().release()
                else:
                    self._wake_due = True
                    self._loop.call_before_wait(self._wake)
        return True

    def _wake(self) -> None:
        """On the loop, before it waits: wake a sleeping worker for each
        queued handoff that no awake one will take."""
        with self._lock:
            self._wake_due = False
            sleeping = self._sleeping
            unserved = len(self._queue) - (self._idle - len(sleeping))
            for _ in range(min(unserved, len(sleeping))):
                sleeping.pop().release()

    def _serve(self) -> None:
        lock = self._lock
        queue = self._queue
        wake = threading.Lock()
        wake.acquire()  # held: acquiring it again sleeps until submit() releases it
        while True:
            with lock:
                if not queue:
                    if self._closing:
                        self._idle -= 1
                        return
                    self._sleeping.append(wake)
                    handoff = None
                else:
                    handoff = queue.popleft()
                    self._idle -= 1
                    handoff.started = now = time.monotonic()
                    waited = now - handoff.submitted
                    self.wait_counts[bisect.bisect_left(WAIT_BUCKETS_S, waited)] += 1
                    self.wait_sum_s += waited
                    self._running.add(handoff)
            if handoff is None:
                wake.acquire()
                continue
            try:
                handoff.run()
            finally:
                with lock:
                    self._running.discard(handoff)
                    self.completed += 1
                    self._idle += 1
                del handoff  # nothing of the request outlives it here

    def report_stuck(self) -> int:
        """Log each handler that has run past ``stuck_s`` (once); how many run so long."""
        now = time.monotonic()
        with self._lock:
            long = [h for h in self._running if now - h.started > self.stuck_s]
        for handoff in long:
            if not handoff.warned:
                handoff.warned = True
                self.stuck += 1
                error_log.warning(
                    "handler for %s has run in the pool for %.0f s: its thread is held (%d of %d busy)",
                    handoff.label,
                    now - handoff.started,
                    self.busy,
                    self.threads,
                )
        return len(long)

    def close(self, timeout_s: float) -> int:
        """Let running handlers finish, for at most ``timeout_s``; the number
        still running then (their threads are left to end by themselves: a
        thread is never killed)."""
        with self._lock:
            self._closing = True
            self._loop = None  # submit refuses from now on; the loop may be freed
            sleeping, self._sleeping = self._sleeping, []
        for wake in sleeping:
            wake.release()
        deadline = time.monotonic() + timeout_s
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self.busy  # idle threads end at once; these run a handler still
        if left:
            error_log.warning("%d handlers still running in the pool at exit: their threads are left", left)
        return left

    def snapshot(self) -> dict[str, Any]:
        """The pool's figures, for the live view."""
        return {
            "threads": self.threads,
            "started": len(self._workers),
            "busy": self.busy,
            "queued": self.queued,
            "queue_bound": self.queue_count,
            "completed": self.completed,
            "rejected": self.rejected,
            "stuck": self.stuck,
            "wait_buckets_s": list(WAIT_BUCKETS_S),
            "wait_counts": list(self.wait_counts),
        }
