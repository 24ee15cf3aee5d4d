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

Free when off: :func:`enable` swaps traced versions of five
:class:`~reactor.connection.Connection` methods onto the class; until it is
called, the code that runs is the plain code, with no check added to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .connection import Connection
from .loop import EVENT_READ, EVENT_WRITE

__all__ = ["disable", "enable", "trace_log"]

trace_log = logging.getLogger("reactor.trace")

_PLAIN: dict[str, Callable[..., Any]] = {}


def _mask_name(mask: int) -> str:
    names = [name for bit, name in ((EVENT_READ, "READ"), (EVENT_WRITE, "WRITE")) if mask & bit]
    return "|".join(names) or "nothing"


def _fd(connection: Connection) -> int:
    return connection.sock.fileno()


def enable() -> None:
    """Trace every connection, from now on, to the ``reactor.trace`` logger."""
    if _PLAIN:
        return
    for name in ("__init__", "start", "__call__", "_move", "_sync"):
        _PLAIN[name] = getattr(Connection, name)
    plain_init, plain_start, plain_call, plain_move, plain_sync = (
        _PLAIN["__init__"],
        _PLAIN["start"],
        _PLAIN["__call__"],
        _PLAIN["_move"],
        _PLAIN["_sync"],
    )

    def __init__(self: Connection, *args: Any, **kwargs: Any) -> None:
        plain_init(self, *args, **kwargs)
        host, port = self.client[0], self.client[1]
        trace_log.info("fd=%d accept %s:%s -> %s", _fd(self), host, port, self.state.name)

    def start(self: Connection) -> None:
        trace_log.info("fd=%d read at accept", _fd(self))
        plain_start(self)

    def __call__(self: Connection, mask: int = 0) -> None:
        trace_log.info("fd=%d %s", _fd(self), f"ready {_mask_name(mask)}" if mask else "timer")
        plain_call(self, mask)

    def _move(self: Connection, event: str) -> None:
        before = self.state
        fd = _fd(self)  # read before the move: closing releases the descriptor
        plain_move(self, event)
        trace_log.info("fd=%d %s -> %s on %s", fd, before.name, self.state.name, event)

    def _sync(self: Connection) -> None:
        before = self._mask
        plain_sync(self)
        if self._mask != before:
            trace_log.info("fd=%d watch %s", _fd(self), _mask_name(self._mask))

    traced = {"__init__": __init__, "start": start, "__call__": __call__, "_move": _move, "_sync": _sync}
    for name, function in traced.items():
        setattr(Connection, name, function)


def disable() -> None:
    """Put the plain methods back."""
    for name, function in _PLAIN.items():
        setattr(Connection, name, function)
    _PLAIN.clear()
