"""The codec against wsproto's sans-IO frame protocol, on random messages, both ways.

wsproto (a test-only dependency) plays the client: what its client sends,
our Reader must read as the same messages, and what our writer sends, its
client must read as the same messages; with and without permessage-deflate
(negotiated by our ``negotiate`` from wsproto's own offer). Then random,
often broken, frames go to both servers, which must agree on whether they
are valid and, if so, on the events.
"""

from __future__ import annotations

import random
import struct

import pytest

wsproto_frames = pytest.importorskip("wsproto.frame_protocol")
wsproto_extensions = pytest.importorskip("wsproto.extensions")

from reactor.websocket.deflate import Deflate, negotiate  # noqa: E402
from reactor.websocket.frames import (  # noqa: E402
    Close,
    Event,
    Message,
    Opcode,
    Ping,
    Pong,
    Reader,
    WebSocketError,
    client_frame,
    close_frame,
    encode_message,
    frame,
    ping,
    pong,
)
from tests.unit.parser_support import random_split  # noqa: E402

SEEDS = range(6)


def random_message(rnd: random.Random) -> str | bytes:
    size = rnd.choice([0, 1, 5, 125, 126, 200, 4000, 65535, 65536, 70000])
    if rnd.random() < 0.5:
        alphabet = "aé€𝄞 κόσμε"
        return "".join(rnd.choice(alphabet) for _ in range(size // 3))
    return rnd.randbytes(size) if rnd.random() < 0.5 else b"ab" * (size // 2)


def wsproto_client(deflate: bool) -> tuple[object, Deflate | None]:
    """A wsproto client protocol and our state, negotiated from its offer."""
    if not deflate:
        return wsproto_frames.FrameProtocol(client=True, extensions=[]), None
    extension = wsproto_extensions.PerMessageDeflate()
    result = negotiate("permessage-deflate; " + extension.offer())
    assert result is not None
    extension.finalize(result[0])
    return wsproto_frames.FrameProtocol(client=True, extensions=[extension]), result[1]


def wsproto_events(protocol: object, data: bytes, parts: list[object] | None = None) -> list[Event]:
    """What wsproto's side makes of ``data``, as our event types.

    ``parts`` keeps the pieces of a message that is not finished yet from one call to the next.
    """
    protocol.receive_bytes(data)  # type: ignore[attr-defined]
    out: list[Event] = []
    if parts is None:
        parts = []
    for got in protocol.received_frames():  # type: ignore[attr-defined]
        opcode = got.opcode
        if opcode == wsproto_frames.Opcode.PING:
            out.append(Ping(bytes(got.payload)))
        elif opcode == wsproto_frames.Opcode.PONG:
            out.append(Pong(bytes(got.payload)))
        elif opcode == wsproto_frames.Opcode.CLOSE:
            code, reason = got.payload
            out.append(Close(int(code), reason or ""))
        else:
            parts.append(got.payload)
            if got.frame_finished and got.message_finished:
                if isinstance(parts[0], str):
                    out.append(Message("".join(parts)))  # type: ignore[arg-type]
                else:
                    out.append(Message(b"".join(bytes(p) for p in parts)))  # type: ignore[misc]
                parts.clear()
    return out


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("seed", SEEDS)
def test_wsproto_client_frames_read_by_us(seed: int, deflate: bool) -> None:
    rnd = random.Random(seed)
    client, state = wsproto_client(deflate)
    wire = bytearray()
    expected: list[Event] = []
    for _ in range(20):
        message = random_message(rnd)
        cuts = sorted(rnd.sample(range(len(message) + 1), min(len(message) + 1, rnd.choice([0, 0, 1, 3]))))
        bounds = [0, *cuts, len(message)]
        for i in range(len(bounds) - 1):
            wire += client.send_data(message[bounds[i] : bounds[i + 1]], fin=i == len(bounds) - 2)  # type: ignore[attr-defined]
            if rnd.random() < 0.2:
                wire += client.ping(b"p%d" % i)  # type: ignore[attr-defined]
                expected.append(Ping(b"p%d" % i))
        expected.append(Message(message))
    wire += client.close(1000, "done")  # type: ignore[attr-defined]
    expected.append(Close(1000, "done"))
    reader = Reader(deflate=state)
    got: list[Event] = []
    for piece in random_split(bytes(wire), f"wsproto:{seed}:{deflate}"):
        got.extend(reader.feed(piece))
    # wsproto sends a message's first fragment's ping before the message ends.
    assert [e for e in got if isinstance(e, Message)] == [e for e in expected if isinstance(e, Message)]
    assert sorted(repr(e) for e in got) == sorted(repr(e) for e in expected)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("seed", SEEDS)
def test_our_frames_read_by_wsproto_client(seed: int, deflate: bool) -> None:
    rnd = random.Random(seed + 100)
    client, state = wsproto_client(deflate)
    wire = bytearray()
    expected: list[Event] = []
    for i in range(20):
        message = random_message(rnd)
        if rnd.random() < 0.3 and not deflate:
            # Fragmented by hand, with a ping between the fragments.
            payload = message.encode() if isinstance(message, str) else message
            opcode = Opcode.TEXT if isinstance(message, str) else Opcode.BINARY
            half = len(payload) // 2
            if isinstance(message, str):
                while half and (payload[half] & 0xC0) == 0x80:
                    half -= 1
            wire += frame(opcode, payload[:half], fin=False)
            wire += ping(b"i%d" % i)
            expected.append(Ping(b"i%d" % i))
            wire += frame(Opcode.CONTINUATION, payload[half:])
        else:
            wire += encode_message(message, state)
        expected.append(Message(message))
        if rnd.random() < 0.2:
            wire += pong(b"o%d" % i)
            expected.append(Pong(b"o%d" % i))
    wire += close_frame(1001, "bye é")
    expected.append(Close(1001, "bye é"))
    got: list[Event] = []
    parts: list[object] = []
    for piece in random_split(bytes(wire), f"ours:{seed}:{deflate}"):
        got.extend(wsproto_events(client, piece, parts))
    assert got == expected


# -- random, often broken, frames to both servers ------------------------------------


def random_frame(rnd: random.Random) -> bytes:
    opcode = rnd.choice([0, 1, 2, 8, 9, 10, 0, 1, 2, 8, 9, 10, 3, 11])
    if opcode == 8 and rnd.random() < 0.8:
        code = rnd.choice([1000, 1001, 1003, 1004, 1005, 1007, 1011, 1012, 1015, 2000, 3000, 4999, 5000, 999])
        reason = rnd.choice([b"", b"ok", b"\xce\xba", b"\xff", b"\xed\xa0\x80"])
        payload = struct.pack("!H", code) + reason
    else:
        payload = rnd.choice([b"", b"a", b"\xce\xba", b"\xce", b"\xba", b"\xff", b"x" * 126, b"y" * 200])
    if rnd.random() < 0.05:
        payload = payload[:1]
    fin = rnd.random() < 0.8
    rsv = 4 if rnd.random() < 0.03 else 0
    return client_frame(opcode, payload, rnd.randbytes(4), fin=fin, rsv=rsv)


def wsproto_server_outcome(raw: bytes) -> tuple[list[Event], bool]:
    server = wsproto_frames.FrameProtocol(client=False, extensions=[])
    try:
        events = wsproto_events(server, raw)
    except wsproto_frames.ParseFailed:
        return [], False
    return events, True


def reactor_outcome(raw: bytes) -> tuple[list[Event], bool]:
    reader = Reader()
    try:
        return reader.feed(raw), True
    except WebSocketError:
        return [], False


@pytest.mark.parametrize("seed", SEEDS)
def test_both_servers_agree_on_random_frames(seed: int) -> None:
    rnd = random.Random(seed + 200)
    agreed = 0
    for _ in range(300):
        raw = b"".join(random_frame(rnd) for _ in range(rnd.randint(1, 4)))
        ours = reactor_outcome(raw)
        theirs = wsproto_server_outcome(raw)
        # We stop at a Close frame (RFC 6455 §5.5.1: nothing may follow it);
        # wsproto reads on, so compare up to the first Close.
        if ours[1] and any(isinstance(e, Close) for e in ours[0]):
            close_at = next(i for i, e in enumerate(theirs[0]) if isinstance(e, Close)) if theirs[1] else -1
            assert close_at >= 0 and theirs[0][: close_at + 1] == ours[0], raw.hex()
            continue
        if not theirs[1] and any(isinstance(e, Close) for e in theirs[0]):
            continue  # pragma: no cover
        assert ours == theirs, raw.hex()
        agreed += 1
    assert agreed > 100
