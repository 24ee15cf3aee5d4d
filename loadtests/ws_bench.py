"""WebSocket benchmarks: echo round trips, broadcast delivery, and what idle WebSockets cost.

    python -m loadtests.ws_bench echo [--seconds 10] [--connections 64] [--size 256]
        [--servers reactor websockets aiohttp]
    python -m loadtests.ws_bench broadcast [--subscribers 10000] [--messages 200] [--size 64]
    python -m loadtests.ws_bench idle [--connections 15000]

``echo``: every connection keeps one 256-byte text message in flight (send,
wait for the echo, send again) for ``--seconds``; round trips per second, and
the server's CPU (user + system, from ``/proc/PID/stat``) per round trip, for
reactor (``loadtests/ws_apps.py``), the ``websockets`` library's asyncio server
and aiohttp's (``loadtests/peers/ws_*_echo.py``, from the peers' virtualenv,
``loadtests/.venv-peers``, made as ``loadtests.bench`` makes it). The clients
are raw sockets in two processes (``--client-processes``), each with a share
of the connections and its own selector; no compression is negotiated.

``broadcast``: ``--subscribers`` WebSockets join one ``Broadcast``; ``POST
/publish`` publishes messages in batches; the clients count the bytes until
every message has reached every subscriber. Messages delivered per second
(from the first publish to the last byte received), and server CPU per
delivered message.

``idle``: ``--connections`` WebSockets open and idle on ``--path`` (handshake
done, nothing more; the server's ping interval set to an hour, since these
clients do not answer pings), from 16 source addresses in 127.0.0.0/8; the
server's RSS before and after (KiB per WebSocket), and a fresh request's
latency (median of ``--probes`` GETs on new connections) before and meanwhile.

Only loopback traffic; every server it starts is stopped by its PID. Figures
taken on a shared machine are noisy: CPU per operation is the steadier one.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.bench.measurement import cpu_seconds, rss_kib, wait_listening
from loadtests.bench.servers import DEFAULT_VENV, ServerDef, ensure_venv
from loadtests.idle import await_answers
from loadtests.serverproc import ROOT
from reactor.websocket.frames import Opcode, client_frame

HOST = "127.0.0.1"
SOURCES = [f"127.0.0.{i}" for i in range(2, 18)]
RESULTS = ROOT / "loadtests" / "results"

PEERS = {
    "websockets": ServerDef(
        "websockets",
        "websockets asyncio server, loadtests/peers/ws_websockets_echo.py",
        lambda env: [],
        needs_venv=True,
        requirements=("websockets",),
        modules=("websockets",),
    ),
    "aiohttp": ServerDef(
        "aiohttp",
        "aiohttp WebSocketResponse, loadtests/peers/ws_aiohttp_echo.py",
        lambda env: [],
        needs_venv=True,
        requirements=("aiohttp",),
        modules=("aiohttp",),
    ),
}


# -- servers -------------------------------------------------------------------------


class Server:
    """One server process on a free port."""

    def __init__(self, name: str, argv: list[str], path: str) -> None:
        self.name = name
        self.path = path
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.port = wait_listening(self.proc.pid, lambda: self.proc.poll() is not None, 30)

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start(name: str, peer_python: Path | None, *extra: str) -> Server:
    if name == "reactor":
        argv = [
            sys.executable,
            "-m",
            "reactor",
            "--app",
            "loadtests.ws_apps:app",
            "--host",
            HOST,
            "--port",
            "0",
        ]
        argv += ["--no-access-log", "--max-connections", "19000", *extra]
        return Server(name, argv, "/ws/echo")
    assert peer_python is not None
    module = {"websockets": "ws_websockets_echo", "aiohttp": "ws_aiohttp_echo"}[name]
    return Server(name, [str(peer_python), "-m", f"loadtests.peers.{module}", "--port", "0"], "/ws/echo")


# -- clients ---------------------------------------------------------------------------


def handshake(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def open_websockets(address: tuple[str, int], path: str, n: int, deadline: float) -> list[socket.socket]:
    """``n`` connections past their 101, from several source addresses."""
    socks = []
    for i in range(n):
        if time.monotonic() > deadline:
            raise SystemExit(f"opening WebSockets took too long ({i} of {n})")
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((SOURCES[i % len(SOURCES)], 0))
        sock.connect(address)
        sock.sendall(handshake(path))
        sock.setblocking(False)
        socks.append(sock)

    def switched(data: bytes) -> bool:
        if b"\r\n\r\n" not in data:
            return False
        assert data.startswith(b"HTTP/1.1 101 "), data[:100]
        assert data.endswith(b"\r\n\r\n"), f"frames before any message was sent: {data!r}"
        return True

    await_answers(socks, switched, deadline, "handshakes")
    return socks


def _echo_client(address: tuple[str, int], path: str, n: int, size: int, pipe: Pipe) -> None:
    socks = open_websockets(address, path, n, time.monotonic() + 60)
    message = client_frame(Opcode.TEXT, b"e" * size)
    answer = 2 + (2 if size > 125 else 0) + size  # the server's frame: unmasked
    selector = selectors.DefaultSelector()
    got = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        got[sock] = 0
    pipe.send("ready")
    seconds = pipe.recv()
    for sock in socks:
        sock.send(message)
    trips = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed a connection")
            have = got[sock] + len(data)
            while have >= answer:
                have -= answer
                trips += 1
                sock.send(message)
            got[sock] = have
    pipe.send(trips)
    for sock in socks:
        sock.close()


def _receiver(address: tuple[str, int], path: str, n: int, pipe: Pipe) -> None:
    """Hold ``n`` subscribers; count what they receive until told the total to expect."""
    socks = open_websockets(address, path, n, time.monotonic() + 120)
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    pipe.send("ready")
    expected = None
    received = 0
    last = time.monotonic()
    while expected is None or received < expected:
        if pipe.poll():
            expected = pipe.recv()
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed a subscriber")
            received += len(data)
            last = time.monotonic()
        if expected is not None and time.monotonic() - last > 10:
            break  # what is missing was skipped: reported, not waited for
    pipe.send((received, last))
    for sock in socks:
        sock.close()


def _spawn(target: Callable[..., None], *args: Any) -> tuple[multiprocessing.Process, Pipe]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    return process, ours


def _post(address: tuple[str, int], path: str) -> dict[str, Any]:
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    result: dict[str, Any] = json.loads(data.partition(b"\r\n\r\n")[2])
    return result


def fresh_latency_ms(address: tuple[str, int], count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# -- the measurements --------------------------------------------------------------------


def echo(args: argparse.Namespace) -> dict[str, Any]:
    peers = [name for name in args.servers if name != "reactor"]
    peer_python = None
    failures: dict[str, str] = {}
    if peers:
        peer_python, failures = ensure_venv(args.venv, [PEERS[name] for name in peers], charts=False)
    results: dict[str, Any] = {}
    for name in args.servers:
        if name in failures:
            results[name] = {"skipped": failures[name]}
            continue
        server = start(name, peer_python)
        try:
            share = [args.connections // args.client_processes] * args.client_processes
            share[0] += args.connections - sum(share)
            clients = [_spawn(_echo_client, server.address, server.path, n, args.size) for n in share]
            for _, pipe in clients:
                assert pipe.recv() == "ready"
            cpu_before = server.cpu()
            started = time.monotonic()
            for _, pipe in clients:
                pipe.send(args.seconds)
            trips = sum(pipe.recv() for _, pipe in clients)
            elapsed = time.monotonic() - started
            cpu = server.cpu() - cpu_before
            for process, _ in clients:
                process.join(10)
        finally:
            server.stop()
        results[name] = {
            "round_trips": trips,
            "round_trips_per_s": round(trips / elapsed),
            "server_cpu_s": round(cpu, 3),
            "server_cpu_us_per_round_trip": round(cpu / trips * 1e6, 1) if trips else None,
        }
        print(f"{name:>10}: {results[name]}", flush=True)
    return results


def broadcast(args: argparse.Namespace) -> dict[str, Any]:
    # No pings: opening 10,000 sockets may outlast the interval, and the byte
    # count would then include them (these clients do not answer them either).
    server = start("reactor", None, "--ws-ping-interval", "3600")
    try:
        share = [args.subscribers // args.client_processes] * args.client_processes
        share[0] += args.subscribers - sum(share)
        clients = [_spawn(_receiver, server.address, "/ws/feed", n) for n in share]
        for _, pipe in clients:
            assert pipe.recv() == "ready"
        time.sleep(0.5)
        cpu_before = server.cpu()
        started = time.monotonic()
        delivered = skipped = 0
        batches = max(1, args.messages // args.batch)
        for _ in range(batches):
            answer = _post(server.address, f"/publish?count={args.batch}&size={args.size}")
            delivered += answer["delivered"]
            skipped += answer["skipped"]
        frame = 2 + (2 if args.size > 125 else 0) + args.size
        for (_, pipe), n in zip(clients, share, strict=True):
            pipe.send(n * batches * args.batch * frame)
        answers = [pipe.recv() for _, pipe in clients]
        finished = max(last for _, last in answers)
        received = sum(got for got, _ in answers)
        cpu = server.cpu() - cpu_before
        for process, _ in clients:
            process.join(10)
    finally:
        server.stop()
    elapsed = finished - started
    messages = received // frame
    result = {
        "subscribers": args.subscribers,
        "published": batches * args.batch,
        "delivered": delivered,
        "skipped": skipped,
        "received_messages": messages,
        "messages_delivered_per_s": round(messages / elapsed),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_delivered_message": round(cpu / messages * 1e6, 2) if messages else None,
    }
    print(result, flush=True)
    return result


def idle(args: argparse.Namespace) -> dict[str, Any]:
    # Opening 15,000 takes longer than the default 20 s ping interval on a busy
    # machine; these clients do not answer pings, so the interval is set past the run.
    server = start("reactor", None, "--ws-ping-interval", "3600")
    try:
        warm = open_websockets(server.address, args.path, 100, time.monotonic() + 30)
        latency_before = fresh_latency_ms(server.address, args.probes)
        time.sleep(0.5)
        rss_before = rss_kib(server.proc.pid)
        socks = open_websockets(server.address, args.path, args.connections, time.monotonic() + 300)
        time.sleep(1.0)
        rss_after = rss_kib(server.proc.pid)
        latency_during = fresh_latency_ms(server.address, args.probes)
        for sock in socks + warm:
            sock.close()
    finally:
        server.stop()
    result = {
        "connections": args.connections,
        "path": args.path,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_websocket": round((rss_after - rss_before) / args.connections, 2),
        "fresh_request_ms_before": round(latency_before, 3),
        "fresh_request_ms_with_idle_websockets": round(latency_during, 3),
    }
    print(result, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("echo")
    one.add_argument("--seconds", type=float, default=10.0)
    one.add_argument("--connections", type=int, default=64)
    one.add_argument("--size", type=int, default=256)
    one.add_argument("--servers", nargs="+", default=["reactor", "websockets", "aiohttp"])
    one.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    two = sub.add_parser("broadcast")
    two.add_argument("--subscribers", type=int, default=10_000)
    two.add_argument("--messages", type=int, default=200)
    two.add_argument("--batch", type=int, default=20)
    two.add_argument("--size", type=int, default=64)
    three = sub.add_parser("idle")
    three.add_argument("--connections", type=int, default=15_000)
    three.add_argument("--probes", type=int, default=200)
    three.add_argument(
        "--path", default="/ws/echo", help="/ws/echo, or /ws/feed: each also joins a Broadcast"
    )
    for each in (one, two):
        each.add_argument("--client-processes", type=int, default=2)
    args = parser.parse_args(argv)
    result = {"echo": echo, "broadcast": broadcast, "idle": idle}[args.what](args)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ws-{args.what}.json"
    out.write_text(json.dumps({"argv": sys.argv, "result": result}, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
