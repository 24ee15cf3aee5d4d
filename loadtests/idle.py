"""What an idle connection costs reactor, and what SSE subscribers cost it.

    python loadtests/idle.py [--connections 15000] [--sse 10000] [--sse-seconds 10]

Starts the demo server (``python -m reactor``) on a free loopback port, then:

1. measures a fresh request's latency on the empty server (median of many
   requests, each on a new connection);
2. opens N connections, from several source addresses in 127.0.0.0/8 so that
   the client's search for a free port does not distort the figures; each
   sends one GET, reads the answer, and stays open and idle;
3. reads the server's RSS from ``/proc/PID/status`` before and after, and
   reports KiB per idle connection;
4. measures the fresh request's latency again, with N connections idle;
5. closes them, then holds ``--sse`` subscribers of ``/events/clock`` (one
   event a second to every subscriber, from one timer) for ``--sse-seconds``,
   checks that every subscriber got every event, and reports the server's CPU
   (from ``/proc/PID/stat``) and memory.

Every count and duration is bounded; traffic goes to 127.0.0.0/8 only; the
server it started is stopped by its PID. Prints a summary and writes JSON under
loadtests/results/.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.bench.measurement import cpu_seconds, rss_kib
from loadtests.serverproc import ROOT, start_reactor, stop

RESULTS = ROOT / "loadtests" / "results"
GET = b"GET /api/time HTTP/1.1\r\nHost: idle\r\n\r\n"
SOURCES = [f"127.0.0.{i}" for i in range(2, 18)]


def fresh_latency_ms(address: tuple[str, int], count: int) -> float:
    """Median time of a GET on a new connection, connect to last byte."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(GET)
            data = b""
            while b"}" not in data:
                chunk = sock.recv(4096)
                assert chunk, "closed early"
                data += chunk
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def open_idle(address: tuple[str, int], n: int, deadline: float) -> list[socket.socket]:
    """N connections that each got one answer and now sit idle."""
    socks = []
    for i in range(n):
        if time.monotonic() > deadline:
            raise SystemExit(f"opening connections took too long ({i} of {n})")
        sock = socket.socket()
        sock.bind((SOURCES[i % len(SOURCES)], 0))
        sock.connect(address)
        sock.sendall(GET)
        sock.setblocking(False)
        socks.append(sock)
    await_answers(socks, lambda data: b"}" in data, deadline, "answers")
    return socks


def await_answers(
    socks: Sequence[socket.socket], answered: Callable[[bytes], bool], deadline: float, what: str
) -> None:
    """Read each of ``socks`` (non-blocking) until what it has received so far
    is ``answered``, all at once on one selector; SystemExit past ``deadline``
    (``what`` names what never came). A TLS socket that has only part of a
    record is read again when more comes."""
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        pending[sock] = b""
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} {what} never came")
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = pending[sock] + sock.recv(4096)
            except ssl.SSLWantReadError:
                continue
            if answered(data):
                selector.unregister(sock)
                del pending[sock]
            else:
                pending[sock] = data
    selector.close()


def hold_sse(address: tuple[str, int], n: int, seconds: float, pid: int) -> dict[str, float]:
    """N clock subscribers for ``seconds``; checks that all got every event."""
    socks = open_streams(address, n)
    selector = selectors.DefaultSelector()
    events = dict.fromkeys(socks, 0)
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    # Events that reached the first subscribers while the rest were still
    # connecting are not part of the measured window: read them away.
    while ready := selector.select(0.2):
        for key, _ in ready:
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            sock.recv(65536)
    rss_before = rss_kib(pid)
    cpu_before = cpu_seconds(pid)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for key, _ in selector.select(0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            events[sock] += sock.recv(65536).count(b"event: time\n")
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - cpu_before
    rss_after = rss_kib(pid)
    counts = list(events.values())
    selector.close()
    for sock in socks:
        sock.close()
    return {
        "subscribers": n,
        "seconds": round(elapsed, 1),
        "events_min": min(counts),
        "events_max": max(counts),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "server_cpu_us_per_event": round(1e6 * cpu / max(1, sum(counts)), 2),
        "server_rss_mib": round(rss_after / 1024, 1),
        "rss_growth_kib_per_subscriber": round((rss_after - rss_before) / n, 3),
    }


def open_streams(address: tuple[str, int], n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        sock = socket.socket()
        sock.bind((SOURCES[i % len(SOURCES)], 0))
        sock.connect(address)
        sock.sendall(b"GET /events/clock HTTP/1.1\r\nHost: idle\r\n\r\n")
        sock.setblocking(False)
        socks.append(sock)
    return socks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="KiB per idle connection, and the cost of SSE subscribers.")
    parser.add_argument("--connections", type=int, default=15000, help="idle connections (at most 18000)")
    parser.add_argument("--sse", type=int, default=10000, help="SSE subscribers (0: skip; at most 18000)")
    parser.add_argument("--sse-seconds", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=300, help="requests per latency median")
    args = parser.parse_args(argv)
    n = max(1, min(args.connections, 18000))
    sse = max(0, min(args.sse, 18000))
    limits = ["--max-connections", str(max(n, sse) + 100), "--keepalive-timeout", "600"]
    proc, address = start_reactor("--no-access-log", *limits)
    result: dict[str, object] = {"connections": n}
    try:
        fresh_latency_ms(address, 50)  # warm up the code paths and the allocator
        result["latency_empty_ms"] = round(fresh_latency_ms(address, args.samples), 3)
        rss_before = rss_kib(proc.pid)
        start = time.monotonic()
        socks = open_idle(address, n, deadline=start + 120)
        result["open_seconds"] = round(time.monotonic() - start, 2)
        time.sleep(1.0)  # let every connection settle into IDLE
        rss_after = rss_kib(proc.pid)
        result["rss_before_kib"] = rss_before
        result["rss_after_kib"] = rss_after
        result["kib_per_idle_connection"] = round((rss_after - rss_before) / n, 3)
        result["latency_loaded_ms"] = round(fresh_latency_ms(address, args.samples), 3)
        result["latency_ratio"] = round(
            float(result["latency_loaded_ms"]) / float(result["latency_empty_ms"]),  # type: ignore[arg-type]
            2,
        )
        print(
            f"{n} idle connections: RSS {rss_before} -> {rss_after} KiB, "
            f"{result['kib_per_idle_connection']} KiB each; fresh request "
            f"{result['latency_empty_ms']} ms empty, {result['latency_loaded_ms']} ms loaded "
            f"(x{result['latency_ratio']})",
            flush=True,
        )
        for sock in socks:
            sock.close()
        if sse:
            time.sleep(1.0)
            result["sse"] = sse_result = hold_sse(address, sse, args.sse_seconds, proc.pid)
            print(
                f"{sse} SSE subscribers for {sse_result['seconds']} s: events per subscriber "
                f"{sse_result['events_min']}..{sse_result['events_max']}, server CPU "
                f"{sse_result['server_cpu_percent']}% ({sse_result['server_cpu_us_per_event']} us per event "
                f"delivered), RSS {sse_result['server_rss_mib']} MiB",
                flush=True,
            )
    finally:
        stop(proc)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"idle-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
