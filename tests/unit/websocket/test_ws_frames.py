"""The WebSocket frame codec on bytes alone: RFC 6455's examples and each of its rules.

Every case is fed whole, byte by byte and in seeded random splits; the events
and the close code must not depend on how the bytes were cut.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest

from reactor.websocket.deflate import Deflate
from reactor.websocket.frames import (
    Close,
    CloseCode,
    Event,
    Message,
    Opcode,
    Ping,
    Pong,
    Reader,
    WebSocketError,
    binary,
    client_frame,
    close_frame,
    encode_message,
    frame,
    is_valid_close_code,
    mask,
    ping,
    pong,
    text,
)
from tests.unit.websocket.ws_support import MODES, feed

T, B, C, P, Q = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION, Opcode.PING, Opcode.PONG
CLOSE = Opcode.CLOSE
K = b"\x37\xfa\x21\x3d"  # the masking key of RFC 6455 §5.7


def cf(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    return client_frame(opcode, payload, K, **kwargs)  # type: ignore[arg-type]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    events: tuple[Event, ...]
    code: int | None = None  # the close code of the error, None: no error
    deflate: bool = False


HELLO_MASKED = bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 §5.7
PONG_MASKED = bytes.fromhex("8a8537fa213d7f9f4d5158")  # RFC 6455 §5.7
BLOB_256 = bytes(range(256))
BLOB_64K = bytes(random.Random(7).randbytes(65536))
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

CASES = [
    # RFC 6455 §5.7, the examples a client could send (masked).
    Case("rfc-masked-hello", HELLO_MASKED, (Message("Hello"),)),
    Case("rfc-unmasked-hello-refused", bytes.fromhex("810548656c6c6f"), (), 1002),
    Case("rfc-fragmented-hello", cf(T, b"Hel", fin=False) + cf(C, b"lo"), (Message("Hello"),)),
    Case("rfc-masked-pong", PONG_MASKED, (Pong(b"Hello"),)),
    Case("rfc-ping", cf(P, b"Hello"), (Ping(b"Hello"),)),
    Case("rfc-256-bytes", cf(B, BLOB_256), (Message(BLOB_256),)),
    Case("rfc-64KiB", cf(B, BLOB_64K), (Message(BLOB_64K),)),
    # Messages.
    Case("empty-text", cf(T), (Message(""),)),
    Case("empty-binary", cf(B), (Message(b""),)),
    Case("utf8-text", cf(T, "κόσμε €𝄞".encode()), (Message("κόσμε €𝄞"),)),
    Case("two-messages", cf(T, b"a") + cf(B, b"b"), (Message("a"), Message(b"b"))),
    Case(
        "character-split-across-fragments",
        cf(T, b"\xce", fin=False) + cf(C, b"\xba\xe2\x82", fin=False) + cf(C, b"\xac"),
        (Message("κ€"),),
    ),
    Case(
        "empty-fragments",
        cf(B, b"", fin=False) + cf(C, b"", fin=False) * 5 + cf(C, b"x", fin=False) + cf(C),
        (Message(b"x"),),
    ),
    Case(
        "controls-between-fragments",
        cf(T, b"a", fin=False) + cf(P, b"1") + cf(C, b"b", fin=False) + cf(Q, b"2") + cf(C, b"c"),
        (Ping(b"1"), Pong(b"2"), Message("abc")),
    ),
    Case("ping-125-bytes", cf(P, b"p" * 125), (Ping(b"p" * 125),)),
    Case("empty-ping", cf(P), (Ping(b""),)),
    # Length encodings: minimal ones are accepted, others refused (module docs).
    Case("length-126-in-16-bits", cf(B, b"x" * 126), (Message(b"x" * 126),)),
    Case("length-65535-in-16-bits", cf(B, b"y" * 65535), (Message(b"y" * 65535),)),
    Case("length-65536-in-64-bits", cf(B, b"z" * 65536), (Message(b"z" * 65536),)),
    Case("length-5-in-16-bits", cf(B, b"hello", length_bytes=2), (), 1002),
    Case("length-125-in-16-bits", cf(B, b"x" * 125, length_bytes=2), (), 1002),
    Case("length-200-in-64-bits", cf(B, b"x" * 200, length_bytes=8), (), 1002),
    Case("length-65535-in-64-bits", cf(B, b"x" * 65535, length_bytes=8), (), 1002),
    Case("length-high-bit", b"\x82\xff" + b"\x80" + b"\x00" * 7 + K, (), 1002),
    Case("length-high-bit-only-one", b"\x82\xff" + b"\xff" * 8 + K, (), 1002),
    # Masking and reserved bits.
    Case("unmasked-binary", b"\x82\x01x", (), 1002),
    Case("unmasked-close", b"\x88\x00", (), 1002),
    Case("rsv1-without-extension", cf(T, b"a", rsv=4), (), 1002),
    Case("rsv2", cf(T, b"a", rsv=2), (), 1002),
    Case("rsv3", cf(T, b"a", rsv=1), (), 1002),
    Case("rsv2-with-deflate", cf(T, b"a", rsv=2), (), 1002, deflate=True),
    Case("rsv1-on-continuation", cf(T, b"a", fin=False) + cf(C, b"b", rsv=4), (), 1002, deflate=True),
    Case("rsv1-on-ping", cf(P, b"a", rsv=4), (), 1002, deflate=True),
    # Opcodes.
    *(Case(f"reserved-opcode-{op}", cf(op, b"a"), (), 1002) for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)),
    Case("reserved-opcode-after-message", cf(T, b"a") + cf(5) + cf(P), (Message("a"),), 1002),
    # Control frames.
    Case("ping-126-bytes", cf(P, b"p" * 126), (), 1002),
    Case("close-126-bytes", cf(CLOSE, close_payload(1000, b"r" * 124)), (), 1002),
    Case("fragmented-ping", cf(P, b"a", fin=False), (), 1002),
    Case("fragmented-close", cf(CLOSE, b"", fin=False), (), 1002),
    # Fragmentation.
    Case("continuation-first", cf(C, b"a"), (), 1002),
    Case("continuation-after-message", cf(T, b"a") + cf(C, b"b"), (Message("a"),), 1002),
    Case("text-inside-fragmented", cf(T, b"a", fin=False) + cf(T, b"b"), (), 1002),
    Case("binary-inside-fragmented", cf(B, b"a", fin=False) + cf(B, b"b"), (), 1002),
    # Text must be UTF-8, checked as it arrives.
    Case("text-invalid-byte", cf(T, b"ab\xffcd"), (), 1007),
    Case("text-surrogate", cf(T, b"\xed\xa0\x80"), (), 1007),
    Case("text-over-max-code-point", cf(T, b"\xf4\x90\x80\x80"), (), 1007),
    Case("text-overlong", cf(T, b"\xc0\xaf"), (), 1007),
    Case("text-ends-inside-character", cf(T, b"a\xce"), (), 1007),
    Case("text-fragments-end-inside-character", cf(T, b"a\xe2", fin=False) + cf(C, b"\x82"), (), 1007),
    Case("binary-need-not-be-utf8", cf(B, b"\xff\xfe"), (Message(b"\xff\xfe"),)),
    # Close frames (RFC 6455 §5.5.1, §7.4).
    Case("close-empty", cf(CLOSE), (Close(1005, ""),)),
    Case("close-one-byte", cf(CLOSE, b"\x03"), (), 1002),
    *(
        Case(f"close-code-{code}", cf(CLOSE, close_payload(code, b"bye")), (Close(code, "bye"),))
        for code in VALID_CODES
    ),
    *(Case(f"close-code-{code}-refused", cf(CLOSE, close_payload(code)), (), 1002) for code in INVALID_CODES),
    Case("close-reason-utf8", cf(CLOSE, close_payload(1000, "κόσμε".encode())), (Close(1000, "κόσμε"),)),
    Case("close-reason-invalid-utf8", cf(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80")), (), 1007),
    Case("close-reason-123-bytes", cf(CLOSE, close_payload(1000, b"r" * 123)), (Close(1000, "r" * 123),)),
    Case(
        "nothing-after-close",
        cf(CLOSE, close_payload(1000)) + cf(T, b"late") + b"\x00junk",
        (Close(1000, ""),),
    ),
    Case(
        "close-between-fragments", cf(T, b"a", fin=False) + cf(CLOSE, close_payload(1001)), (Close(1001, ""),)
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(case: Case, mode: str) -> None:
    run = feed(case.raw, mode, deflate=Deflate() if case.deflate else None)
    assert tuple(run.events) == case.events
    if case.code is None:
        assert run.error is None, run.error
    else:
        assert run.error is not None, "no error"
        assert run.error.code == case.code, run.error


def test_case_names_are_unique() -> None:
    assert len({case.name for case in CASES}) == len(CASES)


# -- failing fast ------------------------------------------------------------------


def test_bad_utf8_fails_in_the_fragment_that_has_it_before_the_message_ends() -> None:
    # Autobahn 6.4.1: the third fragment never needs to arrive.
    first = cf(T, "κόσμε".encode(), fin=False)
    second = cf(C, b"\xed\xa0\x80", fin=False)
    reader = Reader()
    assert reader.feed(first) == []
    with pytest.raises(WebSocketError) as info:
        reader.feed(second)
    assert info.value.code == CloseCode.INVALID_DATA


@pytest.mark.parametrize("mode", ["bytewise", "random0", "random1"])
def test_bad_utf8_fails_at_the_bad_byte_inside_one_frame(mode: str) -> None:
    # Autobahn 6.4.3 and 6.4.4: the frame is cut; the error comes before its end.
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 50
    raw = cf(T, payload)
    # The header (8 bytes with a 16-bit length), the good text, then \xf4 \x90 cannot start a character.
    bad_at = 8 + len("κόσμε".encode()) + 1
    run = feed(raw, mode)
    assert run.error is not None and run.error.code == CloseCode.INVALID_DATA
    if mode == "bytewise":
        assert run.fed_before_error == bad_at
    else:
        assert run.fed_before_error < len(raw) - 100


def test_too_big_fails_at_the_header_before_the_payload() -> None:
    raw = cf(B, b"x" * 1001)
    run = feed(raw, "bytewise", max_message=1000)
    assert run.error is not None and run.error.code == CloseCode.TOO_BIG
    assert run.fed_before_error == 2 + 2 + 4 - 1  # the last byte of the header raised


def test_max_message_counts_every_fragment() -> None:
    raw = cf(B, b"x" * 400, fin=False) + cf(C, b"x" * 400, fin=False) + cf(C, b"x" * 201)
    for mode in MODES:
        run = feed(raw, mode, max_message=1000)
        assert run.error is not None and run.error.code == CloseCode.TOO_BIG, mode
        assert run.fed_before_error < len(raw) - 201
    exact = cf(B, b"x" * 400, fin=False) + cf(C, b"x" * 400, fin=False) + cf(C, b"x" * 200)
    assert feed(exact, max_message=1000).events == [Message(b"x" * 1000)]


def test_max_frame_bounds_one_frame() -> None:
    raw = cf(B, b"x" * 100, fin=False) + cf(C, b"x" * 101)
    run = feed(raw, max_message=1000, max_frame=100)
    assert run.error is not None and run.error.code == CloseCode.TOO_BIG
    ok = cf(B, b"x" * 100, fin=False) + cf(C, b"x" * 100)
    assert feed(ok, max_message=1000, max_frame=100).events == [Message(b"x" * 200)]


def test_the_reader_buffers_at_most_one_header_or_control_frame() -> None:
    rnd = random.Random(3)
    raw = b"".join(
        cf(P, b"p" * rnd.choice([0, 125]))
        if rnd.random() < 0.3
        else cf(rnd.choice([T, B]), b"a" * rnd.choice([0, 1, 125, 126, 3000, 70000]))
        for _ in range(40)
    )
    reader = Reader()
    longest = 0
    for i in range(0, len(raw), 97):
        reader.feed(raw[i : i + 97])
        longest = max(longest, len(reader._buf))
    assert 0 < longest <= 2 + 4 + 125


# -- the reader's contract ---------------------------------------------------------


def test_an_error_is_sticky() -> None:
    reader = Reader()
    with pytest.raises(WebSocketError) as first:
        reader.feed(b"\x82\x01x")
    with pytest.raises(WebSocketError) as again:
        reader.feed(HELLO_MASKED)
    assert again.value is first.value


def test_events_before_an_error_ride_on_it() -> None:
    reader = Reader()
    with pytest.raises(WebSocketError) as info:
        reader.feed(cf(T, b"a") + cf(P, b"p") + cf(3))
    assert info.value.events == [Message("a"), Ping(b"p")]
    assert info.value.code == CloseCode.PROTOCOL_ERROR and info.value.reason == "reserved opcode 3"


def test_after_close_the_reader_is_closed_and_reads_nothing() -> None:
    reader = Reader()
    assert not reader.closed
    assert reader.feed(cf(CLOSE, close_payload(1000)) + cf(T, b"x")) == [Close(1000, "")]
    assert reader.closed
    assert reader.feed(cf(T, b"y")) == []


def test_mask_is_xor_with_the_key_repeated() -> None:
    rnd = random.Random(5)
    for n in [0, 1, 2, 3, 4, 5, 7, 8, 125, 1000, 4097]:
        data = rnd.randbytes(n)
        key = rnd.randbytes(4)
        assert mask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))
        assert mask(mask(data, key), key) == data
    assert mask(b"\x00\x00", K) == K[:2]


# -- the writer --------------------------------------------------------------------


def test_server_frames_are_rfc_6455_examples() -> None:
    assert text("Hello") == bytes.fromhex("810548656c6c6f")
    assert frame(T, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert frame(C, b"lo") == bytes.fromhex("80026c6f")
    assert ping(b"Hello") == bytes.fromhex("890548656c6c6f")
    assert pong(b"Hello") == bytes.fromhex("8a0548656c6c6f")
    assert binary(BLOB_256) == bytes.fromhex("827e0100") + BLOB_256
    assert binary(BLOB_64K) == bytes.fromhex("827f0000000000010000") + BLOB_64K


def test_server_frames_use_minimal_lengths_and_no_mask() -> None:
    for n, head in [(0, "8200"), (125, "827d"), (126, "827e007e"), (65535, "827effff")]:
        assert binary(b"x" * n) == bytes.fromhex(head) + b"x" * n
    assert frame(B, b"x", rsv1=True)[0] == 0xC2


def test_close_frames() -> None:
    assert close_frame() == b"\x88\x02\x03\xe8"
    assert close_frame(1001, "bye") == b"\x88\x05\x03\xe9bye"
    assert close_frame(CloseCode.NO_STATUS) == b"\x88\x00"
    assert close_frame(4999, "é" * 61) == b"\x88\x7c\x13\x87" + "é".encode() * 61
    for code in [1005, 1006, 1015, 999, 5000]:
        with pytest.raises(ValueError):
            close_frame(code, "x")
    with pytest.raises(ValueError):
        close_frame(1000, "r" * 124)


def test_control_frames_are_bounded() -> None:
    assert len(ping(b"p" * 125)) == 127
    with pytest.raises(ValueError):
        ping(b"p" * 126)
    with pytest.raises(ValueError):
        frame(P, b"", fin=False)


def test_encode_message_picks_the_opcode() -> None:
    assert encode_message("é") == text("é")
    assert encode_message(b"\x00") == binary(b"\x00")
    compressed = encode_message("Hello", Deflate())
    assert compressed == bytes.fromhex("c107f248cdc9c90700")  # RFC 7692 §7.2.3.1


def test_close_codes_follow_the_registry() -> None:
    assert all(is_valid_close_code(code) for code in VALID_CODES)
    assert not any(is_valid_close_code(code) for code in INVALID_CODES)
