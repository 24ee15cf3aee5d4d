"""Coverage-guided fuzzing of the WebSocket codec with atheris (libFuzzer for Python).

Run it as a script from the repository root::

    python tests/fuzz/fuzz_websocket.py -max_total_time=300 -dict=tests/fuzz/ws.dict

Other arguments are libFuzzer's (``-help=1`` lists them); directories given
are the corpus, and without one the seeds (every case of
``tests/unit/websocket/test_ws_frames.py``, and compressed messages) go into
a fresh temporary directory. ``--write-seeds DIR`` writes the seeds and exits.

One input is: a byte ``k``, then ``k % 9`` split points of two bytes each,
then the bytes a client sends after the handshake; ``k >= 128`` means
permessage-deflate was negotiated. They are fed to a Reader whole and, in a
second Reader, cut at the split points. What must hold:

- only WebSocketError comes out of the reader, with 1002, 1007 or 1009;
  every event is a Message of ``str`` or ``bytes``, a Ping or Pong of at most
  125 bytes, or a Close whose code may be sent (or 1005 for none) and whose
  reason is at most 123 bytes; nothing is read after a Close;
- the split run makes the same events, and fails or not, as the whole run
  (and with the same code, without deflate: with it, the pieces that a cut
  hands zlib can make a bad UTF-8 byte show before the limit is passed);
- the reader never holds more than one header or control frame (131 bytes);
- both runs together take at most ``BUDGET_S`` of CPU time for an input of
  at most 64 KiB.
"""

from __future__ import annotations

import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["reactor"]):
    import reactor.websocket  # noqa: F401

from reactor.websocket.deflate import Deflate  # noqa: E402
from reactor.websocket.frames import (  # noqa: E402
    Close,
    CloseCode,
    Event,
    Message,
    Opcode,
    Ping,
    Pong,
    Reader,
    WebSocketError,
    client_frame,
    is_valid_close_code,
)
from tests.unit.parser_support import split_at  # noqa: E402

#: CPU seconds both runs of one input may take together.
BUDGET_S = 0.5
BUDGET_BYTES = 65536
MAX_CUTS = 8
#: Small limits, so that the fuzzer reaches them.
MAX_MESSAGE = 4096
CODES = {CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA, CloseCode.TOO_BIG}


class SlowInput(Exception):
    """An input took longer than the budget."""


class SplitMismatch(AssertionError):
    """Cutting the bytes differently changed what the reader made of them."""


def decode(data: bytes) -> tuple[bytes, list[int], bool]:
    """The client bytes, the split points and whether deflate is on, from one fuzzer input."""
    if not data:
        return b"", [], False
    count = data[0] % (MAX_CUTS + 1)
    deflate = data[0] >= 128
    header = 1 + 2 * count
    if len(data) < header:
        return data[1:], [], deflate
    raw = data[header:]
    cuts = [struct.unpack_from(">H", data, 1 + 2 * i)[0] for i in range(count)]
    return raw, ([cut % len(raw) for cut in cuts] if raw else []), deflate


def encode(raw: bytes, cuts: list[int], deflate: bool = False) -> bytes:
    """The fuzzer input for ``raw`` cut at ``cuts`` (for the seeds)."""
    first = len(cuts) + (135 if deflate else 0)  # 135 % 9 == 0: the count is kept
    return bytes([first]) + b"".join(struct.pack(">H", cut) for cut in cuts) + raw


def run(pieces: list[bytes], deflate: bool) -> tuple[list[Event], WebSocketError | None]:
    reader = Reader(MAX_MESSAGE, deflate=Deflate() if deflate else None)
    events: list[Event] = []
    for piece in pieces:
        try:
            events.extend(reader.feed(piece))
        except WebSocketError as exc:
            events.extend(exc.events)
            assert exc.code in CODES, exc.code
            return events, exc
        assert len(reader._buf) <= 2 + 4 + 125, len(reader._buf)
    return events, None


def check_events(events: list[Event]) -> None:
    for i, event in enumerate(events):
        if isinstance(event, Message):
            assert isinstance(event.data, (str, bytes))
            assert len(event.data) <= MAX_MESSAGE
        elif isinstance(event, (Ping, Pong)):
            assert len(event.payload) <= 125
        else:
            assert isinstance(event, Close)
            assert event.code == CloseCode.NO_STATUS or is_valid_close_code(event.code), event
            assert len(event.reason.encode()) <= 123
            assert i == len(events) - 1, "an event after a Close"


def check(data: bytes) -> None:
    raw, cuts, deflate = decode(data)
    start = time.process_time()
    whole, whole_error = run([raw], deflate)
    split, split_error = run(split_at(raw, cuts), deflate)
    spent = time.process_time() - start
    check_events(whole)
    if split != whole:
        raise SplitMismatch(f"cut at {cuts}: {split!r:.300} != {whole!r:.300}")
    if (split_error is None) != (whole_error is None):
        raise SplitMismatch(f"cut at {cuts}: error {split_error!r} != {whole_error!r}")
    if not deflate and split_error is not None and whole_error is not None:
        if split_error.code != whole_error.code:
            raise SplitMismatch(f"cut at {cuts}: {split_error!r} != {whole_error!r}")
    if spent > BUDGET_S and len(raw) <= BUDGET_BYTES:
        raise SlowInput(f"{spent:.2f} s of CPU for {len(raw)} bytes")


def seeds() -> list[bytes]:
    """Every frame case of the unit tests, whole and cut in three places, and compressed messages."""
    from tests.unit.websocket.test_ws_frames import CASES

    inputs = [(case.raw, case.deflate) for case in CASES if len(case.raw) <= 8192]
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    compressed = b""
    for message in [b"Hello", "κόσμε".encode(), b"x" * 300, b""]:
        payload = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        compressed += client_frame(Opcode.TEXT, payload, rsv=4)
    inputs.append((compressed, True))
    out = []
    for raw, deflate in inputs:
        out.append(encode(raw, [], deflate))
        if len(raw) > 3:
            out.append(encode(raw, [len(raw) // 4, len(raw) // 2, 3 * len(raw) // 4], deflate))
    return out


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds()):
        (directory / f"seed-{index:04d}").write_bytes(seed)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        write_seeds(Path(argv[2]))
        return
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="reactor-fuzz-ws-corpus-"))
        write_seeds(corpus)
        print(f"seed corpus: {corpus}", file=sys.stderr)
        argv = [*argv, str(corpus)]
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
