"""The event loop: ready queue, timers, the heap's dead entries, signals."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
import weakref

import pytest

from reactor.loop import EVENT_READ, Loop


@pytest.fixture
def loop():  # type: ignore[no-untyped-def]
    loop = Loop()
    yield loop
    loop.close()


def test_call_soon_runs_in_order_and_new_callbacks_wait_a_pass(loop: Loop) -> None:
    order: list[str] = []
    loop.call_soon(order.append, "a")
    loop.call_soon(lambda: (order.append("b"), loop.call_soon(order.append, "c")))
    loop.run_once()
    assert order == ["a", "b"]
    loop.run_once()
    assert order == ["a", "b", "c"]


def test_timers_fire_in_deadline_order(loop: Loop) -> None:
    fired: list[int] = []
    now = loop.time()
    loop.call_at(now + 0.03, fired.append, 3)
    loop.call_at(now + 0.01, fired.append, 1)
    loop.call_at(now + 0.02, fired.append, 2)
    loop.call_later(0.04, loop.stop)
    loop.run()
    assert fired == [1, 2, 3]


def test_cancelled_timer_never_fires(loop: Loop) -> None:
    fired: list[int] = []
    timer = loop.call_later(0.01, fired.append, 1)
    timer.cancel()
    timer.cancel()
    loop.call_later(0.03, loop.stop)
    loop.run()
    assert fired == []
    assert loop.pending_timers() == 0


def test_reset_later_reuses_the_heap_entry(loop: Loop) -> None:
    fired: list[float] = []
    timer = loop.call_later(0.01, lambda: fired.append(loop.time()))
    start = loop.time()
    for _ in range(1000):
        timer.reset(loop.time() + 0.05)
    assert len(loop._heap) == 1
    loop.call_later(0.1, loop.stop)
    loop.run()
    assert len(fired) == 1
    assert fired[0] - start >= 0.05


def test_reset_earlier_fires_at_the_earlier_time(loop: Loop) -> None:
    fired: list[str] = []
    timer = loop.call_later(10, fired.append, "x")
    timer.reset(loop.time() + 0.01)
    loop.call_later(0.05, loop.stop)
    loop.run()
    assert fired == ["x"]


class Owner:
    """An object that keeps its own timer and is its callback: a reference cycle."""

    def __init__(self, loop: Loop) -> None:
        self.fired = 0
        self.timer = loop.timer(self.fire)

    def fire(self) -> None:
        self.fired += 1


def test_a_released_timer_holds_nothing_and_never_fires(loop: Loop) -> None:
    gc.disable()
    try:
        owner = Owner(loop)
        owner.timer.reset(loop.time() + 0.01)
        timer = owner.timer
        gone = weakref.ref(owner)
        timer.release()
        del owner
        # Its entry is still in the heap, but the owner is freed by reference counting alone.
        assert gone() is None
        assert loop.pending_timers() == 0
        time.sleep(0.02)
        loop.run_once()
    finally:
        gc.enable()


class Holder:
    def fire(self) -> None:
        pass


def test_closing_the_loop_drops_its_callbacks() -> None:
    loop = Loop()
    holder = Holder()
    loop.call_later(60, holder.fire)
    loop.call_soon(holder.fire)
    gone = weakref.ref(holder)
    del holder
    assert gone() is not None  # the heap and the ready queue hold it
    loop.close()
    assert gone() is None


def test_dead_entries_do_not_accumulate(loop: Loop) -> None:
    keep = [loop.call_later(100 + i, lambda: None) for i in range(10)]
    for _ in range(10_000):
        loop.call_later(50, lambda: None).cancel()
    assert len(loop._heap) < 200
    assert loop.pending_timers() == len(keep)


def test_a_raising_callback_is_logged_and_the_loop_goes_on(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "reactor.error")
    after: list[int] = []

    def bad() -> None:
        raise ValueError("bad callback")

    loop.call_soon(bad)
    loop.call_soon(after.append, 1)
    loop.run_once()
    assert after == [1]
    assert "bad callback" in caplog.text
    assert caplog.records[0].exc_info is not None


def test_io_handler_gets_the_mask(loop: Loop) -> None:
    a, b = socket.socketpair()
    masks: list[int] = []
    loop.register(a, EVENT_READ, masks.append)
    b.send(b"x")
    loop.run_once()
    assert masks == [EVENT_READ]
    loop.unregister(a)
    a.close()
    b.close()


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop: Loop) -> None:
    threading.Timer(0.05, loop.call_soon_threadsafe, args=(loop.stop,)).start()
    loop.run()  # no timers, no I/O: only the wakeup can end this


def test_call_soon_threadsafe_writes_no_wakeup_byte_while_the_loop_is_busy(loop: Loop) -> None:
    sent: list[bytes] = []
    real = loop._wakeup_w

    class Counting:
        def send(self, data: bytes) -> int:
            sent.append(data)
            return real.send(data)

    loop._wakeup_w = Counting()  # type: ignore[assignment]
    ran: list[int] = []
    try:
        # From a callback, i.e. while the loop runs its pass: queued, no byte;
        # the next pass does not wait (the ready queue is not empty).
        loop.call_soon(lambda: [loop.call_soon_threadsafe(ran.append, i) for i in range(3)])
        loop.run_once()
        loop.run_once()
        assert ran == [0, 1, 2] and sent == []
        # While it waits (as a thread sees it: _polling is set): one byte for
        # several callbacks, and the wait ends.
        loop._polling = True
        for i in range(3, 6):
            loop.call_soon_threadsafe(ran.append, i)
        assert sent == [b"\0"]
        loop._polling = False
        loop.run_once()
        assert ran == [0, 1, 2, 3, 4, 5]
        # And from a thread while the loop really waits: the wait ends.
        threading.Timer(0.05, loop.call_soon_threadsafe, args=(ran.append, 6)).start()
        started = time.monotonic()
        while len(ran) < 7 and time.monotonic() - started < 5:
            loop.run_once()
        assert ran[-1] == 6 and len(sent) == 2
    finally:
        loop._wakeup_w = real


def test_call_before_wait_runs_once_after_the_pass_before_the_next_wait(loop: Loop) -> None:
    order: list[str] = []

    def handler() -> None:
        order.append("callback")
        loop.call_before_wait(lambda: order.append("before wait"))
        loop.call_soon(order.append, "next pass")

    loop.call_soon(handler)
    loop.run_once()
    assert order == ["callback"]
    loop.run_once()  # the hook runs first, then the pass
    assert order == ["callback", "before wait", "next pass"]
    loop.call_soon(order.append, "again")  # something to do, so that the pass does not wait
    loop.run_once()
    assert order == ["callback", "before wait", "next pass", "again"]


def test_signals_are_handled_between_events(loop: Loop) -> None:
    got: list[int] = []
    loop.add_signal_handler(signal.SIGUSR1, lambda signum: (got.append(signum), loop.stop()))
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(5, loop.stop)
    loop.run()
    assert got == [signal.SIGUSR1]
    loop.remove_signal_handlers()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
