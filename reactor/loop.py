"""The event loop: one selector, a timer heap, a ready queue and signals.

Theory of operation
-------------------
Every pass of :meth:`Loop.run_once` does three things, in this order:

1. Wait in ``selector.select(timeout)``. The timeout is 0 when callbacks are
   ready, the time to the earliest timer when there is one, and otherwise
   unbounded: an idle loop costs nothing.
2. Call the handler stored with each ready file object with the event mask.
3. Move every timer that is due to the ready queue, then run the callbacks that
   were ready when this step began (callbacks they schedule wait for the next
   pass, so a callback that reschedules itself cannot starve the selector).

Before the wait of the next pass, the callbacks given to
:meth:`Loop.call_before_wait` during this one run, once each.

Timers live on a binary heap of ``(when, timer)`` entries; each timer knows
its one live entry, so an entry it no longer points to is stale. Cancelling a
timer only marks it (O(1)); its entry is dropped when it reaches the top of the
heap, and the heap is rebuilt when more than half of it is dead, so it never
fills with dead entries. A cancelled timer can be re-armed with
:meth:`Timer.reset`, which reuses its heap entry when the new deadline is not
earlier than the one the entry sorts by: a connection that goes idle after every
request moves its keep-alive deadline forward without a heap push.

Signals are delivered through a wakeup fd (:func:`signal.set_wakeup_fd`): the C
signal handler writes the signal number into a socket pair, the selector wakes
up, and the handler registered with :meth:`Loop.add_signal_handler` runs
between events like any other callback.

This module knows sockets and file descriptors, not HTTP; it imports nothing
else of the project.
"""

from __future__ import annotations

import heapq
import logging
import math
import select
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["EVENT_READ", "EVENT_WRITE", "FileLike", "Loop", "Timer"]

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
EPOLLIN = getattr(select, "EPOLLIN", 0)
EPOLLOUT = getattr(select, "EPOLLOUT", 0)

log = logging.getLogger("reactor.error")

# Rebuild the heap once dead entries outnumber live ones and there are at
# least this many of them (below it, a rebuild costs more than it saves).
_MIN_DEAD_TO_COMPACT = 64


class FileLike(Protocol):
    """Anything a selector can watch: it has a file descriptor."""

    def fileno(self) -> int: ...


IOHandler = Callable[[int], None]


class Timer:
    """A callback scheduled on the loop at a monotonic time.

    Returned by :meth:`Loop.call_at` and :meth:`Loop.call_later`.
    """

    __slots__ = ("when", "callback", "args", "cancelled", "_loop", "_entry")

    def __init__(
        self, loop: Loop, when: float, callback: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._loop = loop
        # Its live heap entry (which sorts by entry[0]), or None: not in the heap.
        self._entry: tuple[float, Timer] | None = None

    def __lt__(self, other: Timer) -> bool:
        # Only consulted when two entries have equal deadlines.
        return id(self) < id(other)

    def cancel(self) -> None:
        """Stop the timer from firing. O(1); safe to call twice."""
        if not self.cancelled:
            self.cancelled = True
            if self._entry is not None:
                self._loop._dead += 1

    def release(self) -> None:
        """Cancel the timer for good and let go of its callback and arguments.

        An object that keeps its own timer (a connection, a stream) and is
        that timer's callback forms a reference cycle with it; the timer's
        entry may also stay in the heap until it comes due. Releasing the
        timer when its owner is done breaks both, so that reference counting
        alone frees the owner. A released timer must not be reset.
        """
        self.cancel()
        self.callback = _released
        self.args = ()

    def reset(self, when: float) -> None:
        """Re-arm the timer (cancelled, pending or fired) to fire at ``when``."""
        loop = self._loop
        entry = self._entry
        if entry is not None and when >= entry[0]:
            # Its entry is still in the heap and sorts no later than the new
            # deadline: keep the entry; it is re-pushed when it comes due.
            if self.cancelled:
                self.cancelled = False
                loop._dead -= 1
            self.when = when
            return
        if entry is not None and not self.cancelled:
            loop._dead += 1  # the old entry becomes stale
        self.cancelled = False
        self.when = when
        loop._push(self)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"at {self.when:.3f}"
        return f"<Timer {state} {getattr(self.callback, '__qualname__', self.callback)}>"


class Loop:
    """A single-threaded selectors event loop."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        # With epoll, run_once polls it itself and finds each handler in the
        # selector's own table of keys (what EpollSelector.select does, less
        # its list of (key, mask) pairs and a call per event); any other
        # selector is used through select().
        if type(self.selector) is getattr(selectors, "EpollSelector", None):
            self._epoll: Any = self.selector._selector  # type: ignore[attr-defined]
            self._keys: dict[int, selectors.SelectorKey] = self.selector._fd_to_key  # type: ignore[attr-defined]
        else:
            self._epoll = None
            self._keys = {}
        self.time = time.monotonic
        #: The loop's clock, read once per pass; handlers use it to arm timers
        #: without another clock call.
        self.now = self.time()
        #: Passes of :meth:`run_once` so far (for metrics and the live view).
        self.iterations = 0
        self._ready: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._heap: list[tuple[float, Timer]] = []
        self._dead = 0
        self._stopping = False
        self._signal_handlers: dict[int, Callable[[int], object]] = {}
        # A socket pair wakes the selector from a signal (the C handler
        # writes the signal number) or from another thread (a zero byte).
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self.register(self._wakeup_r, EVENT_READ, self._read_wakeup)
        self._old_wakeup_fd: int | None = None
        # Whether the loop waits (or is about to wait) in the selector, and
        # whether a thread has written its wakeup byte since it began to.
        self._polling = False
        self._woken = False
        # Callbacks for the end of this pass, run once before the next wait.
        self._before_wait: list[Callable[[], object]] = []

    # -- file descriptors --------------------------------------------------

    def register(self, fileobj: FileLike | int, events: int, handler: IOHandler) -> None:
        """Watch ``fileobj`` for ``events``; call ``handler(mask)`` when ready."""
        self.selector.register(fileobj, events, handler)

    def modify(self, fileobj: FileLike | int, events: int, handler: IOHandler) -> None:
        """Change what ``fileobj`` is watched for."""
        self.selector.modify(fileobj, events, handler)

    def unregister(self, fileobj: FileLike | int) -> None:
        """Stop watching ``fileobj``. It must be registered."""
        self.selector.unregister(fileobj)

    # -- callbacks and timers ----------------------------------------------

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the next pass of the loop."""
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> None:
        """Like :meth:`call_soon`, from any thread: wakes the selector up.

        The wakeup byte is written only while the loop waits in the selector
        (and once per wait): a loop still running its pass sees the callback
        when it next chooses a timeout (0, since the ready queue is not
        empty), so a busy loop is spared a send, a recv and an event per
        callback. The order of the steps makes that safe under the GIL: the
        callback is queued before ``_polling`` is read here, and the loop sets
        ``_polling`` before it reads the queue to choose its timeout.
        """
        self._ready.append((callback, args))
        if self._polling and not self._woken:
            self._woken = True
            try:
                self._wakeup_w.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # the pipe is full, so the loop will wake up anyway

    def call_before_wait(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` once, when this pass is over: right before the
        loop next waits in the selector (on the loop thread only).

        For work that is best done in one go for everything a pass did, as
        the thread pool's wakeup of its workers (see :meth:`Pool.submit
        <reactor.pool.Pool.submit>`).
        """
        self._before_wait.append(callback)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run ``callback(*args)`` at monotonic time ``when``; returns the timer."""
        timer = Timer(self, when, callback, args)
        self._push(timer)
        return timer

    def call_later(self, delay_s: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run ``callback(*args)`` after ``delay_s`` seconds; returns the timer."""
        return self.call_at(self.time() + delay_s, callback, *args)

    def timer(self, callback: Callable[..., object], *args: Any) -> Timer:
        """A timer that is not armed yet: :meth:`Timer.reset` arms it."""
        timer = Timer(self, 0.0, callback, args)
        timer.cancelled = True
        return timer

    def pending_timers(self) -> int:
        """How many armed timers there are."""
        return len(self._heap) - self._dead

    def heap_size(self) -> int:
        """Entries on the timer heap, armed or dead (cancelled, or superseded)."""
        return len(self._heap)

    def upcoming(self, count: int, budget: int = 1024) -> list[Timer]:
        """The ``count`` armed timers due soonest, soonest first, without sorting the heap.

        A best-first walk down from the heap's root: a node's children are no
        earlier than it, so the next soonest entry is always a child of one
        already taken. A timer moved later by :meth:`Timer.reset` still sorts
        by its entry's older time (a connection's keep-alive reuses the entry
        its header deadline made): it goes back into the walk at its new time.
        The walk looks at ``budget`` entries at most, whatever the heap's size;
        if it runs out, the timers it has found or has moved back into the walk
        are returned, soonest first: armed, but maybe not the very soonest.
        """
        heap = self._heap
        found: list[Timer] = []
        # (deadline, timer, index in the heap, or -1 for a timer moved later).
        frontier: list[tuple[float, Timer, int]] = [(heap[0][0], heap[0][1], 0)] if heap else []
        while frontier and len(found) < count:
            when, timer, index = heapq.heappop(frontier)
            if index < 0:
                found.append(timer)
                continue
            if not budget:
                break
            budget -= 1
            if heap[index] is timer._entry and not timer.cancelled:
                if timer.when > when:
                    heapq.heappush(frontier, (timer.when, timer, -1))
                else:
                    found.append(timer)
            for child in (2 * index + 1, 2 * index + 2):
                if child < len(heap):
                    entry = heap[child]
                    heapq.heappush(frontier, (entry[0], entry[1], child))
        if len(found) < count:
            moved = sorted((item for item in frontier if item[2] < 0), key=lambda item: item[0])
            found.extend(item[1] for item in moved[: count - len(found)])
        return found

    def _push(self, timer: Timer) -> None:
        entry = timer._entry = (timer.when, timer)
        heapq.heappush(self._heap, entry)
        if self._dead > _MIN_DEAD_TO_COMPACT and self._dead * 2 > len(self._heap):
            self._compact()

    def _compact(self) -> None:
        live = []
        for entry in self._heap:
            timer = entry[1]
            if entry is timer._entry:
                if timer.cancelled:
                    timer._entry = None
                else:
                    live.append(entry)
        heapq.heapify(live)
        self._heap = live
        self._dead = 0

    # -- signals -----------------------------------------------------------

    def add_signal_handler(self, signum: int, handler: Callable[[int], object]) -> None:
        """Call ``handler(signum)`` on the loop when the process gets ``signum``.

        Works only in the main thread, as :func:`signal.signal` does.
        """
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wakeup_w.fileno())
        self._signal_handlers[signum] = handler
        # The Python-level handler does nothing: the wakeup fd carries the news.
        signal.signal(signum, _ignore_signal)

    def remove_signal_handlers(self) -> None:
        """Restore default signal handling and close the wakeup fd."""
        for signum in self._signal_handlers:
            signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
        self._signal_handlers.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None

    def _read_wakeup(self, mask: int) -> None:
        try:
            data = self._wakeup_r.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self.call_soon(handler, signum)

    # -- running -----------------------------------------------------------

    def stop(self) -> None:
        """Make :meth:`run` return after the current pass."""
        self._stopping = True

    def run(self) -> None:
        """Run passes until :meth:`stop` is called."""
        self._stopping = False
        while not self._stopping:
            self.run_once()

    def run_once(self) -> None:
        """One pass: select, dispatch I/O, fire due timers, run ready callbacks."""
        heap = self._heap
        ready = self._ready
        if self._before_wait:
            self._run_before_wait()
        self._polling = True  # before the queue is read: see call_soon_threadsafe
        epoll = self._epoll
        if epoll is None:
            self._select_once()
        else:
            if ready or self._stopping:
                timeout = 0.0
            elif heap:
                # epoll waits in whole milliseconds: round up, never wake early.
                timeout = math.ceil(max(0.0, heap[0][0] - self.time()) * 1e3) * 1e-3
            else:
                timeout = -1.0
            try:
                events = epoll.poll(timeout, len(self._keys))
            except InterruptedError:
                events = []
            self._polling = self._woken = False
            self.now = self.time()
            keys = self._keys
            for fd, flags in events:
                key = keys.get(fd)
                if key is None:
                    continue  # unregistered by a handler earlier in this pass
                if flags == EPOLLIN:
                    mask = EVENT_READ  # the common event, asked for (or it would not come)
                else:
                    # As EpollSelector.select: an error or a hang-up is both.
                    mask = (EVENT_WRITE if flags & ~EPOLLIN else 0) | (EVENT_READ if flags & ~EPOLLOUT else 0)
                    mask &= key.events
                try:
                    key.data(mask)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException:
                    log.exception("error in I/O handler %r", key.data)
        self.iterations += 1
        now = self.now
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            timer = entry[1]
            if entry is not timer._entry:
                self._dead -= 1  # a stale entry, superseded by a newer push
                continue
            timer._entry = None
            if timer.cancelled:
                self._dead -= 1
            elif timer.when > now:
                self._push(timer)  # reset() moved it later: wait for the new time
            else:
                timer.cancelled = True  # fired: a later reset() re-arms it
                ready.append((timer.callback, timer.args))

        if ready:
            for _ in range(len(ready)):
                callback, args = ready.popleft()
                try:
                    callback(*args)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException:
                    log.exception("error in callback %r", callback)

    def _select_once(self) -> None:
        """The I/O part of a pass through the selector's ``select()`` (no epoll)."""
        heap = self._heap
        if self._ready or self._stopping:
            timeout: float | None = 0.0
        elif heap:
            timeout = max(0.0, heap[0][0] - self.time())
        else:
            timeout = None
        events = self.selector.select(timeout)
        self._polling = self._woken = False
        self.now = self.time()
        for key, mask in events:
            try:
                key.data(mask)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                log.exception("error in I/O handler %r", key.data)

    def _run_before_wait(self) -> None:
        callbacks, self._before_wait = self._before_wait, []
        for callback in callbacks:
            try:
                callback()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                log.exception("error in callback %r", callback)

    def close(self) -> None:
        """Release the selector and the signal machinery."""
        self.remove_signal_handlers()
        # The heap and the ready queue hold callbacks, which may hold their
        # owners, which hold this loop: drop them rather than leave a cycle
        # (a timer and its heap entry also refer to each other).
        for _, timer in self._heap:
            timer._entry = None
        self._heap.clear()
        self._dead = 0
        self._ready.clear()
        self._before_wait.clear()
        self.selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()


def _ignore_signal(signum: int, frame: object) -> None:
    pass


def _released(*args: object) -> None:
    """The callback of a released timer: nothing."""
