"""The WebSocket codec's cost grows linearly with what the client sends.

Like ``test_complexity.py``: each input is built at size n and at 8n and fed to
a fresh :class:`~reactor.websocket.frames.Reader` (limits raised out of the
way), and the test fails if the cost grows more than ``MAX_RATIO`` (20x;
linear is 8x, quadratic 64x). The inputs are the shapes that would expose a
buffer copied per frame or per read, a message re-joined per fragment, or
text re-decoded from its start: many tiny frames in one read or trickled in
small reads, one huge message in many fragments, text whose characters
straddle the fragments, a compressed message in many fragments, and Close
frames with long reasons (a reason is at most 123 bytes, so n is its length
and the input is many connections' worth of them).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from reactor.websocket.deflate import Deflate
from reactor.websocket.frames import Message, Opcode, Reader, WebSocketError, client_frame
from tests.complexity.measure import MAX_RATIO, growth

T, B, C = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
HUGE = 1 << 30


def outcome(pieces: list[bytes], deflate: bool = False) -> tuple[int, int, int | str]:
    """(messages, bytes or characters in them, end): ``end`` is the close code or "ok"."""
    reader = Reader(HUGE, deflate=Deflate() if deflate else None)
    messages = size = 0
    try:
        for piece in pieces:
            for event in reader.feed(piece):
                if isinstance(event, Message):
                    messages += 1
                    size += len(event.data)
                else:
                    size += len(getattr(event, "reason", b""))
                    messages += 1
    except WebSocketError as exc:
        return messages, size, int(exc.code)
    return messages, size, "ok"


def reads(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def fragmented(opcode: int, parts: list[bytes], compressed: bool = False) -> bytes:
    last = len(parts) - 1
    frames = [
        client_frame(C, p, fin=i == last) if i else client_frame(opcode, p, fin=i == last, rsv=4 * compressed)
        for i, p in enumerate(parts)
    ]
    return b"".join(frames)


def compressed_parts(data: bytes, count: int) -> list[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    step = max(1, len(payload) // count)
    return [payload[i : i + step] for i in range(0, len(payload), step)]


@dataclass(frozen=True)
class Case:
    id: str
    n: int
    build: Callable[[int], Any]
    run: Callable[[Any], Any]
    expect: Callable[[int], Any]
    reps: int = 1


TEXT_PIECE = "κ€𝄞a".encode()  # 10 bytes, 4 characters
CASES = [
    Case("tiny-frames", 5000, lambda n: [client_frame(B, b"x") * n], outcome, lambda n: (n, n, "ok")),
    Case(
        "tiny-frames-trickled",
        3000,
        lambda n: reads(client_frame(B, b"x") * n, 5),
        outcome,
        lambda n: (n, n, "ok"),
    ),
    Case(
        "huge-fragmented-message",
        500,
        lambda n: reads(fragmented(B, [b"m" * 1024] * n), 65536),
        outcome,
        lambda n: (1, 1024 * n, "ok"),
    ),
    Case(
        "huge-fragmented-message-one-read",
        500,
        lambda n: [fragmented(B, [b"m" * 1024] * n)],
        outcome,
        lambda n: (1, 1024 * n, "ok"),
    ),
    Case(
        # Each fragment ends inside a character: the decoder carries it over.
        "text-fragments-split-characters",
        2000,
        lambda n: reads(
            fragmented(T, [TEXT_PIECE[:3], *[TEXT_PIECE[3:] + TEXT_PIECE[:3]] * (n - 1), TEXT_PIECE[3:]]),
            4096,
        ),
        outcome,
        lambda n: (1, 4 * n, "ok"),
    ),
    Case(
        "text-many-tiny-fragments",
        3000,
        lambda n: [fragmented(T, [b"a"] * n)],
        outcome,
        lambda n: (1, n, "ok"),
    ),
    Case(
        "compressed-fragments",
        500,
        lambda n: [fragmented(T, compressed_parts(TEXT_PIECE * 50 * n, n), compressed=True)],
        lambda pieces: outcome(pieces, deflate=True),
        lambda n: (1, 200 * n, "ok"),
    ),
    Case(
        "close-reasons",
        15,
        # n is the reason's length in bytes (two per character): 120 at 8n, within the 123 allowed.
        lambda n: [client_frame(Opcode.CLOSE, b"\x03\xe8" + "é".encode() * (n // 2)) for _ in range(2000)],
        lambda frames: [outcome([f]) for f in frames],
        lambda n: [(1, n // 2, "ok")] * 2000,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cost_grows_linearly(case: Case) -> None:
    try:
        result = growth(case.build, case.run, case.n, case.reps)
    except TimeoutError as exc:
        pytest.fail(f"{case.id}: {exc}")
    assert result.small_outcome == case.expect(case.n), f"{case.id} at n: {result.small_outcome!r:.200}"
    assert result.large_outcome == case.expect(8 * case.n), f"{case.id} at 8n: {result.large_outcome!r:.200}"
    assert result.ratio <= MAX_RATIO, (
        f"{case.id}: {result.small_s * 1e3:.2f} ms at n={case.n}, {result.large_s * 1e3:.2f} ms at 8n: "
        f"{result.ratio:.0f}x (linear is 8x, quadratic 64x; the bound is {MAX_RATIO:.0f}x)"
    )
