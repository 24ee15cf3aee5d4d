"""Stand-ins for the loop and the transport, so that a connection runs with no socket.

:class:`FakeTransport` keeps what the protocol writes as bytes and what it asks for as flags;
:class:`FakeLoop` has a settable clock, real :class:`~reactor.loop.Timer` objects (fired by
:meth:`FakeLoop.advance`) and a ready queue (run by :meth:`FakeLoop.run_ready`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from reactor.config import Config
from reactor.connection import Application, Connection, FirstBytes, KeepAlive
from reactor.loop import Timer
from reactor.metrics import Metrics


class FakeLoop:
    """The parts of :class:`~reactor.loop.Loop` a connection uses, with no selector."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._heap: list[tuple[float, Timer]] = []
        self._dead = 0
        self.ready: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def timer(self, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(self, 0.0, callback, args)  # type: ignore[arg-type]
        timer.cancelled = True
        return timer

    def _push(self, timer: Timer) -> None:
        entry = timer._entry = (timer.when, timer)
        heapq.heappush(self._heap, entry)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        self.ready.append((callback, args))

    def run_ready(self) -> None:
        ready, self.ready = self.ready, []
        for callback, args in ready:
            callback(*args)

    def advance(self, seconds: float) -> None:
        """Move the clock and fire every live timer that has come due."""
        self.now += seconds
        while self._heap and self._heap[0][0] <= self.now:
            entry = heapq.heappop(self._heap)
            timer = entry[1]
            if entry is not timer._entry:
                continue
            timer._entry = None
            if timer.cancelled:
                continue
            if timer.when > self.now:
                self._push(timer)
                continue
            timer.cancelled = True
            timer.callback(*timer.args)


class FakeTransport:
    """What a protocol sees of a transport; ``output`` holds every byte it wrote."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.output = bytearray()
        self.buffered = 0  # set by a test to play a client that does not read
        self.reading = True
        self.producing = False
        self.closed: str | None = None  # "close", "linger" or "abort"
        self.protocol: Any = None

    def write(self, data: bytes | memoryview) -> None:
        if self.closed is None:
            self.output += data

    def retract(self, first: bytes) -> bool:
        return False

    def sendfile(self, file: Any, offset: int, count: int) -> int:
        file.seek(offset)
        data = file.read(count)
        self.output += data
        return len(data)

    def set_producer(self, producing: bool) -> None:
        self.producing = producing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self, linger: bool = False) -> None:
        if self.closed is None:
            self.closed = "linger" if linger else "close"
            self.protocol.connection_lost(None)

    def abort(self, exc: Exception | None = None) -> None:
        if self.closed is None:
            self.closed = "abort"
            self.protocol.connection_lost(exc)

    def take(self) -> bytes:
        """The bytes written since the last take."""
        data, self.output = bytes(self.output), bytearray()
        return data


class Owner:
    """The server's side of a connection: its figures, and who closed."""

    accepting = True

    def __init__(self) -> None:
        self.closed: list[Connection] = []
        self.metrics = Metrics()
        self.keepalive = KeepAlive()
        self.first_bytes = FirstBytes()

    def connection_closed(self, connection: Connection) -> None:
        self.closed.append(connection)


def connect(app: Application, config: Config | None = None) -> tuple[Connection, FakeTransport, FakeLoop]:
    """A connection made on a fake transport, as a server's accept makes it."""
    config = config if config is not None else Config()
    loop = FakeLoop()
    connection = Connection(("test", 0), loop, config, app, Owner())  # type: ignore[arg-type]
    transport = FakeTransport(config)
    transport.protocol = connection
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport, loop
