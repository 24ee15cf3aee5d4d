"""Instructions per WebSocket message in the codec, counted by callgrind (noise cannot move them).

    python3 loadtests/ws_instructions.py [--case read-text,read-binary,...|all]

For each case this runs a loop of the codec alone (no socket) under
``valgrind --tool=callgrind`` twice, with :data:`LOW` and :data:`HIGH`
messages, and divides the difference of the two counts by ``HIGH - LOW``, so
that start-up, imports and warm-up cancel out (as ``instructions.py`` does
for HTTP requests). ``--run CASE COUNT`` runs one loop without callgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOW, HIGH = 2000, 6000
PAYLOAD = b"x" * 256


def _loop(case: str) -> Callable[[int], None]:
    from reactor.websocket.deflate import Deflate
    from reactor.websocket.frames import Opcode, Reader, client_frame, encode_message

    if case == "read-text":
        data = client_frame(Opcode.TEXT, PAYLOAD)
    elif case == "read-binary":
        data = client_frame(Opcode.BINARY, PAYLOAD)
    elif case == "read-text-2-fragments":
        data = client_frame(Opcode.TEXT, PAYLOAD[:128], fin=False) + client_frame(
            Opcode.CONTINUATION, PAYLOAD[128:]
        )
    elif case in ("write-text", "write-text-deflate"):
        deflate = Deflate() if case.endswith("deflate") else None
        message = PAYLOAD.decode()

        def write(count: int) -> None:
            for _ in range(count):
                encode_message(message, deflate)

        return write
    else:
        raise SystemExit(f"unknown case {case!r}")

    def read(count: int) -> None:
        reader = Reader()
        for _ in range(count):
            reader.feed(data)

    return read


DESCRIPTIONS = {
    "read-text": "feed one masked 256-byte text frame, get the Message",
    "read-binary": "feed one masked 256-byte binary frame, get the Message",
    "read-text-2-fragments": "feed a 256-byte text message in two frames (the streaming path)",
    "write-text": "encode_message() of a 256-character str",
    "write-text-deflate": "encode_message() of a 256-character str, compressed (context takeover)",
}


def count_instructions(case: str, count: int) -> int:
    python = os.path.realpath(sys.executable)
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            __file__,
            "--run",
            case,
            str(count),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit(f"callgrind printed no count:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="all")
    parser.add_argument("--run", nargs=2, metavar=("CASE", "COUNT"))
    args = parser.parse_args(argv)
    if args.run:
        _loop(args.run[0])(int(args.run[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    cases = list(DESCRIPTIONS) if args.case == "all" else args.case.split(",")
    print(f"{'case':<24} {'instructions/message':>21}  what")
    for case in cases:
        low, high = count_instructions(case, LOW), count_instructions(case, HIGH)
        print(f"{case:<24} {(high - low) / (HIGH - LOW):>21,.0f}  {DESCRIPTIONS[case]}")


if __name__ == "__main__":
    main()
