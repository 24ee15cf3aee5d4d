"""The transport's output bookkeeping, with no socket: what a partial send leaves queued."""

from __future__ import annotations

from collections import deque

from reactor.transport import _adjust_leftover


def test_a_partial_send_drops_whole_buffers_then_slices_the_next() -> None:
    out: deque[bytes | memoryview] = deque([b"abc", b"defg", b"hi"])
    _adjust_leftover(out, 5)
    assert [bytes(piece) for piece in out] == [b"fg", b"hi"]
    assert isinstance(out[0], memoryview)  # sliced without a copy
    _adjust_leftover(out, 2)
    assert [bytes(piece) for piece in out] == [b"hi"]
    _adjust_leftover(out, 0)
    assert [bytes(piece) for piece in out] == [b"hi"]
