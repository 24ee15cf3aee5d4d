"""Instructions per request, counted by callgrind: a figure that noise cannot move.

    python3 loadtests/instructions.py [--path parse|full]

Timing a hot path on a shared machine is noisy; counting the instructions it
executes is not. This runs a request loop under ``valgrind --tool=callgrind``
twice, with 2,000 and with 4,000 requests, and divides the difference by
2,000, so start-up and imports cancel out.

``parse``: parse, route, handle and frame one keep-alive GET, with no socket.
``full``: the same request through a real :class:`~reactor.connection.Connection`
on a :class:`~reactor.transport.Transport` over a socket pair, one ``loop.run_once()``
per request (the client's send and recv in the same process are counted too).

Needs Debian's ``valgrind``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"


def run_parse(count: int) -> None:
    from loadtests.hello import app
    from reactor import Config
    from reactor.http.parser import RequestParser
    from reactor.http.response import encode_head

    parser = RequestParser(Config())
    for _ in range(count):
        parser.receive_data(REQUEST)
        request = parser.next_event()
        parser.next_event()
        response = app.handle(request)  # type: ignore[arg-type]
        encode_head(response, len(response.body), keep_alive=True)
        parser.start_next_cycle()


def run_full(count: int) -> None:
    from loadtests.hello import app
    from reactor import Config, Server
    from reactor.connection import Connection
    from reactor.transport import Transport

    config = Config(port=0, access_log=False)
    server = Server(app, config)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = Connection(("127.0.0.1", 1), server.loop, config, app, server)
    server.connections.add(connection)
    Transport(ours, server.loop, config, server, connection).start()
    for _ in range(count):
        theirs.send(REQUEST)
        server.loop.run_once()
        assert theirs.recv(65536).endswith(b"Hello, World!")


def collected(path: str, count: int) -> int:
    """Instructions callgrind counts for one run of ``count`` requests."""
    python = os.path.realpath(sys.executable)  # not a shell shim: valgrind must see python
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            __file__,
            "--run",
            path,
            str(count),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if not match:
        raise SystemExit(f"callgrind printed no count:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Instructions per request, counted by callgrind.")
    parser.add_argument("--path", choices=["parse", "full"], default="full")
    parser.add_argument("--run", nargs=2, metavar=("PATH", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        sys.path.insert(0, str(ROOT))
        (run_parse if args.run[0] == "parse" else run_full)(int(args.run[1]))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    low, high = collected(args.path, 2000), collected(args.path, 4000)
    print(f"{args.path}: {(high - low) // 2000} instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
