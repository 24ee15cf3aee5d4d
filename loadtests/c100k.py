#!/usr/bin/env python3
"""C100K: 100,000 idle keep-alive connections to ``reactor --workers N`` on one machine, and what they cost.

Usage (from the repository root; root, to raise the hard limit on open files)::

    python3 loadtests/c100k.py                        # 100,000 connections, 2 workers
    python3 loadtests/c100k.py --workers 6            # where the hard limit on open files is 20,000
    python3 loadtests/c100k.py --connections 2000     # the size the test runs

What it does:

1. raises this process's ``RLIMIT_NOFILE`` (soft and hard) to what it needs,
   so the server it starts inherits it: ``ulimit -n`` is often 20,000 and
   each connection is one descriptor at each end (``fs.nr_open`` caps it).
   Raising the hard limit takes ``CAP_SYS_RESOURCE``; without it (a
   container's root may not have it) each process stays at the hard limit,
   so each worker holds at most that many connections (``--max-connections``
   is set just under it: a worker at its limit leaves the shared accept queue
   to the others) and the client is split over as many processes as needed;
2. starts ``python -m reactor --workers W --keepalive-timeout 600
   --max-connections M`` (the limit is per worker: N, or just under the
   open-file limit) on a free loopback port, and measures a fresh request's
   latency (median of ``--samples``, each on a new connection);
3. opens N connections from client processes (one, if the limit allows),
   each with non-blocking ``connect`` and ``epoll``, at most ``--window``
   over all of them still waiting for their answer (so that the accept queue
   never overflows: an overflow drops the handshake's last ACK, the request
   is taken only on a retransmission, and a connection that has sent nothing
   when the header timeout, which runs from the accept, ends is closed),
   from source addresses spread over 127.0.0.2 and up
   (``IP_BIND_ADDRESS_NO_PORT`` leaves the port to ``connect``, which may
   then reuse one for another destination); each sends one ``GET
   /api/time``, reads the answer and stays open and idle;
4. reads, before and after: every worker's RSS (``VmRSS``) and PSS
   (``/proc/PID/smaps_rollup``), the kernel's slab memory (``/proc/meminfo``)
   and TCP socket counts and buffer pages (``/proc/net/sockstat``), and
   conntrack's entry count if the module is loaded;
5. measures the fresh request's latency again with the N connections held;
6. closes them and stops the server (by pid; any worker left, by pid too).

Both ends of every connection are on this machine, so the kernel's figures
cover 2N sockets: per socket is half of per connection. Bounded by
``--deadline``; prints a summary and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.bench.measurement import descendants
from loadtests.idle import GET, fresh_latency_ms
from loadtests.serverproc import ROOT, start_reactor, stop

RESULTS = ROOT / "loadtests" / "results"
# Linux's <linux/in.h>: bind the address now, choose the port at connect().
IP_BIND_ADDRESS_NO_PORT = 24
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SOCKSTAT_TCP = re.compile(
    r"^TCP: inuse (\d+) orphan \d+ tw \d+ alloc (\d+) mem (\d+)$", re.M
)  # fixed shape: linear


def raise_nofile(need: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE to at least ``need`` (root may raise the hard limit up to fs.nr_open)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        target = min(max(need, hard), nr_open)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        except ValueError:
            # Raising the hard limit takes CAP_SYS_RESOURCE, which a
            # container's root may lack: then the soft limit goes up to it.
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(field)


def pss_kib(pid: int) -> int:
    """The proportional set size of ``pid``: shared pages divided among the processes that map them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise ValueError("no Pss")


def meminfo_kib() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Slab", "SUnreclaim", "SReclaimable", "MemAvailable"):
            out[name] = int(rest.split()[0])
    return out


def sockstat() -> dict[str, int]:
    match = SOCKSTAT_TCP.search(Path("/proc/net/sockstat").read_text())
    assert match, "no TCP line in /proc/net/sockstat"
    return {
        "tcp_inuse": int(match.group(1)),
        "tcp_alloc": int(match.group(2)),
        "tcp_mem_pages": int(match.group(3)),
    }


def conntrack_count() -> int | None:
    path = Path("/proc/sys/net/netfilter/nf_conntrack_count")
    return int(path.read_text()) if path.exists() else None


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(workers: list[int], timeout_s: float = 5.0) -> None:
    """Wait until the workers' descriptor counts stop changing: the latency
    probe's last connections close on the server a moment after the client
    closes them, and one counted in the snapshot before the run would make a
    held connection look missing from the one after it."""
    deadline = time.monotonic() + timeout_s
    last = [open_fds(pid) for pid in workers]
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = [open_fds(pid) for pid in workers]
        if now == last:
            return
        last = now


def snapshot(master: int, workers: list[int]) -> dict[str, Any]:
    return {
        "rss_kib": {pid: status_kib(pid, "VmRSS") for pid in workers},
        # The master too: a page a worker copies on write leaves the master's
        # share of it larger, so only the sum over all three is the memory added.
        "pss_kib": {pid: pss_kib(pid) for pid in [master, *workers]},
        "fds": {pid: open_fds(pid) for pid in workers},
        "meminfo_kib": meminfo_kib(),
        "sockstat": sockstat(),
        "conntrack": conntrack_count(),
    }


def open_idle(
    address: tuple[str, int], n: int, sources: list[str], window: int, deadline: float
) -> list[socket.socket]:
    """N connections that each got one answer and now sit idle; ``window`` unanswered at most."""
    poller = select.epoll()
    socks: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}  # fd -> bytes of the answer so far; absent once answered
    connecting: set[int] = set()
    opened = answered = 0
    while answered < n:
        while opened < n and len(pending) < window:
            sock = socket.socket()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((sources[opened % len(sources)], 0))
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, f"connect #{opened}: {os.strerror(code)}")
            fd = sock.fileno()
            socks[fd] = sock
            pending[fd] = b""
            connecting.add(fd)
            poller.register(fd, select.EPOLLOUT)
            opened += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"{answered} of {n} connections answered before the deadline")
        for fd, _events in poller.poll(1.0):
            sock = socks[fd]
            if fd in connecting:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, f"connect: {os.strerror(error)}")
                connecting.discard(fd)
                sock.send(GET)
                poller.modify(fd, select.EPOLLIN)
                continue
            data = sock.recv(4096)
            if not data:
                answer = pending[fd][:60]
                raise ConnectionError(f"closed before its answer, after {answer!r} ({answered} answered)")
            pending[fd] += data
            if b"}" in pending[fd]:
                poller.unregister(fd)
                del pending[fd]
                answered += 1
    poller.close()
    return list(socks.values())


def client(address: tuple[str, int], count: int, sources: list[str], window: int, deadline_s: float) -> int:
    """A client process: open ``count`` idle connections, say so, hold them until stdin closes."""
    raise_nofile(count + 100)
    start = time.monotonic()
    socks = open_idle(address, count, sources, window, deadline=start + deadline_s)
    print(f"ready {len(socks)} {time.monotonic() - start:.2f}", flush=True)
    sys.stdin.read()  # EOF: the parent is done measuring (or gone)
    for sock in socks:
        sock.close()
    return 0


class Clients:
    """``count`` connections from as many client processes as the open-file limit needs."""

    def __init__(
        self,
        address: tuple[str, int],
        count: int,
        per_process: int,
        sources: int,
        window: int,
        deadline_s: float,
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        processes = -(-count // per_process)
        for i in range(processes):
            share = count // processes + (1 if i < count % processes else 0)
            argv = [sys.executable, __file__, "--client-of", f"{address[0]}:{address[1]}", "--connections"]
            argv += [str(share), "--sources", str(sources), "--source-offset", str(i * sources)]
            argv += ["--window", str(max(1, window // processes)), "--deadline", str(int(deadline_s))]
            self.procs.append(
                subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )

    def wait_ready(self) -> list[float]:
        """Seconds each client took to open its share (raises if one failed)."""
        seconds = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"client {proc.pid} failed (status {proc.wait()})")
            seconds.append(float(line.split()[2]))
        return seconds

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def per(delta: float, count: int) -> float:
    return round(delta / count, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Idle keep-alive connections to reactor --workers 2.")
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sources", type=int, default=40, help="source addresses 127.0.0.2 and up")
    parser.add_argument(
        "--window",
        type=int,
        default=1000,
        help="connections waiting for an answer at most, over all clients (under the backlog)",
    )
    parser.add_argument("--samples", type=int, default=200, help="requests per latency median")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds to let the connections settle")
    parser.add_argument("--deadline", type=int, default=900, help="end everything after this many seconds")
    parser.add_argument("--json", type=Path, help="where to write the figures (default loadtests/results/)")
    parser.add_argument("--server-log", type=Path, help="the server's stderr (default: discarded)")
    parser.add_argument("--client-of", metavar="HOST:PORT", help=argparse.SUPPRESS)  # a client process
    parser.add_argument("--source-offset", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.connections
    first = 2 + args.source_offset
    sources = [f"127.0.{i // 256}.{i % 256}" for i in range(first, first + args.sources)]
    if args.client_of:
        host, _, port = args.client_of.rpartition(":")
        return client((host, int(port)), n, sources, args.window, args.deadline)
    limit = raise_nofile(n + 1000)[0]
    # Room in each process for its listeners, pipes, logs and the probes.
    per_process = min(n, limit - 500)
    # Room, too, for the probe's fresh connections while the N are held.
    if per_process * args.workers < n + 100:
        need = -(-(n + 100) // per_process)
        print(
            f"RLIMIT_NOFILE is {limit} and cannot be raised: {n} connections need --workers {need} or more",
            file=sys.stderr,
        )
        return 2

    def stop_now(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"{signal.Signals(signum).name}: cleaning up")

    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGALRM, stop_now)
    signal.alarm(args.deadline)
    server_flags = ["--workers", str(args.workers), "--no-access-log", "--keepalive-timeout", "600"]
    server_flags += ["--max-connections", str(per_process), "--backlog", "4096"]
    result: dict[str, Any] = {
        "connections": n,
        "workers": args.workers,
        "command": f"python -m reactor --port 0 {' '.join(server_flags)}",
        "rlimit_nofile": limit,
        "fs_nr_open": int(Path("/proc/sys/fs/nr_open").read_text()),
        "fs_file_max": int(Path("/proc/sys/fs/file-max").read_text()),
        "ip_local_port_range": Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split(),
        "sources": len(sources),
        "client_processes": -(-n // per_process),
    }
    clients: Clients | None = None
    workers: list[int] = []
    log = args.server_log.open("w") if args.server_log else subprocess.DEVNULL
    # Nothing between starting the server and the try that stops it.
    proc, address = start_reactor(*server_flags, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while len(workers := descendants(proc.pid)) < args.workers:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        fresh_latency_ms(address, 50)  # warm up every worker's code paths and allocator
        result["latency_empty_ms"] = round(fresh_latency_ms(address, args.samples), 3)
        settle(workers)
        before = snapshot(proc.pid, workers)
        start = time.monotonic()
        clients = Clients(address, n, per_process, args.sources, args.window, args.deadline * 0.8)
        clients.wait_ready()
        result["open_seconds"] = round(time.monotonic() - start, 1)
        time.sleep(args.hold)
        after = snapshot(proc.pid, workers)
        result["latency_held_ms"] = round(fresh_latency_ms(address, args.samples), 3)
        result["master_rss_kib"] = status_kib(proc.pid, "VmRSS")
        result["server_pids"] = [proc.pid, *workers]
        result["client_pids"] = [client.pid for client in clients.procs]
        result["before"], result["after"] = before, after
        rss = sum(after["rss_kib"].values()) - sum(before["rss_kib"].values())
        pss = sum(after["pss_kib"].values()) - sum(before["pss_kib"].values())
        slab = after["meminfo_kib"]["Slab"] - before["meminfo_kib"]["Slab"]
        unreclaim = after["meminfo_kib"]["SUnreclaim"] - before["meminfo_kib"]["SUnreclaim"]
        tcp_mem = (after["sockstat"]["tcp_mem_pages"] - before["sockstat"]["tcp_mem_pages"]) * PAGE_KIB
        result["connections_per_worker"] = [after["fds"][pid] - before["fds"][pid] for pid in workers]
        result["server_rss_total_kib"] = sum(after["rss_kib"].values())
        result["server_rss_kib_per_connection"] = per(rss, n)
        result["server_pss_kib_per_connection"] = per(pss, n)
        result["slab_kib_per_connection"] = per(slab, n)
        result["slab_kib_per_socket"] = per(slab, 2 * n)
        result["slab_unreclaimable_kib_per_socket"] = per(unreclaim, 2 * n)
        result["tcp_buffer_kib_per_socket"] = per(tcp_mem, 2 * n)
        result["tcp_sockets_added"] = after["sockstat"]["tcp_inuse"] - before["sockstat"]["tcp_inuse"]
        print(
            f"{n} idle connections over {args.workers} workers {result['connections_per_worker']}, "
            f"opened in {result['open_seconds']} s: server RSS +{rss} KiB "
            f"({result['server_rss_kib_per_connection']} KiB each; PSS "
            f"{result['server_pss_kib_per_connection']} KiB each); kernel slab +{slab} KiB "
            f"({result['slab_kib_per_socket']} KiB per socket, 2 per connection), TCP buffers "
            f"{result['tcp_buffer_kib_per_socket']} KiB per socket; conntrack "
            f"{before['conntrack']} -> {after['conntrack']}; fresh request {result['latency_empty_ms']} ms "
            f"empty, {result['latency_held_ms']} ms held",
            flush=True,
        )
    finally:
        signal.alarm(0)
        if clients is not None:
            clients.close()
        stop(proc, timeout_s=30)
        for pid in workers:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # exited; its new parent has yet to reap it
                os.kill(pid, signal.SIGKILL)  # only if it outlived its master
                result.setdefault("killed_left_over", []).append(pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        if args.server_log:
            log.close()  # type: ignore[union-attr]
    out = args.json or RESULTS / f"c100k-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
