"""permessage-deflate (RFC 7692) on bytes alone: negotiation, its §7.2.3 examples, limits, windows."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest

from reactor.websocket.deflate import Deflate, negotiate, parse_extensions
from reactor.websocket.frames import CloseCode, Message, Opcode, Ping, WebSocketError, client_frame
from tests.unit.websocket.ws_support import MODES, feed

T, C = Opcode.TEXT, Opcode.CONTINUATION
HELLO = bytes.fromhex("f248cdc9c90700")  # "Hello" compressed, RFC 7692 §7.2.3.1


def cf(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    return client_frame(opcode, payload, **kwargs)  # type: ignore[arg-type]


def client_compress(messages: list[bytes], wbits: int = 15, takeover: bool = True) -> list[bytes]:
    """What a client sends for ``messages``: each compressed, the 00 00 ff ff tail removed."""
    out = []
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    for data in messages:
        if not takeover:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(b"\x00\x00\xff\xff")
        out.append(payload[:-4])
    return out


# -- negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", "permessage-deflate"),
        ("Permessage-Deflate", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=10"),
        ('permessage-deflate; client_max_window_bits="10"', "permessage-deflate; client_max_window_bits=10"),
        ("permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=8"),
        ("permessage-deflate;server_max_window_bits=15", "permessage-deflate"),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        # Offers in order of preference: the first acceptable one wins.
        ("x-webkit-deflate-frame, permessage-deflate", "permessage-deflate"),
        (
            "permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        ("permessage-deflate; foo=1, permessage-deflate", "permessage-deflate"),
        ('x; a="1,2;3", permessage-deflate', "permessage-deflate"),
        (", ,permessage-deflate,", "permessage-deflate"),
        # Malformed or unacceptable offers are declined.
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=08", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; unknown", None),
        ("permessage-deflate;", None),
        ("permessage-deflate; =1", None),
        ("permessage-deflate; server_max_window_bits==9", None),
        ('permessage-deflate; client_max_window_bits="10', None),
        ("permessage-deflate\x00", None),
        ("permessage-deflate; client_max_window_bits=1\x000", None),
        ("x-other", None),
        ("", None),
        (None, None),
    ],
)
def test_negotiate(offer: str | None, response: str | None) -> None:
    result = negotiate(offer)
    assert (result and result[0]) == response


def test_negotiate_sets_the_state() -> None:
    result = negotiate(
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=9; server_max_window_bits=12"
    )
    assert result is not None
    deflate = result[1]
    assert deflate.server_no_context_takeover and not deflate.client_no_context_takeover
    assert (deflate.server_max_window_bits, deflate.client_max_window_bits) == (12, 9)


def test_negotiate_disabled_or_server_preferences() -> None:
    assert negotiate("permessage-deflate", enabled=False) is None
    result = negotiate("permessage-deflate", server_no_context_takeover=True, client_no_context_takeover=True)
    assert result is not None
    assert result[0] == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    # A smaller server window is announced only when the client offered the parameter (§7.1.2.1).
    quiet = negotiate("permessage-deflate", server_max_window_bits=10)
    assert quiet is not None and quiet[0] == "permessage-deflate" and quiet[1].server_max_window_bits == 10
    said = negotiate("permessage-deflate; server_max_window_bits=12", server_max_window_bits=10)
    assert said is not None and said[0] == "permessage-deflate; server_max_window_bits=10"


def test_parse_extensions_keeps_quoted_commas_and_semicolons() -> None:
    assert parse_extensions('a; b="x,;\\"y", c') == [("a", [("b", 'x,;"y')]), ("c", [])]
    assert parse_extensions("a b, c") == [None, ("c", [])]


# -- RFC 7692 §7.2.3 -----------------------------------------------------------------


def test_rfc_7692_hello_compressed() -> None:
    assert Deflate().compress(b"Hello") == HELLO
    assert Deflate().decompress(HELLO, 100) == b"Hello"


def test_rfc_7692_hello_twice_with_context_takeover() -> None:
    # §7.2.3.2: the second "Hello" refers back to the first.
    deflate = Deflate()
    assert deflate.compress(b"Hello") == HELLO
    assert deflate.compress(b"Hello") == bytes.fromhex("f200110000")
    no_takeover = Deflate(server_no_context_takeover=True)
    assert no_takeover.compress(b"Hello") == no_takeover.compress(b"Hello") == HELLO
    reader = Deflate()
    assert reader.decompress(HELLO, 100) == b"Hello"
    assert reader.decompress(bytes.fromhex("f200110000"), 100) == b"Hello"


def test_rfc_7692_uncompressed_block_and_fragments() -> None:
    # §7.2.3.3: a stored block; §7.2.3.1: one compressed message in two fragments.
    stored = bytes.fromhex("0005 00faff 48656c6c6f 00".replace(" ", ""))
    assert Deflate().decompress(stored, 100) == b"Hello"
    for mode in MODES:
        raw = cf(T, HELLO[:3], rsv=4, fin=False) + cf(C, HELLO[3:])
        assert feed(raw, mode, deflate=Deflate()).events == [Message("Hello")], mode


def test_rfc_7692_bfinal_block_then_a_new_stream() -> None:
    # §7.2.3.4: a block with BFINAL set; the next message starts a new stream.
    final = bytes.fromhex("f348cdc9c90700")
    run = feed(cf(T, final, rsv=4) + cf(T, HELLO, rsv=4), deflate=Deflate())
    assert run.error is None and run.events == [Message("Hello"), Message("Hello")]


def test_rfc_7692_empty_message() -> None:
    # §7.2.3.6: an empty message compresses to one 0x00 byte.
    assert Deflate().compress(b"") == b"\x00"
    assert Deflate().decompress(b"\x00", 10) == b""


@pytest.mark.parametrize("mode", MODES)
def test_compressed_messages_with_context_takeover(mode: str) -> None:
    rnd = random.Random(mode)
    messages = [rnd.choice(["Hello", "κόσμε", "x" * 3000, ""]).encode() for _ in range(12)]
    raw = b"".join(cf(T, p, rsv=4) for p in client_compress(messages))
    raw += cf(Opcode.PING, b"p")
    run = feed(raw, mode, deflate=Deflate())
    assert run.error is None, run.error
    assert run.events == [*(Message(m.decode()) for m in messages), Ping(b"p")]


def test_uncompressed_messages_may_be_mixed_in() -> None:
    payloads = client_compress([b"one", b"three"])
    raw = cf(T, payloads[0], rsv=4) + cf(Opcode.BINARY, b"two") + cf(T, payloads[1], rsv=4)
    assert feed(raw, deflate=Deflate()).events == [Message("one"), Message(b"two"), Message("three")]


def test_client_no_context_takeover_drops_the_decompressor() -> None:
    deflate = Deflate(client_no_context_takeover=True)
    payloads = client_compress([b"Hello", b"Hello"], takeover=False)
    run = feed(b"".join(cf(T, p, rsv=4) for p in payloads), deflate=deflate)
    assert run.events == [Message("Hello"), Message("Hello")]
    assert deflate._decompressor is None


# -- limits --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["whole", "random0", "random1"])
def test_a_decompression_bomb_is_cut_at_the_limit(mode: str) -> None:
    bomb = client_compress([b"\x00" * (64 << 20)])[0]  # 64 MiB in about 64 KiB
    assert len(bomb) < 100_000
    raw = cf(Opcode.BINARY, bomb, rsv=4)
    tracemalloc.start()
    try:
        run = feed(raw, mode, max_message=1 << 20, deflate=Deflate())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.error is not None and run.error.code == CloseCode.TOO_BIG
    # Never more than the limit decompressed at once (and the pieces around it).
    assert peak < 4 << 20, f"{peak} bytes at the peak"


def test_decompress_is_bounded_exactly() -> None:
    payload = client_compress([b"a" * 1000])[0]
    assert Deflate().decompress(payload, 1000) == b"a" * 1000
    with pytest.raises(WebSocketError) as info:
        Deflate().decompress(payload, 999)
    assert info.value.code == CloseCode.TOO_BIG


def test_compressed_bytes_count_toward_the_limit() -> None:
    noise = random.Random(1).randbytes(5000)
    payload = client_compress([noise])[0]
    run = feed(cf(Opcode.BINARY, payload, rsv=4), max_message=4000, deflate=Deflate())
    assert run.error is not None and run.error.code == CloseCode.TOO_BIG


def test_invalid_compressed_data_is_1007() -> None:
    run = feed(cf(T, b"\xff\xff\xff\xff", rsv=4), deflate=Deflate())
    assert run.error is not None and run.error.code == CloseCode.INVALID_DATA


def test_compressed_text_must_be_utf8() -> None:
    payload = client_compress([b"ok \xed\xa0\x80"])[0]
    run = feed(cf(T, payload, rsv=4), deflate=Deflate())
    assert run.error is not None and run.error.code == CloseCode.INVALID_DATA


# -- window bits ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 9, 12, 15])
def test_the_server_window_is_within_the_negotiated_bits(bits: int) -> None:
    # The peer inflates with exactly the negotiated window: a back-reference
    # further than it allows would be "invalid distance too far back". For 8
    # bits zlib compresses with 9, whose matches reach at most 250 bytes back.
    result = negotiate(f"permessage-deflate; server_max_window_bits={bits}")
    assert result is not None
    deflate = result[1]
    rnd = random.Random(bits)
    words = [rnd.randbytes(rnd.randint(3, 12)) for _ in range(60)]
    peer = zlib.decompressobj(-bits)
    for _ in range(30):
        message = b" ".join(rnd.choice(words) for _ in range(400))
        compressed = deflate.compress(message)
        assert peer.decompress(compressed + b"\x00\x00\xff\xff") == message


@pytest.mark.parametrize("bits", [8, 10, 15])
def test_the_decompressor_uses_the_client_window(bits: int) -> None:
    result = negotiate(f"permessage-deflate; client_max_window_bits={bits}")
    assert result is not None
    compress_bits = max(bits, 9)  # the client's zlib cannot do 8 either
    messages = [random.Random(i).randbytes(40) * 30 for i in range(5)]
    raw = b"".join(cf(Opcode.BINARY, p, rsv=4) for p in client_compress(messages, compress_bits))
    assert feed(raw, "random2", deflate=result[1]).events == [Message(m) for m in messages]
