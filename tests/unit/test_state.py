"""The connection's transition table, tested with no bytes on the wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from reactor import App, Config
from reactor.connection import TRANSITIONS, Connection, State
from reactor.http.errors import LocalProtocolError
from reactor.loop import EVENT_READ, Loop
from reactor.metrics import Metrics


class Owner:
    accepting = True

    def __init__(self) -> None:
        self.closed: list[Connection] = []
        self.metrics = Metrics()

    def connection_closed(self, connection: Connection) -> None:
        self.closed.append(connection)

    def linger(self, sock: socket.socket) -> None:
        sock.close()


@pytest.fixture
def connection() -> Iterator[Connection]:
    loop = Loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = Connection(ours, ("test", 0), loop, Config(), App(), Owner())
    conn.start()
    yield conn
    conn.close()
    theirs.close()
    loop.close()


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


def test_selector_interest_follows_the_state(connection: Connection) -> None:
    key = connection.loop.selector.get_key(connection.sock)
    assert key.events == EVENT_READ
    connection._move("request")
    connection._sync()
    # WRITING with nothing queued: nothing to wait for, so not in the selector.
    with pytest.raises(KeyError):
        connection.loop.selector.get_key(connection.sock)
    connection._move("keep-alive")
    connection._sync()
    assert connection.loop.selector.get_key(connection.sock).events == EVENT_READ


def test_each_state_arms_its_own_timer(connection: Connection) -> None:
    config = connection.config
    now = connection.loop.now
    assert connection._timer.when == pytest.approx(now + config.header_timeout_s)
    connection._move("request")
    connection._sync()
    assert connection._timer.cancelled
    connection._move("keep-alive")
    connection._sync()
    assert connection._timer.when == pytest.approx(now + config.keepalive_timeout_s)
    assert not connection._timer.cancelled
