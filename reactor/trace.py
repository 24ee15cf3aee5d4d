"""``--trace``: one compact log line per state move and selector event.

For learners: run ``python -m reactor --trace`` and send one request to see
the machinery turn::

    fd=7 accept 127.0.0.1:50312 -> READING_HEADERS
    fd=7 read at accept
    fd=7 READING_HEADERS -> WRITING on request
    fd=7 WRITING -> IDLE on keep-alive
    fd=7 timer
    fd=7 IDLE -> CLOSED on close

("read at accept" is the read a new connection tries at once, before it is
in the selector; a later read shows as "ready READ".)

Free when off: :func:`enable` swaps traced versions of a few methods of
:class:`~reactor.transport.Transport` and :class:`~reactor.connection.Connection`
onto the classes; until it is called, the code that runs is the plain code,
with no check added to it. It reads only what those objects hold (a file
descriptor, a state, a mask): nothing here knows the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import connection
from .connection import Connection
from .loop import EVENT_READ, EVENT_WRITE
from .transport import Transport

__all__ = ["disable", "enable", "trace_log"]

trace_log = logging.getLogger("reactor.trace")

_PLAIN: dict[tuple[type, str], Callable[..., Any]] = {}


def _mask_name(mask: int) -> str:
    names = [name for bit, name in ((EVENT_READ, "READ"), (EVENT_WRITE, "WRITE")) if mask & bit]
    return "|".join(names) or "nothing"


def _fd(connection: Connection) -> int:
    transport = connection.transport
    return transport.sock.fileno() if transport is not None else -1


def enable() -> None:
    """Trace every connection, from now on, to the ``reactor.trace`` logger."""
    if _PLAIN:
        return
    for cls, name in (
        (Transport, "start"),
        (Transport, "__call__"),
        (Transport, "_after_callback"),
        (Connection, "__call__"),
        (Connection, "_move"),
    ):
        _PLAIN[cls, name] = getattr(cls, name)
    plain_start = _PLAIN[Transport, "start"]
    plain_ready = _PLAIN[Transport, "__call__"]
    plain_after = _PLAIN[Transport, "_after_callback"]
    plain_timer = _PLAIN[Connection, "__call__"]
    plain_move = _PLAIN[Connection, "_move"]

    def start(self: Transport) -> None:
        protocol = self.protocol
        if isinstance(protocol, Connection):
            host, port = protocol.client[0], protocol.client[1]
            trace_log.info("fd=%d accept %s:%s -> %s", self.sock.fileno(), host, port, protocol.state.name)
        trace_log.info("fd=%d read at accept", self.sock.fileno())
        plain_start(self)

    def ready(self: Transport, mask: int) -> None:
        trace_log.info("fd=%d ready %s", self.sock.fileno(), _mask_name(mask))
        plain_ready(self, mask)

    def after(self: Transport) -> None:
        before = self._mask
        fd = self.sock.fileno()  # read first: closing releases the descriptor
        plain_after(self)
        if self._mask != before and not self._closed:
            trace_log.info("fd=%d watch %s", fd, _mask_name(self._mask))

    def timer(self: Connection) -> None:
        trace_log.info("fd=%d timer", _fd(self))
        plain_timer(self)

    def move(self: Connection, event: str) -> None:
        before = self.state
        fd = _fd(self)  # read before the move: closing releases the descriptor
        plain_move(self, event)
        trace_log.info("fd=%d %s -> %s on %s", fd, before.name, self.state.name, event)

    traced: dict[tuple[type, str], Callable[..., Any]] = {
        (Transport, "start"): start,
        (Transport, "__call__"): ready,
        (Transport, "_after_callback"): after,
        (Connection, "__call__"): timer,
        (Connection, "_move"): move,
    }
    for (kind, name), function in traced.items():
        setattr(kind, name, function)
    connection._inline_moves = False  # every move through the traced _move


def disable() -> None:
    """Put the plain methods back."""
    for (kind, name), function in _PLAIN.items():
        setattr(kind, name, function)
    _PLAIN.clear()
    connection._inline_moves = True
