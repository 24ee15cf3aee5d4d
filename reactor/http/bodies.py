"""Body producers, sans-IO: who writes a response body that is not bytes.

A body that is not plain bytes is written by a :class:`Producer`, chosen by
the body's type from :data:`PRODUCERS` (a subclass finds its base's entry;
any other iterable is pulled as an iterator). Other packages add their kinds
with :func:`register_producer`: :mod:`reactor.streams` adds the push stream,
which this package does not import. A producer writes into a
:class:`BodySink` (the connection, which frames what it is given, see
:func:`reactor.http.response.frame`) and knows nothing of sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from .response import FileBody

__all__ = [
    "PRODUCERS",
    "BodySink",
    "FileProducer",
    "IteratorProducer",
    "Producer",
    "producer_for",
    "register_producer",
]


class BodySink(Protocol):
    """What a producer writes into: the connection sending the response."""

    @property
    def writable(self) -> bool:
        """Whether the unsent output is under the high-water mark."""
        ...

    def write_body(self, data: bytes) -> None:
        """Queue body bytes (the sink frames them)."""
        ...

    def send_file(self, file: Any, offset: int, count: int) -> int:
        """Send up to ``count`` bytes of ``file`` from ``offset`` (unframed:
        only for a body of known length); the bytes sent, 0 if none now."""
        ...


class Producer:
    """Writes one response body into a sink. Subclasses fill in the three methods.

    ``pushed`` producers (a push stream) write when their owner has
    something, not when the sink asks: the sink never pulls them.
    """

    __slots__ = ("body",)

    pushed: ClassVar[bool] = False

    def __init__(self, body: Any) -> None:
        self.body = body

    @property
    def length(self) -> int | None:
        """The body's size, when it is known before it is sent."""
        return None

    def start(self, sink: BodySink) -> None:
        """The head is queued: the body may begin."""

    def produce(self, sink: BodySink) -> bool:
        """Write what can be written now; True once the body is complete."""
        raise NotImplementedError

    def drained(self) -> None:
        """The output has fallen below the low-water mark (for pushed producers)."""

    def close(self) -> None:
        """Let go of the body (sent, failed, or the client gone)."""
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


# Pieces pulled from an iterator per produce() call: a bound on how long one
# connection keeps the loop.
_PULLS = 64


class IteratorProducer(Producer):
    """Any iterable of bytes or str, pulled while the sink is writable."""

    __slots__ = ("_pieces",)

    def __init__(self, body: Any) -> None:
        super().__init__(body)
        self._pieces: Iterator[Any] = iter(body)

    def produce(self, sink: BodySink) -> bool:
        pieces = self._pieces
        for _ in range(_PULLS):
            if not sink.writable:
                return False
            try:
                piece = next(pieces)
            except StopIteration:
                return True
            if type(piece) is not bytes:
                piece = _piece_bytes(piece)
            if piece:
                sink.write_body(piece)
        return False


# Largest single sendfile step.
_SENDFILE_BYTES = 1 << 22


class FileProducer(Producer):
    """A :class:`~reactor.http.response.FileBody`: a file range, sent unframed."""

    __slots__ = ()

    body: FileBody

    @property
    def length(self) -> int | None:
        return int(self.body.length)

    def produce(self, sink: BodySink) -> bool:
        body = self.body
        while body.length:
            sent = sink.send_file(body.file, body.offset, min(body.length, _SENDFILE_BYTES))
            if sent <= 0:
                return False  # the socket is full (or closed)
            body.offset += sent
            body.length -= sent
            if sent < _SENDFILE_BYTES and body.length:
                return False  # the socket took less than offered: it is full
        return True


def _refuse(body: Any) -> Producer:
    # Iterating one of these would yield ints (or characters), piece by piece.
    raise TypeError(f"a response body must be bytes, not {type(body).__name__}")


#: Body type -> the producer for it. ``bytes`` maps to None: sent with the head.
PRODUCERS: dict[type, Callable[[Any], Producer] | None] = {
    bytes: None,
    FileBody: FileProducer,
    str: _refuse,
    bytearray: _refuse,
    memoryview: _refuse,
}
_BUILT_IN = len(PRODUCERS)
# Types found by walking the MRO are remembered, up to this many.
_MAX_REMEMBERED = 256


def register_producer(kind: type, factory: Callable[[Any], Producer]) -> None:
    """Send bodies of type ``kind`` (and its subclasses) with ``factory(body)``."""
    PRODUCERS[kind] = factory


def producer_for(body: Any) -> Producer | None:
    """The producer for ``body``, or None when it is bytes (sent with the head).

    Raises:
        TypeError: a body that cannot be sent (str, bytearray, memoryview, or
            something that is not iterable).
    """
    kind = type(body)
    try:
        factory = PRODUCERS[kind]
    except KeyError:
        factory = IteratorProducer
        for base in kind.__mro__[1:]:
            if base in PRODUCERS and base is not object:
                factory = PRODUCERS[base]
                break
        if len(PRODUCERS) < _BUILT_IN + _MAX_REMEMBERED:
            PRODUCERS[kind] = factory
    return None if factory is None else factory(body)


def _piece_bytes(piece: object) -> bytes:
    """A streamed body's piece as bytes, or TypeError."""
    if isinstance(piece, str):
        return piece.encode()
    if isinstance(piece, (bytearray, memoryview)):
        return bytes(piece)
    raise TypeError(f"a streamed body yielded {type(piece).__name__}, not bytes or str")
