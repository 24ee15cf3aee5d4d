"""The connection's transition table, tested with no bytes on the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reactor import App
from reactor.connection import TRANSITIONS, Connection, State
from reactor.http.errors import LocalProtocolError
from tests.unit.fakes import connect


@pytest.fixture
def connection() -> Iterator[Connection]:
    conn, _, _ = connect(App())
    yield conn
    conn.close()


def test_every_state_but_closed_can_close() -> None:
    for state in State:
        if state is not State.CLOSED:
            assert TRANSITIONS[(state, "close")] is State.CLOSED


def test_closed_is_terminal() -> None:
    assert not [key for key in TRANSITIONS if key[0] is State.CLOSED]


def test_every_state_is_reachable_from_a_new_connection() -> None:
    seen = {State.READING_HEADERS}
    frontier = [State.READING_HEADERS]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(State)


def test_the_request_cycle() -> None:
    cycle = [
        (State.IDLE, "data", State.READING_HEADERS),
        (State.READING_HEADERS, "head", State.READING_BODY),
        (State.READING_BODY, "request", State.WRITING),
        (State.WRITING, "keep-alive", State.IDLE),
    ]
    for source, event, target in cycle:
        assert TRANSITIONS[(source, event)] is target


def test_move_follows_the_table(connection: Connection) -> None:
    assert connection.state is State.READING_HEADERS
    connection._move("request")
    assert connection.state is State.WRITING
    connection._move("keep-alive")
    assert connection.state is State.IDLE


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.IDLE, "request"),
        (State.IDLE, "keep-alive"),
        (State.READING_BODY, "head"),
        (State.WRITING, "data"),
        (State.WRITING, "reject"),
        (State.CLOSED, "data"),
        (State.CLOSED, "close"),
    ],
)
def test_move_refuses_what_the_table_lacks(connection: Connection, state: State, event: str) -> None:
    connection.state = state
    with pytest.raises(LocalProtocolError, match=f"can't go from {state.name} on '{event}'"):
        connection._move(event)
    assert connection.state is state
    connection.state = State.READING_HEADERS


def test_reading_follows_the_state() -> None:
    """A connection reads in the reading states, stops while a response is held by a client
    that does not read, and takes up the next request when the transport drains."""
    app = App()
    app.route("/")(lambda request: "hi")
    conn, transport, _ = connect(app)
    transport.buffered = conn.config.write_high_water_bytes + 1  # the client reads nothing
    conn.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert conn.state is State.WRITING and not transport.reading
    assert transport.take().count(b"HTTP/1.1 200 OK\r\n") == 1
    transport.buffered = 0
    conn.resume_writing()
    assert transport.reading
    assert transport.take().count(b"HTTP/1.1 200 OK\r\n") == 1
    assert conn.state is State.IDLE


def test_a_closing_response_ends_in_closing_then_closed() -> None:
    app = App()
    app.route("/")(lambda request: "hi")
    conn, transport, _ = connect(app)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert transport.take().endswith(b"Connection: close\r\n\r\nhi")
    assert transport.closed == "close" and conn.state is State.CLOSED
    assert conn.owner.closed == [conn]  # type: ignore[attr-defined]


def test_a_streamed_body_is_pulled_while_the_transport_takes_it() -> None:
    app = App()
    app.route("/")(lambda request: iter([b"a", b"bc"]))
    conn, transport, _ = connect(app)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert conn.state is State.STREAMING and transport.producing and not transport.reading
    conn.resume_producing()
    assert transport.take().endswith(b"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n")
    assert conn.state is State.IDLE and not transport.producing and transport.reading


def test_a_bad_request_is_rejected_then_closed_with_linger() -> None:
    conn, transport, _ = connect(App())
    conn.data_received(b"GET / HTTP/1.1\r\nBad Header : x\r\n\r\nmore")
    assert transport.take().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closed == "linger" and conn.state is State.CLOSED


def test_each_state_arms_its_own_timer(connection: Connection) -> None:
    config = connection.config
    now = connection.loop.now
    # New and silent, it keeps no timer: it waits in the owner's shared queue of those.
    assert connection._timer is None
    assert connection.armed_timer() == ("header", pytest.approx(now + config.header_timeout_s))
    assert len(connection.owner.first_bytes) == 1  # type: ignore[attr-defined]
    connection.data_received(b"GET / HTTP/1.1\r\n")  # a head cut short: now a timer of its own
    assert len(connection.owner.first_bytes) == 0  # type: ignore[attr-defined]
    assert connection._timer.when == pytest.approx(now + config.header_timeout_s)
    connection._move("request")
    connection._sync_timer()
    assert connection._timer.cancelled
    connection._move("keep-alive")
    connection._sync_timer()
    # Idle, it keeps no timer: it waits in the owner's shared keep-alive queue.
    assert connection._timer is None
    assert connection.armed_timer() == ("keep-alive", pytest.approx(now + config.keepalive_timeout_s))
    assert len(connection.owner.keepalive) == 1  # type: ignore[attr-defined]
