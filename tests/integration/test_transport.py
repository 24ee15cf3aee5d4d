"""The transport on a real socket pair: the mask follows what it wants, output is coalesced,
backpressure calls the protocol, and a protocol can hand the transport to another."""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor import Config
from reactor.loop import EVENT_READ, EVENT_WRITE, Loop
from reactor.metrics import Metrics
from reactor.transport import Lingering, Transport


class Owner:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.lingered: list[socket.socket] = []

    def linger(self, sock: socket.socket) -> None:
        self.lingered.append(sock)
        sock.close()


class Recorder:
    """A protocol that records its callbacks; ``reply`` is written for every piece of data."""

    def __init__(self, reply: bytes = b"") -> None:
        self.calls: list[str] = []
        self.data = b""
        self.reply = reply
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.calls.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.calls.append("data")
        if self.reply and self.transport is not None:
            self.transport.write(self.reply)
            self.transport.write(self.reply)

    def eof_received(self) -> None:
        self.calls.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("lost")

    def pause_writing(self) -> None:
        self.calls.append("pause")

    def resume_writing(self) -> None:
        self.calls.append("resume")

    def resume_producing(self) -> None:
        self.calls.append("produce")


class Watched(Transport):
    """A transport that can be watched by a weak reference (the plain class spares the slot)."""

    __slots__ = ("__weakref__",)


@pytest.fixture
def pair() -> Iterator[tuple[Loop, socket.socket, socket.socket]]:
    loop = Loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(5)
    yield loop, ours, theirs
    theirs.close()
    ours.close()
    loop.close()


def _events(loop: Loop, sock: socket.socket) -> int | None:
    try:
        return loop.selector.get_key(sock).events
    except KeyError:
        return None


def test_the_mask_follows_what_the_transport_wants(pair: tuple[Loop, socket.socket, socket.socket]) -> None:
    loop, ours, theirs = pair
    protocol = Recorder(reply=b"pong")
    transport = Transport(ours, loop, Config(), Owner(), protocol)
    transport.start()
    assert protocol.calls == ["made"]  # nothing to read at accept
    assert _events(loop, ours) == EVENT_READ
    theirs.sendall(b"ping")
    loop.run_once()
    assert protocol.data == b"ping"
    assert theirs.recv(100) == b"pongpong"  # both writes of one callback leave in its pass
    transport.pause_reading()
    transport.set_producer(True)
    loop.run_once()  # the scheduled flush asks the producer, then the mask follows
    assert "produce" in protocol.calls
    assert _events(loop, ours) == EVENT_WRITE
    transport.set_producer(False)
    transport.resume_reading()
    theirs.sendall(b"x")
    loop.run_once()  # asked from outside a callback: the mask follows on this pass
    assert _events(loop, ours) == EVENT_READ
    loop.run_once()
    assert protocol.data.endswith(b"x")
    theirs.shutdown(socket.SHUT_WR)
    loop.run_once()
    assert protocol.calls[-1] == "eof" and transport.at_eof
    assert _events(loop, ours) is None  # nothing more to read, nothing to write
    transport.close()
    assert protocol.calls[-1] == "lost" and ours.fileno() == -1


def test_water_marks_pause_and_resume_the_protocol(pair: tuple[Loop, socket.socket, socket.socket]) -> None:
    loop, ours, theirs = pair
    config = Config(write_high_water_bytes=4096, write_low_water_bytes=1024)
    protocol = Recorder()
    transport = Transport(ours, loop, config, Owner(), protocol)
    transport.start()
    transport.write(b"x" * (1 << 22))  # far more than the socket buffers hold
    assert protocol.calls[-1] == "pause" and not transport.writable
    loop.run_once()  # the scheduled flush sends what fits
    assert transport.buffered > 0 and _events(loop, ours) == EVENT_READ | EVENT_WRITE
    received = 0
    while "resume" not in protocol.calls:
        received += len(theirs.recv(1 << 20))
        loop.run_once()
    assert transport.buffered <= config.write_low_water_bytes
    transport.abort()


def test_a_protocol_can_hand_the_transport_to_another(
    pair: tuple[Loop, socket.socket, socket.socket],
) -> None:
    loop, ours, theirs = pair
    first, second = Recorder(), Recorder(reply=b"!")
    transport = Transport(ours, loop, Config(), Owner(), first)
    transport.start()
    transport.set_protocol(second)
    assert second.calls == ["made"] and transport.protocol is second
    theirs.sendall(b"hello")
    loop.run_once()
    assert second.data == b"hello" and first.data == b""
    assert theirs.recv(10) == b"!!"
    transport.abort()
    assert second.calls[-1] == "lost" and "lost" not in first.calls


def test_a_closed_transport_is_freed_by_reference_counting(
    pair: tuple[Loop, socket.socket, socket.socket],
) -> None:
    loop, ours, theirs = pair
    protocol = Recorder(reply=b"x")
    transport = Watched(ours, loop, Config(write_timeout_s=5), Owner(), protocol)
    transport.start()
    theirs.sendall(b"a")
    loop.run_once()
    transport.write(b"y" * (1 << 22))
    loop.run_once()  # output left: the write timer is armed
    ref = weakref.ref(transport)
    gc.disable()
    try:
        transport.abort()
        del transport, protocol  # the protocol still holds its transport: no cycle back
        assert ref() is None
    finally:
        gc.enable()


def test_linger_half_closes_when_the_client_may_still_send(
    pair: tuple[Loop, socket.socket, socket.socket],
) -> None:
    loop, ours, theirs = pair
    owner = Owner()
    transport = Transport(ours, loop, Config(), owner, Recorder())
    transport.start()
    transport.write(b"bye")
    transport.close(linger=True)
    loop.run_once()
    assert theirs.recv(10) == b"bye"
    assert owner.lingered == [ours]


def test_a_lingering_socket_is_drained_then_closed(pair: tuple[Loop, socket.socket, socket.socket]) -> None:
    loop, ours, theirs = pair
    ended: list[bool] = []
    lingering = Lingering(loop, timeout_s=5)
    lingering.add(ours, lambda: ended.append(True))
    assert len(lingering) == 1
    assert theirs.recv(10) == b""  # our sending side is shut
    theirs.sendall(b"late request bytes")  # read and dropped
    loop.run_once()
    assert not ended
    theirs.shutdown(socket.SHUT_WR)
    loop.run_once()
    assert ended == [True] and len(lingering) == 0 and ours.fileno() == -1


class NoSendfile(Transport):
    """A transport that may not use the kernel's sendfile (as under TLS)."""

    __slots__ = ()

    can_sendfile = False


@pytest.mark.parametrize("kind", [Transport, NoSendfile])
def test_sendfile_sends_the_range_with_or_without_the_kernel(
    pair: tuple[Loop, socket.socket, socket.socket], tmp_path: Path, kind: type[Transport]
) -> None:
    loop, ours, theirs = pair
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 2048  # 512 KiB: more than one piece, more than the socket holds
    path.write_bytes(data)
    sent = 0
    config = Config(write_high_water_bytes=65536, write_low_water_bytes=16384)

    class Sender(Recorder):
        def resume_producing(self) -> None:
            nonlocal sent
            assert self.transport is not None
            step = self.transport.sendfile(file, 100 + sent, len(data) - 100 - sent)
            sent += step
            if sent == len(data) - 100:
                self.transport.set_producer(False)
                self.transport.close()

    with path.open("rb") as file:
        protocol = Sender()
        transport = kind(ours, loop, config, Owner(), protocol)
        transport.start()
        transport.set_producer(True)
        received = bytearray()

        def read_all() -> None:  # the client, reading as fast as it can
            while chunk := theirs.recv(1 << 20):
                received.extend(chunk)

        reader = threading.Thread(target=read_all)
        reader.start()
        deadline = time.monotonic() + 20
        peak = 0
        while protocol.calls[-1] != "lost" and time.monotonic() < deadline:
            loop.run_once()
            peak = max(peak, transport.buffered)
        reader.join(10)
    # The kernel's sendfile bypasses the queue; without it the file is read and queued piece by
    # piece, never past one high-water mark plus one piece.
    assert (peak > 0) is (kind is NoSendfile)
    assert peak <= config.write_high_water_bytes + 65536
    assert bytes(received) == data[100:]
    assert protocol.calls[-1] == "lost"
