"""Slow and broken clients against a reactor server, over raw sockets.

    python loadtests/slowclients.py [--clients 50] [--timeout 2] [--quick]

Starts ``python -m reactor --app loadtests.hello:app`` on a free loopback port
with every timeout set to ``--timeout`` seconds (or targets ``--target
127.0.0.1:PORT``, a server you started with matching timeouts), then runs each
scenario in turn, each bounded in clients and seconds:

slowloris       sends a request head one byte at a time (--rate a second), forever
slow-reader     asks for a large response and never reads it
half-open       sends half a head, then shuts its sending side
idle            connects and sends nothing (a browser's preconnect)

For each it reports when the server cut the clients off and whether that
matches the timeout, and whether a normal client, asking every 0.25 s, was
served meanwhile. Exits 1 if any scenario failed. Traffic goes to 127.0.0.1
only; the server it started is stopped by its PID.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.serverproc import start_reactor, stop

GET = b"GET / HTTP/1.1\r\nHost: slowclients\r\n\r\n"


@dataclass
class Outcome:
    name: str
    clients: int
    cut_after_s: list[float] = field(default_factory=list)
    first_bytes: list[bytes] = field(default_factory=list)
    normal_ok: int = 0
    normal_failed: int = 0
    expected_s: float = 0.0
    verdict: str = ""
    ok: bool = False


def normal_request(address: tuple[str, int]) -> bool:
    """One ordinary GET on a new connection: True if answered 200 within 2 s."""
    try:
        with socket.create_connection(address, timeout=2) as sock:
            sock.sendall(GET)
            data = b""
            while b"Hello, World!" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


def watch(
    name: str,
    address: tuple[str, int],
    socks: list[socket.socket],
    limit_s: float,
    tick: Callable[[float], None] | None = None,
    read: bool = True,
) -> Outcome:
    """Wait until the server closes each socket (or ``limit_s``), probing meanwhile."""
    outcome = Outcome(name, len(socks))
    start = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_socks = set(socks)
    next_probe = start
    while open_socks and time.monotonic() - start < limit_s:
        now = time.monotonic()
        if now >= next_probe:
            if normal_request(address):
                outcome.normal_ok += 1
            else:
                outcome.normal_failed += 1
            next_probe = now + 0.25
        if tick is not None:
            tick(now - start)
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if not read:
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data and len(outcome.first_bytes) < len(socks) and sock in open_socks:
                outcome.first_bytes.append(data[:12])
            if not data:
                outcome.cut_after_s.append(time.monotonic() - start)
                selector.unregister(sock)
                open_socks.discard(sock)
    selector.close()
    for sock in socks:
        sock.close()
    return outcome


def judge(outcome: Outcome, expected_s: float, statuses: set[bytes] | None) -> Outcome:
    outcome.expected_s = expected_s
    cut = len(outcome.cut_after_s)
    median = statistics.median(outcome.cut_after_s) if cut else float("nan")
    timely = cut == outcome.clients and expected_s * 0.8 <= median <= expected_s + 1.5
    answered = statuses is None or all(b[:12] in statuses for b in outcome.first_bytes)
    served = outcome.normal_failed == 0 and outcome.normal_ok > 0
    outcome.ok = timely and answered and served
    outcome.verdict = (
        f"{cut}/{outcome.clients} cut after {median:.2f}s median (expected ~{expected_s:.1f}s); "
        f"answers {sorted({b.decode(errors='replace') for b in outcome.first_bytes}) or ['none']}; "
        f"normal client served {outcome.normal_ok}/{outcome.normal_ok + outcome.normal_failed}"
    )
    return outcome


def slowloris(address: tuple[str, int], clients: int, timeout_s: float, rate: float = 20.0) -> Outcome:
    socks = [socket.create_connection(address, timeout=2) for _ in range(clients)]
    head = GET[:-2] + b"X-Padding: " + b"a" * 10_000
    sent = [0] * clients

    def trickle(elapsed: float) -> None:
        # ``rate`` bytes a second per client, the first at once: never a whole head.
        due = 1 + int(elapsed * rate)
        for i, sock in enumerate(socks):
            while sent[i] < due and sent[i] < len(head):
                try:
                    sock.send(head[sent[i] : sent[i] + 1])
                except OSError:
                    break
                sent[i] += 1

    outcome = watch("slowloris", address, socks, timeout_s + 4, tick=trickle)
    return judge(outcome, timeout_s, {b"HTTP/1.1 408"})


def slow_reader(address: tuple[str, int], clients: int, timeout_s: float) -> Outcome:
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(address, timeout=2)
        sock.sendall(b"GET /bytes/33554432 HTTP/1.1\r\nHost: slowclients\r\n\r\n")
        socks.append(sock)
    time.sleep(timeout_s + 1.0)  # never read: the server's writes stall
    # Now read: a server that gave up closed early, so far fewer than 32 MiB arrive.
    outcome = Outcome("slow-reader", clients, expected_s=timeout_s)
    full = 0
    for sock in socks:
        received = 0
        sock.settimeout(5)
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except OSError:
            pass
        full += received >= 32 << 20
        sock.close()
    for _ in range(4):
        if normal_request(address):
            outcome.normal_ok += 1
        else:
            outcome.normal_failed += 1
    outcome.ok = full == 0 and outcome.normal_failed == 0
    outcome.verdict = (
        f"{clients - full}/{clients} responses abandoned by the server after the write timeout "
        f"({timeout_s:.1f}s without progress); normal client served {outcome.normal_ok}/4"
    )
    return outcome


def half_open(address: tuple[str, int], clients: int, timeout_s: float) -> Outcome:
    socks = []
    for i in range(clients):
        sock = socket.create_connection(address, timeout=2)
        # Half of them close their side mid-head, half after a whole request.
        sock.sendall(GET[:20] if i % 2 else GET)
        sock.shutdown(socket.SHUT_WR)
        socks.append(sock)
    outcome = watch("half-open", address, socks, 5)
    # Both kinds are answered at once (400 for the cut head, 200 for the whole request).
    return judge(outcome, 0.0, {b"HTTP/1.1 400", b"HTTP/1.1 200"})


def idle(address: tuple[str, int], clients: int, timeout_s: float) -> Outcome:
    socks = [socket.create_connection(address, timeout=2) for _ in range(clients)]
    outcome = watch("idle", address, socks, timeout_s + 4)
    return judge(outcome, timeout_s, set())  # closed quietly: no bytes at all


SCENARIOS: dict[str, Callable[[tuple[str, int], int, float], Outcome]] = {
    "slowloris": slowloris,
    "slow-reader": slow_reader,
    "half-open": half_open,
    "idle": idle,
}


def start_server(timeout_s: float, log: Path) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    flags = [
        "--header-timeout", str(timeout_s), "--body-timeout", str(timeout_s),
        "--write-timeout", str(timeout_s), "--keepalive-timeout", str(timeout_s * 3),
    ]  # fmt: skip
    return start_reactor("--app", "loadtests.hello:app", "--no-access-log", *flags, stderr=log.open("w"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50, help="clients per scenario (at most 2000)")
    parser.add_argument("--timeout", type=float, default=2.0, help="the server's timeouts, seconds")
    parser.add_argument("--target", help="127.0.0.1:PORT of a running server (default: start one)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="10 clients, 1 s timeouts (a CI smoke)")
    parser.add_argument("--rate", type=float, default=20.0, help="slowloris bytes per second (default 20)")
    args = parser.parse_args(argv)
    scenarios = {**SCENARIOS, "slowloris": partial(slowloris, rate=max(0.1, args.rate))}
    if args.quick:
        args.clients, args.timeout = 10, 1.0
    clients = max(1, min(args.clients, 2000))
    proc = None
    if args.target:
        host, _, port = args.target.rpartition(":")
        if not host.startswith("127."):
            raise SystemExit("--target must be on 127.0.0.0/8")
        address = (host, int(port))
    else:
        log = Path(tempfile.mkdtemp(prefix="slowclients-")) / "server.log"
        proc, address = start_server(args.timeout, log)
        print(f"server on {address[0]}:{address[1]}, its log in {log}", flush=True)
    failed = 0
    try:
        for name in args.scenarios.split(","):
            outcome = scenarios[name](address, clients, args.timeout)
            failed += not outcome.ok
            print(f"{'PASS' if outcome.ok else 'FAIL'} {name:12} {outcome.verdict}", flush=True)
    finally:
        if proc is not None:
            stop(proc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
