"""The live view's snapshot, on fake connections: what it costs, and what its table and timers say."""

from __future__ import annotations

import random
from collections.abc import Iterator

from reactor import App, Config
from reactor.connection import Connection
from reactor.live import LiveView
from reactor.loop import Loop
from reactor.metrics import Metrics
from reactor.streams import EventStream
from tests.unit.fakes import FakeLoop, FakeTransport, Owner


class Loopish(FakeLoop):
    """The fake loop, with the real loop's read-outs of its heap (they read ``_heap``/``_dead`` only)."""

    iterations = 0
    pending_timers = Loop.pending_timers
    heap_size = Loop.heap_size
    upcoming = Loop.upcoming


class Registry(dict[Connection, None]):
    """The server's registry of connections, counting every connection a reader looks at."""

    looked_at = 0

    def __iter__(self) -> Iterator[Connection]:
        for connection in super().__iter__():
            self.looked_at += 1
            yield connection


class Transport(FakeTransport):
    """A fake transport with what the table reads of a real one."""

    def __init__(self, config: Config, fd: int) -> None:
        super().__init__(config)
        self.fd = fd
        self.received = 0
        self.sent = 0
        self.write_timer = None

    def fileno(self) -> int:
        return self.fd


class FakeServer:
    def __init__(self) -> None:
        self.loop = Loopish()
        self.metrics = Metrics()
        self.accepted = 0
        self.connections = Registry()
        self.config = Config()
        self.owner = Owner()
        self.owner.metrics = self.metrics

    def open(self, count: int, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> list[Connection]:
        """``count`` connections, each accepted 10 ms after the last, each sent ``request``."""
        opened = []
        for _ in range(count):
            self.loop.now += 0.01
            self.accepted += 1
            client = ("127.0.0.1", 40000 + self.accepted)
            connection = Connection(client, self.loop, self.config, _app, self.owner)  # type: ignore[arg-type]
            transport = Transport(self.config, 100 + self.accepted)
            transport.protocol = connection
            connection.connection_made(transport)  # type: ignore[arg-type]
            if request:
                transport.received += len(request)
                connection.data_received(request)
                transport.sent += len(transport.take())
            self.connections[connection] = None
            opened.append(connection)
        return opened

    def count_by_state(self) -> dict[str, int]:
        from reactor.connection import count_by_state

        return {state.name: count for state, count in count_by_state(self.metrics.moves).items()}


_app = App()


@_app.route("/")
def _index(request: object) -> str:
    return "Hello, World!"


def _viewed(rows: int = 50) -> tuple[FakeServer, LiveView]:
    server = FakeServer()
    view = LiveView(rows=rows)
    view.attach(server)  # type: ignore[arg-type]
    return server, view


def test_with_nobody_watching_the_tick_does_no_per_connection_work() -> None:
    server, view = _viewed()
    server.open(200)
    server.connections.looked_at = 0
    server.loop.advance(5.0)
    assert not view.watchers.ticking
    assert server.connections.looked_at == 0

    # Once someone watches, each tick looks at the table's rows only, not at all 200.
    view.watchers.add(EventStream())
    assert view.watchers.ticking
    server.loop.advance(1.0)
    server.loop.advance(1.0)
    server.loop.advance(1.0)
    assert server.connections.looked_at == 3 * 50


def test_the_table_lists_the_oldest_rows_and_counts_the_rest() -> None:
    server, view = _viewed(rows=50)
    opened = server.open(200)
    reading = server.open(1, request=b"GET / HTTP/1.1\r\n")  # a head cut short: still reading it
    server.loop.now += 0.5
    table = view.snapshot()["table"]
    assert table["open"] == 201
    assert len(table["rows"]) == 50
    assert table["more"] == 151
    first = table["rows"][0]
    assert first["fd"] == 101 and first["peer"] == "127.0.0.1:40001"
    assert [row["fd"] for row in table["rows"]] == list(range(101, 151))  # accept order: oldest first
    assert {row["state"] for row in table["rows"]} == {"idle"}
    # Each went idle as it was opened: the first 201 * 10 ms + 0.5 s ago, less its own 10 ms.
    assert first["in_state_s"] == 2.5
    assert first["bytes_in"] == len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") and first["bytes_out"] > 0
    keepalive = server.config.keepalive_timeout_s
    assert first["timer"] == {"name": "keep-alive", "in_s": round(keepalive - 2.5, 1)}

    # With every row to show, the last one is the connection still reading its head.
    server2, view2 = _viewed(rows=500)
    server2.open(3)
    server2.open(1, request=b"GET / HTTP/1.1\r\n")
    rows = view2.snapshot()["table"]["rows"]
    assert [row["state"] for row in rows] == ["idle", "idle", "idle", "reading headers"]
    assert rows[-1]["timer"]["name"] == "header"
    assert view2.snapshot()["table"]["more"] == 0
    assert opened and reading


def test_timer_heap_shows_the_soonest_armed_deadlines_in_order() -> None:
    server, view = _viewed()
    loop = server.loop
    rng = random.Random(7)
    timers = [loop.timer(_index, None) for _ in range(500)]
    for timer in timers:
        timer.reset(loop.now + rng.uniform(0.0, 100.0))
    for timer in timers[::3]:
        timer.cancel()  # dead entries the walk must pass over
    for timer in timers[1::5]:
        timer.reset(timer.when + 50.0)  # later: the old entry stays, pointing at a later time
    armed = sorted((t for t in timers if not t.cancelled), key=lambda t: t.when)
    heap = view.snapshot()["timer_heap"]
    assert heap["size"] == len(loop._heap) and heap["armed"] == loop.pending_timers() == len(armed)
    shown = loop.upcoming(8)
    # Exactly the eight soonest armed timers, by their deadlines (a timer moved later by its
    # new one, though its heap entry still sorts by the old).
    assert shown == armed[:8]
    assert [t["in_ms"] for t in heap["next"]] == [round((t.when - loop.now) * 1000, 1) for t in shown]
    assert {t["what"] for t in heap["next"]} == {"_index"}
    assert loop.upcoming(1000) == armed  # asked for more than there are: every armed timer


def test_with_15000_connections_a_snapshot_looks_at_the_table_rows_only() -> None:
    server, view = _viewed(rows=50)
    # Each still reading its head: 15,000 header timers of their own in the heap
    # (idle connections would share one keep-alive timer), and the one that new,
    # silent connections share, armed at the first accept until it comes due.
    server.open(15000, request=b"GET / HTTP/1.1\r\n")
    server.connections.looked_at = 0
    stats = view.snapshot()
    assert server.connections.looked_at == 50
    assert stats["table"]["open"] == 15000 and stats["table"]["more"] == 14950
    assert stats["connections"]["reading_headers"] == 15000
    # The walk for the next deadlines is bounded.
    assert stats["timer_heap"]["armed"] == 15001 and len(stats["timer_heap"]["next"]) == 8
