"""Response framing and body producers, with bytes alone (no connection, no socket)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from reactor.http.bodies import (
    PRODUCERS,
    FileProducer,
    IteratorProducer,
    Producer,
    producer_for,
    register_producer,
)
from reactor.http.response import LAST_CHUNK, FileBody, Framing, encode_chunk, frame


@pytest.mark.parametrize(
    ("status", "version", "length", "framing"),
    [
        (200, "HTTP/1.1", 5, Framing.LENGTH),
        (200, "HTTP/1.0", 5, Framing.LENGTH),
        (200, "HTTP/1.1", 0, Framing.LENGTH),
        (200, "HTTP/1.1", None, Framing.CHUNKED),
        (200, "HTTP/1.0", None, Framing.CLOSE),
        (404, "HTTP/1.0", None, Framing.CLOSE),
        (204, "HTTP/1.1", 5, Framing.NONE),
        (304, "HTTP/1.1", None, Framing.NONE),
        (101, "HTTP/1.1", 0, Framing.NONE),
        (199, "HTTP/1.0", None, Framing.NONE),
    ],
)
def test_framing_decision(status: int, version: str, length: int | None, framing: Framing) -> None:
    assert frame(status, version, length) is framing


def test_chunk_encoding_small_and_large() -> None:
    assert encode_chunk(b"hello") == (b"5\r\nhello\r\n",)
    big = b"x" * 20000
    parts = encode_chunk(big)
    assert parts[0] == b"4e20\r\n" and parts[1] is big and parts[2] == b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


class Sink:
    """A body sink that keeps what it is given; ``room`` pieces fit before it is full."""

    def __init__(self, room: int = 1000) -> None:
        self.data = bytearray()
        self.room = room

    @property
    def writable(self) -> bool:
        return self.room > 0

    def write_body(self, data: bytes) -> None:
        self.data += data
        self.room -= 1

    def send_file(self, file: Any, offset: int, count: int) -> int:
        file.seek(offset)
        piece = file.read(min(count, 3))  # a socket that takes three bytes at a time
        self.data += piece
        return len(piece)


def test_iterator_producer_pulls_while_writable_and_ends() -> None:
    producer = producer_for(iter([b"ab", "cd", bytearray(b"ef"), b""]))
    assert isinstance(producer, IteratorProducer) and producer.length is None
    sink = Sink(room=2)
    assert producer.produce(sink) is False  # full after two pieces
    assert bytes(sink.data) == b"abcd"
    sink.room = 10
    assert producer.produce(sink) is True
    assert bytes(sink.data) == b"abcdef"


def test_iterator_producer_refuses_a_piece_that_is_not_bytes() -> None:
    producer = producer_for([b"ok", 5])
    assert producer is not None
    with pytest.raises(TypeError, match="a streamed body yielded int, not bytes or str"):
        producer.produce(Sink())


def test_file_producer_sends_the_range_in_steps() -> None:
    body = FileBody(io.BytesIO(b"0123456789"), 2, 7)
    producer = producer_for(body)
    assert isinstance(producer, FileProducer) and producer.length == 7
    sink = Sink()
    done = producer.produce(sink)
    while not done:
        done = producer.produce(sink)
    assert bytes(sink.data) == b"2345678"
    producer.close()
    assert body.file.closed


@pytest.mark.parametrize("body", ["text", bytearray(b"x"), memoryview(b"x"), 5])
def test_bodies_that_cannot_be_sent_are_refused(body: object) -> None:
    with pytest.raises(TypeError):
        producer_for(body)


def test_bytes_need_no_producer() -> None:
    assert producer_for(b"abc") is None


def test_the_table_is_keyed_by_type_and_a_subclass_finds_its_base() -> None:
    class Base:
        def __iter__(self) -> Iterator[bytes]:
            return iter(())

    class Special(Producer):
        __slots__ = ()

        def produce(self, sink: Any) -> bool:
            return True

    class Derived(Base):
        pass

    register_producer(Base, Special)
    try:
        assert type(producer_for(Base())) is Special
        assert type(producer_for(Derived())) is Special
        assert PRODUCERS[Derived] is Special  # remembered: the next look-up is one dict get
    finally:
        PRODUCERS.pop(Base, None)
        PRODUCERS.pop(Derived, None)
