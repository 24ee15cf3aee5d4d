"""Instructions per request, counted by callgrind: a figure that noise cannot move.

    python3 loadtests/instructions.py [--path floor,parse,full,full-log,post,pipelined,close|all]

Timing a hot path on a shared machine is noisy; counting the instructions it
executes is not. For each path this runs a request loop under ``valgrind
--tool=callgrind`` twice, with :data:`LOW` and with :data:`HIGH` requests, and
divides the difference of the two counts by ``HIGH - LOW``: start-up, imports
and the first requests (while CPython's adaptive interpreter warms up) are in
both runs and cancel out, the same way for every path.

``floor``: the least a server in Python can do: a bare ``selectors`` loop on
one end of a socket pair reads the request, finds the end of its head with
``find(b"\\r\\n\\r\\n")`` and sends a fixed response. It is measured exactly
like ``full`` (the same request, the client's side in the same process).
``parse``: parse, route, handle and frame one keep-alive GET, with no socket.
``full``: the same request through a real :class:`~reactor.connection.Connection`
on a :class:`~reactor.transport.Transport` over a socket pair, one ``loop.run_once()``
per request (the client's send and recv in the same process are counted too).
``full-log``: ``full`` with the access log on, each line formatted and
written by a ``logging`` handler (to ``/dev/null``): what a logged request
costs on top of ``full``, where the log is off.
``post``: ``full`` with ``POST /echo`` and a 1 KiB body (echoed back).
``pipelined``: ``full`` with 16 GETs in one send; the figure is per request.
``close``: a new connection for each GET (``Connection: close``): the
server's accept, answer and close, the client's connect and close.

``--idle N`` (with ``full``, ``full-log``, ``post`` and ``pipelined``) first
opens N keep-alive connections on the same loop, each sent one GET and
answered, and leaves them idle: what holding them adds to each request
(``docs/wsgi.md``, "Measured"; it is the difference against ``--idle 0``).

When ``floor`` is measured with other paths, each is also given as a multiple
of it. ``--out FILE`` writes the figures as JSON (``docs/instructions.json`` is
the one ``docs/benchmarks.md`` shows); with ``--step CHANGE`` the figures are
also added to the file's list of steps, what each change to the hot path made
of them, which the page shows too. Needs Debian's ``valgrind``;
``--run PATH COUNT`` runs one loop without it (what callgrind runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
BODY = b"x" * 1024
POST = (
    b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + BODY
)
DEPTH = 16
HELLO = b"Hello, World!"
#: The two run lengths, in requests; multiples of :data:`DEPTH`.
LOW, HIGH = 2000, 4000
#: Every path, in the order they are measured and shown, and what it runs.
DESCRIPTIONS = {
    "floor": 'a bare `selectors` loop: `recv`, `find(b"\\r\\n\\r\\n")`, a fixed answer (GET)',
    "parse": "parse, route, handle and frame one GET, no socket",
    "full": "one GET through a `Connection`, one loop pass",
    "full-log": "`full` with the access log on (lines written to `/dev/null`)",
    "post": "`POST /echo` with a 1 KiB body through a `Connection`",
    "pipelined": f"{DEPTH} GETs in one send through a `Connection`, per request",
    "close": "a GET with `Connection: close` on a new connection: accept, answer, close",
}
PATHS = tuple(DESCRIPTIONS)
#: The paths through a :class:`~reactor.connection.Connection`, which ``--idle`` applies to.
IDLE_PATHS = ("full", "full-log", "post", "pipelined")


def _floor() -> tuple[Callable[[], None], socket.socket]:
    """A bare selectors loop on one end of a socket pair: one pass, and the other end.

    A pass reads what is there, finds the end of the request head and sends a
    fixed answer: no parse, no routing, no state, no timers (one request a read,
    as in ``full``).
    """
    from loadtests.peers.floor_hello import KEEP_ALIVE  # the same answer as the floor under wrk

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    selector = selectors.DefaultSelector()
    buffer = bytearray()

    def on_readable() -> None:
        buffer.extend(ours.recv(65536))
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            del buffer[: end + 4]
            ours.send(KEEP_ALIVE)

    def run_once() -> None:
        for key, _mask in selector.select():
            key.data()

    selector.register(ours, selectors.EVENT_READ, on_readable)
    return run_once, theirs


def run_parse(count: int) -> int:
    from loadtests.hello import app
    from reactor import Config
    from reactor.http.parser import RequestParser
    from reactor.http.response import encode_head

    parser = RequestParser(Config())
    answered = 0
    for _ in range(count):
        parser.receive_data(REQUEST)
        request = parser.next_event()
        parser.next_event()
        response = app.handle(request)  # type: ignore[arg-type]
        encode_head(response, len(response.body), keep_alive=True)
        parser.start_next_cycle()
        answered += response.body == HELLO
    return answered


def _connection(access_log: bool = False, idle: int = 0) -> tuple[Callable[[], None], socket.socket]:
    """reactor's :class:`Connection` on one end of a socket pair: one loop pass, and the other end.

    With ``idle``, that many other connections are on the same server first,
    each answered once and then idle (their client ends are kept open).
    """
    from loadtests.hello import app
    from reactor import Config, Server
    from reactor.connection import Connection
    from reactor.transport import Transport

    if access_log:
        import logging

        from reactor.log import configure

        configure("info")  # as the server's command line does, then to /dev/null
        handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (open for the run)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("reactor.access").handlers[:] = [handler]
    # Long enough a keep-alive that no idle connection leaves during the run.
    config = Config(port=0, access_log=access_log, max_connections=idle + 16, keepalive_timeout_s=3600)
    server = Server(app, config)

    def connect() -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        connection = Connection(("127.0.0.1", 1), server.loop, config, app, server)
        server.connections[connection] = None
        Transport(ours, server.loop, config, server, connection).start()
        return theirs

    # The idle ones: each sends one GET and reads its answer, then stays open.
    idle_clients = [connect() for _ in range(idle)]
    for client in idle_clients:
        client.send(REQUEST)
        client.setblocking(False)
    waiting = idle_clients
    while waiting:
        server.loop.call_soon(int)  # a pass that never waits in the poll, even with all answered
        server.loop.run_once()
        still = []
        for client in waiting:
            try:
                if not client.recv(65536).endswith(HELLO):
                    raise RuntimeError("an idle connection's answer was cut")
            except BlockingIOError:
                still.append(client)
        waiting = still
    _IDLE_CLIENTS[:] = idle_clients
    return server.loop.run_once, connect()


#: The client ends of ``--idle``'s connections, open until the process exits.
_IDLE_CLIENTS: list[socket.socket] = []


def _exchange(
    serve: tuple[Callable[[], None], socket.socket], count: int, request: bytes, per_send: int, end: bytes
) -> int:
    """The client's side: send ``request`` ``per_send`` times in one send, run the server's
    loop until every answer is in (each ends with ``end``); returns the answers counted.

    The same for every path that has a socket, so that their figures compare.
    """
    run_once, theirs = serve
    batch = request * per_send
    answered = 0
    for _ in range(count // per_send):
        theirs.send(batch)
        got = 0
        while got < per_send:
            run_once()
            try:
                got += theirs.recv(1 << 20, socket.MSG_DONTWAIT).count(end)
            except BlockingIOError:
                pass  # that pass sent nothing yet
        answered += got
    return answered


def run_close(count: int) -> int:
    """Connect, send one GET with ``Connection: close``, read to the end, close:
    reactor's accept, answer and close on a listening socket (the client's
    connect and close are counted too, as its side is on the other paths)."""
    from loadtests.hello import app
    from reactor import Config, Server

    server = Server(app, Config(port=0))
    server.start()
    address = server.addresses[0]
    request = REQUEST[:-2] + b"Connection: close\r\n\r\n"
    answered = 0
    for _ in range(count):
        client = socket.create_connection(address)
        client.send(request)
        client.setblocking(False)
        got = b""
        done = False
        while not done:
            server.loop.run_once()
            while True:  # read all there is: the end may be there already
                try:
                    data = client.recv(1 << 16)
                except BlockingIOError:
                    break
                if not data:
                    done = True
                    break
                got += data
        client.close()
        answered += got.endswith(HELLO)
    server.loop.close()
    return answered


def run_floor(count: int) -> int:
    return _exchange(_floor(), count, REQUEST, 1, HELLO)


def run_full(count: int, idle: int = 0) -> int:
    return _exchange(_connection(idle=idle), count, REQUEST, 1, HELLO)


def run_full_log(count: int, idle: int = 0) -> int:
    return _exchange(_connection(access_log=True, idle=idle), count, REQUEST, 1, HELLO)


def run_post(count: int, idle: int = 0) -> int:
    return _exchange(_connection(idle=idle), count, POST, 1, BODY)


def run_pipelined(count: int, idle: int = 0) -> int:
    return _exchange(_connection(idle=idle), count, REQUEST, DEPTH, HELLO)


RUNS: dict[str, Callable[..., int]] = {
    "floor": run_floor,
    "parse": run_parse,
    "full": run_full,
    "full-log": run_full_log,
    "post": run_post,
    "pipelined": run_pipelined,
    "close": run_close,
}


def collected(path: str, count: int, idle: int = 0) -> int:
    """Instructions callgrind counts for one run of ``count`` requests (``idle``: see ``--idle``)."""
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
            *(["--idle", str(idle)] if idle else []),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if not match:
        raise SystemExit(f"callgrind printed no count:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def per_request(low: int, high: int) -> int:
    """Instructions per request from the counts of a LOW and a HIGH run: start-up cancels out."""
    return (high - low) // (HIGH - LOW)


def _paths(text: str) -> list[str]:
    names = list(PATHS) if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PATHS]
    if unknown or not names:
        known = ", ".join(PATHS)
        raise argparse.ArgumentTypeError(
            f"unknown path {', '.join(unknown) or '(none)'}; choose from {known}"
        )
    return [name for name in PATHS if name in names]


def _report(
    figures: dict[str, int], argv: list[str] | None, steps: list[dict[str, Any]], idle: int = 0
) -> dict[str, Any]:
    """The figures and what they depend on, for ``--out`` (``docs/benchmarks.md`` shows them),
    and ``steps``: the figures after each change to the hot path, oldest first."""
    from loadtests.bench.servers import reactor_fingerprint

    def output(*command: str) -> str:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "command": ["python3", "loadtests/instructions.py", *(argv if argv is not None else sys.argv[1:])],
        "python": platform.python_version(),
        "valgrind": output("valgrind", "--version"),
        "git": output("git", "describe", "--always", "--dirty"),
        "reactor_sources_sha256": reactor_fingerprint(ROOT),
        "requests": [LOW, HIGH],
        "idle_connections": idle,
        "descriptions": {path: DESCRIPTIONS[path] for path in figures},
        "instructions_per_request": figures,
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Instructions per request, counted by callgrind.")
    parser.add_argument(
        "--path",
        type=_paths,
        default=["full"],
        help=f"comma list of {', '.join(PATHS)}, or all (default full)",
    )
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--step",
        metavar="CHANGE",
        help="with --out: also add these figures to the file's list of steps, as what CHANGE made them",
    )
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        metavar="N",
        help=f"first open N idle keep-alive connections on the same loop ({', '.join(IDLE_PATHS)})",
    )
    parser.add_argument("--run", nargs=2, metavar=("PATH", "COUNT"), help="run one loop, without callgrind")
    args = parser.parse_args(argv)
    if args.idle < 0:
        parser.error("--idle must be 0 or more")
    chosen = [args.run[0]] if args.run else args.path
    if args.idle and any(path not in IDLE_PATHS for path in chosen):
        parser.error(f"--idle applies to {', '.join(IDLE_PATHS)} only")
    sys.path.insert(0, str(ROOT))  # this checkout's reactor and loadtests, whoever runs the script
    if args.run:
        path, count = args.run[0], int(args.run[1])
        answered = RUNS[path](count, args.idle) if args.idle else RUNS[path](count)
        print(f"{path}: {answered} of {count} requests answered")
        return 0 if answered == count else 1
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    figures: dict[str, int] = {}
    for path in args.path:
        figures[path] = per_request(collected(path, LOW, args.idle), collected(path, HIGH, args.idle))
        floor = figures.get("floor")
        times = f" ({figures[path] / floor:.2f}x floor)" if floor and path != "floor" else ""
        print(f"{path}: {figures[path]:,} instructions per request{times}", flush=True)
    if "floor" in figures and "full" in figures:
        print(f"full/floor: {figures['full'] / figures['floor']:.2f}")
    if args.out is not None:
        # The steps so far are kept from the file being replaced.
        steps = json.loads(args.out.read_text()).get("steps", []) if args.out.exists() else []
        if args.step:
            steps.append({"change": args.step, "instructions_per_request": figures})
        args.out.write_text(json.dumps(_report(figures, argv, steps, args.idle), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
