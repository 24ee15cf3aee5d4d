"""Coverage-guided fuzzing of the request parser with atheris (libFuzzer for Python).

Run it as a script from the repository root::

    python tests/fuzz/fuzz_parser.py -max_total_time=300

Other arguments are libFuzzer's (``-help=1`` lists them); directories given
are the corpus, and without one the seeds (every vector in ``tests/vectors``)
go into a fresh temporary directory. ``--write-seeds DIR`` writes the seeds
and exits.

One input is: a byte ``k``, then ``k % 9`` split points of two bytes each,
then the bytes a client sends. They are fed to a parser whole and, in a
second parser, cut at the split points; both end with EOF. What must hold:

- only ProtocolError comes out of the parser (with one of its statuses), and
  the events come in the documented order (``tests/unit/parser_support.drive``
  checks that); any other exception is a finding;
- the split run parses the same requests, with the same bodies, and fails or
  not, as the whole run;
- both runs together take at most ``BUDGET_S`` of CPU time for an input of
  at most 64 KiB: slowness is a finding too. An input that never finishes
  (a backtracking regex does not look at signals) is stopped by libFuzzer's
  own ``-timeout``, which saves it as ``timeout-*``.
"""

from __future__ import annotations

import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["reactor"]):
    import reactor.http.parser  # noqa: F401

from reactor.config import Config  # noqa: E402
from reactor.http.errors import ProtocolError  # noqa: E402
from tests.unit.parser_support import INVALID, STATUSES, VALID, drive, split_at  # noqa: E402

#: CPU seconds both runs of one input may take together.
BUDGET_S = 0.5
BUDGET_BYTES = 65536
MAX_CUTS = 8
CONFIG = Config()


class SlowInput(Exception):
    """An input took longer than the budget."""


class SplitMismatch(AssertionError):
    """Cutting the bytes differently changed what the parser made of them."""


def decode(data: bytes) -> tuple[bytes, list[int]]:
    """The client bytes and the split points that one fuzzer input holds."""
    if not data:
        return b"", []
    count = data[0] % (MAX_CUTS + 1)
    header = 1 + 2 * count
    if len(data) < header:
        return data[1:], []
    raw = data[header:]
    cuts = [struct.unpack_from(">H", data, 1 + 2 * i)[0] for i in range(count)]
    return raw, [cut % len(raw) for cut in cuts] if raw else []


def encode(raw: bytes, cuts: list[int]) -> bytes:
    """The fuzzer input for ``raw`` cut at ``cuts`` (for the seeds)."""
    return bytes([len(cuts)]) + b"".join(struct.pack(">H", cut) for cut in cuts) + raw


def check(data: bytes) -> None:
    raw, cuts = decode(data)
    start = time.process_time()
    whole = drive(CONFIG, [raw], eof=True)
    split = drive(CONFIG, split_at(raw, cuts), eof=True)
    spent = time.process_time() - start
    for run in (whole, split):
        if run.error is not None:
            assert isinstance(run.error, ProtocolError)
            assert run.error.status in STATUSES, run.error.status
            assert run.after_error == [], run.after_error
        else:
            assert run.closed, "EOF left the parser waiting"
    if split.heads != whole.heads or split.messages != whole.messages:
        raise SplitMismatch(f"cut at {cuts}: {split.heads} != {whole.heads} or bodies differ")
    if (split.error is None) != (whole.error is None):
        raise SplitMismatch(f"cut at {cuts}: error {split.error!r} != {whole.error!r}")
    if spent > BUDGET_S and len(raw) <= BUDGET_BYTES:
        raise SlowInput(f"{spent:.2f} s of CPU for {len(raw)} bytes")


def seeds() -> list[bytes]:
    """Every vector, whole and cut in three places."""
    out = []
    for vector in [*VALID, *INVALID]:
        raw = vector.raw
        out.append(encode(raw, []))
        if len(raw) > 3:
            out.append(encode(raw, [len(raw) // 4, len(raw) // 2, 3 * len(raw) // 4]))
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
        corpus = Path(tempfile.mkdtemp(prefix="reactor-fuzz-corpus-"))
        write_seeds(corpus)
        print(f"seed corpus: {corpus}", file=sys.stderr)
        argv = [*argv, str(corpus)]
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
