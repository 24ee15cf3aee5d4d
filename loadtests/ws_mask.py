"""Unmasking a WebSocket payload: the codec's big-integer XOR against a loop over the bytes.

    python3 loadtests/ws_mask.py [--sizes 125,4096,65536,1048576] [--seconds 0.5]

Every client frame is masked (RFC 6455 §5.3), so the server XORs every byte
it reads with a 4-byte key. ``reactor.websocket.frames.mask`` does it with two
``int.from_bytes``, one XOR and one ``to_bytes``, all in C; the obvious pure
Python way is a loop over the bytes. For each payload size this prints the
MiB/s of both (best of five timed batches, CPU time) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reactor.websocket.frames import mask  # noqa: E402

KEY = b"\x37\xfa\x21\x3d"


def loop_mask(data: bytes, key: bytes) -> bytes:
    """The per-byte loop, as the obvious implementation writes it."""
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


def rate(function: Callable[[bytes, bytes], bytes], data: bytes, seconds: float) -> float:
    """MiB/s of ``function`` on ``data``: the best of five batches of CPU time."""
    runs = 1
    while True:  # size a batch to about seconds / 5
        start = time.process_time()
        for _ in range(runs):
            function(data, KEY)
        spent = time.process_time() - start
        if spent >= seconds / 5:
            break
        runs *= 2
    best = spent
    for _ in range(4):
        start = time.process_time()
        for _ in range(runs):
            function(data, KEY)
        best = min(best, time.process_time() - start)
    return len(data) * runs / best / (1 << 20)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="125,4096,65536,1048576")
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(f"{'bytes':>9} {'int XOR MiB/s':>14} {'loop MiB/s':>11} {'ratio':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        data = os.urandom(size)
        assert mask(data, KEY) == loop_mask(data, KEY)
        fast = rate(mask, data, args.seconds)
        slow = rate(loop_mask, data, args.seconds)
        print(f"{size:>9} {fast:>14.1f} {slow:>11.1f} {fast / slow:>6.0f}x")


if __name__ == "__main__":
    main()
