"""Where an idle connection's RSS goes: the allocator's own counts, before and after.

    python -m loadtests.idle_heap ws|http [--connections 15000]

Starts ``python -m reactor --app loadtests.ws_apps:app`` (ping interval an
hour) under a small wrapper that, on ``SIGUSR1``, writes the process's
``VmRSS``/``RssAnon``, pymalloc's counts (``sys._debugmallocstats()``: arenas,
bytes in allocated and in available blocks) and glibc's (``mallinfo2``: bytes
in use outside pymalloc, heap and mmap) to a JSON file. Opens 100 connections, takes the
first reading, opens ``--connections`` more (``ws``: WebSockets on
``/ws/echo``, as ``loadtests.ws_bench idle``; ``http``: a GET each, answered,
then kept alive and idle) and takes the second. Per connection: the RSS
delta, the growth of pymalloc's allocated blocks (live objects of 512 bytes
or less), of its free blocks (memory freed but kept: fragmentation) and of
glibc's bytes in use (larger allocations, such as the tables of the dicts
that hold every connection). With ``--gc``, each reading follows a
``gc.collect()``.

Loopback only; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.bench.measurement import rss_kib, wait_listening
from loadtests.serverproc import ROOT
from loadtests.ws_bench import HOST, SOURCES, open_websockets


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


def _pymalloc_counts() -> dict[str, int]:
    """pymalloc's summary lines, read from what _debugmallocstats() writes to fd 2."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode()
    counts = {}
    for key in ("arenas allocated current", "bytes in allocated blocks", "bytes in available blocks"):
        # A fixed label, then spaces, "=", spaces and digits with commas: one way to match.
        match = re.search(re.escape(key) + r"\s+=\s+([\d,]+)", text)
        counts[key] = int(match.group(1).replace(",", "")) if match else -1
    return counts


def _serve(out: str, collect: bool, argv: list[str]) -> None:
    """Run reactor's CLI in this process, writing a reading to ``out``.N at each SIGUSR1."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    readings = [0]

    def reading(signum: int, frame: object) -> None:
        if collect:
            gc.collect()
        status = {}
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                status[name] = int(value.split()[0])
        info = libc.mallinfo2()
        readings[0] += 1
        data = {**status, **_pymalloc_counts(), "malloc in use": info.uordblks + info.hblkhd}
        Path(f"{out}.{readings[0]}").write_text(json.dumps(data))

    signal.signal(signal.SIGUSR1, reading)
    sys.argv = ["reactor", *argv]
    runpy.run_module("reactor", run_name="__main__", alter_sys=True)


def _http_idle(address: tuple[str, int], n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        sock = socket.socket()
        sock.bind((SOURCES[i % len(SOURCES)], 0))
        sock.connect(address)
        sock.settimeout(30)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        data = b""
        while not data.endswith(b"ws_apps"):
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("the server closed a connection")
            data += chunk
        socks.append(sock)
    return socks


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2], sys.argv[3] == "gc", sys.argv[4:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["ws", "http"])
    parser.add_argument("--connections", type=int, default=15000)
    parser.add_argument("--gc", action="store_true", help="gc.collect() before each reading")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/reading"
        argv = [sys.executable, "-m", "loadtests.idle_heap", "--serve", out, "gc" if args.gc else "-"]
        argv += ["--app", "loadtests.ws_apps:app", "--host", HOST, "--port", "0", "--no-access-log"]
        argv += ["--max-connections", "19000", "--ws-ping-interval", "3600"]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            address = (HOST, wait_listening(proc.pid, lambda: proc.poll() is not None, 30))

            def open_some(n: int) -> list[socket.socket]:
                if args.kind == "ws":
                    return open_websockets(address, "/ws/echo", n, time.monotonic() + 300)
                return _http_idle(address, n)

            def take(number: int) -> dict[str, Any]:
                os.kill(proc.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 10
                while not Path(f"{out}.{number}").exists():
                    if time.monotonic() > deadline:
                        raise SystemExit("the server wrote no reading")
                    time.sleep(0.05)
                time.sleep(0.05)
                return dict(json.loads(Path(f"{out}.{number}").read_text()))

            warm = open_some(100)
            time.sleep(0.5)
            before = take(1)
            socks = open_some(args.connections)
            time.sleep(1.0)
            after = take(2)
            rss_after = rss_kib(proc.pid)
            for sock in socks + warm:
                sock.close()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    n = args.connections
    result = {
        "kind": args.kind,
        "connections": n,
        "rss_kib_before": before["VmRSS"],
        "rss_kib_after": after["VmRSS"],
        "rss_kib_after_readings": rss_after,
        "pymalloc_arenas": [before["arenas allocated current"], after["arenas allocated current"]],
    }
    for key, name in (
        ("VmRSS", "rss"),
        ("bytes in allocated blocks", "pymalloc_live"),
        ("bytes in available blocks", "pymalloc_free"),
        ("malloc in use", "malloc_live"),
    ):
        scale = 1024 if key == "VmRSS" else 1
        result[f"{name}_bytes_each"] = round((after[key] - before[key]) * scale / n)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
