"""Driving the WebSocket Reader over bytes cut in different ways, for the websocket unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from reactor.websocket.deflate import Deflate
from reactor.websocket.frames import Event, Reader, WebSocketError
from tests.unit.parser_support import random_split

#: How a case's bytes are fed: in one call, one byte per call, or cut at random places.
MODES = ["whole", "bytewise", *(f"random{seed}" for seed in range(5))]


def pieces(raw: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [raw]
    if mode == "bytewise":
        return [raw[i : i + 1] for i in range(len(raw))]
    return random_split(raw, f"{raw[:32]!r}:{len(raw)}:{mode}")


@dataclass
class Run:
    events: list[Event] = field(default_factory=list)
    error: WebSocketError | None = None
    # Bytes fed before the call that raised (so: how early it failed).
    fed_before_error: int = 0


def feed(
    raw: bytes,
    mode: str = "whole",
    *,
    max_message: int = 1 << 20,
    max_frame: int | None = None,
    deflate: Deflate | None = None,
) -> Run:
    """Feed ``raw`` cut as ``mode`` says to a fresh Reader; what came out."""
    reader = Reader(max_message, max_frame, deflate)
    run = Run()
    fed = 0
    for piece in pieces(raw, mode):
        try:
            run.events.extend(reader.feed(piece))
        except WebSocketError as exc:
            run.events.extend(exc.events)
            run.error = exc
            run.fed_before_error = fed
            return run
        fed += len(piece)
    return run
