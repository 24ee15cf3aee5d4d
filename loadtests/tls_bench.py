"""TLS: throughput, server CPU per request, and KiB per idle connection, against uvicorn.

    python3 loadtests/tls_bench.py [--duration 10] [--connections 50] [--idle 2000]
                                   [--servers reactor,uvicorn-h11,uvicorn-uvloop] [--out FILE]

For each server, in one run, on a certificate from a test CA made for the run
(:mod:`loadtests.certs`), pinned to CPU 0 with wrk on CPU 1 (as
:mod:`loadtests.bench`):

``keep-alive``
    ``wrk https://...`` with ``--connections`` connections for ``--duration``
    seconds: each connection does one handshake, then requests.
``new-connection``
    the same with ``Connection: close``: every request is a new TCP
    connection and a full TLS handshake (no session resumption: wrk does not).
``idle``
    ``--idle`` connections, each one handshake and one GET, then held idle:
    the server's RSS (``/proc/PID/status``) before and after, per connection.

The server's CPU (``/proc/PID/stat``, user + system) over each wrk run is
divided by the requests wrk counted. reactor runs ``loadtests/hello.py`` with
``--certfile``; uvicorn runs ``loadtests/peers/asgi_hello.py`` with
``--ssl-certfile``, from the peers' virtualenv (``loadtests/.venv-peers``, as
``python -m loadtests.bench`` makes it; a server whose python lacks uvicorn is
skipped, and the report says so). Prints a table; ``--out`` writes JSON, and
``--out docs/tls-bench.json`` is what the ``## TLS`` section of
``docs/benchmarks.md`` is drawn from (:func:`markdown`, called by
:mod:`loadtests.bench.page`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.bench import CLIENT_CPU, HOST, ROOT, SERVER_CPU
from loadtests.bench.measurement import cpu_seconds, rss_kib, wait_listening
from loadtests.bench.wrk import parse_wrk
from loadtests.certs import Certs, make_ca
from loadtests.idle import await_answers

PEERS_PYTHON = ROOT / "loadtests" / ".venv-peers" / "bin" / "python"
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
SOURCES = [f"127.0.0.{i}" for i in range(2, 18)]
SERVERS = ("reactor", "uvicorn-h11", "uvicorn-uvloop")


def command(name: str, certs: Certs) -> list[str] | None:
    """How to start ``name`` with TLS on a free port (None: not installed here)."""
    if name == "reactor":
        return [
            sys.executable, "-m", "reactor", "--app", "loadtests.hello:app", "--host", HOST, "--port", "0",
            "--no-access-log", "--certfile", str(certs.cert), "--keyfile", str(certs.key),
        ]  # fmt: skip
    loop, http = {"uvicorn-h11": ("asyncio", "h11"), "uvicorn-uvloop": ("uvloop", "httptools")}[name]
    modules = "uvicorn" if loop == "asyncio" else "uvicorn, uvloop, httptools"
    if (
        not PEERS_PYTHON.exists()
        or subprocess.run(
            [str(PEERS_PYTHON), "-c", f"import {modules}"], capture_output=True, check=False
        ).returncode
    ):
        return None
    return [
        str(PEERS_PYTHON), "-m", "uvicorn", "loadtests.peers.asgi_hello:app", "--host", HOST, "--port", "0",
        "--loop", loop, "--http", http, "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", "600", "--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.key),
    ]  # fmt: skip


def wrk(port: int, duration_s: int, connections: int, close: bool) -> tuple[Any, str]:
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"https://localhost:{port}/")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout), done.stdout


def open_idle(port: int, n: int, ca: Path, deadline: float) -> list[ssl.SSLSocket]:
    """``n`` TLS connections that each did a handshake and got one answer, now idle."""
    context = ssl.create_default_context(cafile=str(ca))
    socks = []
    for i in range(n):
        if time.monotonic() > deadline:
            raise SystemExit(f"opening TLS connections took too long ({i} of {n})")
        raw = socket.socket()
        raw.bind((SOURCES[i % len(SOURCES)], 0))
        raw.settimeout(10)
        raw.connect((HOST, port))
        sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(GET)
        sock.setblocking(False)
        socks.append(sock)
    await_answers(socks, lambda data: data.endswith(b"Hello, World!"), deadline, "answers")
    return socks


def measure(name: str, certs: Certs, args: argparse.Namespace) -> dict[str, Any]:
    argv = command(name, certs)
    if argv is None:
        return {"skipped": f"no {name} in {PEERS_PYTHON}"}
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = wait_listening(proc.pid, lambda: proc.poll() is not None, 30.0)
        result: dict[str, Any] = {}
        wrk(port, 1, args.connections, close=False)  # warm up
        for workload, close in (("keep-alive", False), ("new-connection", True)):
            if not args.duration:
                break
            before = cpu_seconds(proc.pid)
            run, _ = wrk(port, args.duration, args.connections, close)
            cpu = cpu_seconds(proc.pid) - before
            result[workload] = {
                "requests_per_s": run.requests_per_s,
                "requests": run.requests,
                "errors": run.errors,
                "p99_ms": run.latency_ms.get("99"),
                "cpu_us_per_request": cpu / run.requests * 1e6 if run.requests else None,
            }
        if args.idle:
            time.sleep(0.5)
            before_kib = rss_kib(proc.pid)
            socks = open_idle(port, args.idle, certs.ca, time.monotonic() + 120)
            time.sleep(0.5)
            after_kib = rss_kib(proc.pid)
            alive = proc.poll() is None
            for sock in socks:
                sock.close()
            result["idle"] = {
                "connections": args.idle,
                "rss_before_kib": before_kib,
                "rss_after_kib": after_kib,
                "kib_per_connection": (after_kib - before_kib) / args.idle,
                "server_alive": alive,
            }
        return result
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _version(python: Path, module: str) -> str | None:
    done = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def _git() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "?"


def markdown(data: dict[str, Any]) -> list[str]:
    """The ``## TLS`` section of docs/benchmarks.md, from the JSON of ``--out``."""
    results: dict[str, dict[str, Any]] = data["results"]
    load = data.get("load_average", [])
    lines = [
        "## TLS",
        "",
        "`loadtests/tls_bench.py` runs each server with TLS on a certificate for `localhost` from a "
        "test CA made for the run (ECDSA P-256, `loadtests/certs.py`), pinned to CPU 0 with wrk on "
        "CPU 1: `keep-alive` (one handshake per connection, then requests), `new-connection` (the "
        "same with `Connection: close`: a TCP connection and a full TLS handshake per request; wrk "
        "does not resume sessions) and `idle` (connections that each did one handshake and one GET, "
        "then held; the server's RSS before and after). CPU us/req is the server's user + system "
        "time over the wrk run divided by the requests wrk counted. reactor runs `loadtests/hello.py` "
        "with `--certfile`/`--keyfile`, uvicorn `loadtests/peers/asgi_hello.py` with "
        "`--ssl-certfile`/`--ssl-keyfile` and `--timeout-keep-alive 600`.",
        "",
        f"Command: `{' '.join(data['command'])}`, Python {data['python']}, {data['openssl']}, "
        f"uvicorn {data.get('uvicorn') or 'not installed'}, reactor at `{data['git']}`; load average "
        f"{', '.join(f'{x:.1f}' for x in load)} (1, 5, 15 min) when it ended, on {data['cpus']} CPUs.",
        "",
    ]
    if load and load[0] > 1.5:
        lines += [
            "**The machine was busy**: requests/s and latencies are the machine's more than the "
            "servers'; CPU per request and KiB per connection are the figures to read.",
            "",
        ]
    lines += [
        "| server | workload | req/s | p99 ms | CPU us/req | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        for workload in ("keep-alive", "new-connection"):
            if workload in result:
                r = result[workload]
                cpu = f"{r['cpu_us_per_request']:,.0f}" if r["cpu_us_per_request"] else "-"
                lines.append(
                    f"| {name} | {workload} | {r['requests_per_s']:,.0f} | {r['p99_ms'] or 0:.2f} | {cpu} | "
                    f"{r['errors']} |"
                )
    lines += ["", "| server | idle TLS connections | RSS before -> after, KiB | KiB per connection |"]
    lines += ["| --- | ---: | ---: | ---: |"]
    for name, result in results.items():
        if "idle" in result:
            i = result["idle"]
            lines.append(
                f"| {name} | {i['connections']:,} | {i['rss_before_kib']:,} -> {i['rss_after_kib']:,} | "
                f"{i['kib_per_connection']:.2f} |"
            )
    skipped = [f"{name}: {result['skipped']}" for name, result in results.items() if "skipped" in result]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    lines += [
        "",
        "An idle TLS connection holds OpenSSL's state for it (the `SSL` object, its keys and "
        "session, its record buffers); uvicorn on asyncio's "
        "`sslproto` also keeps a memory BIO pair and a read buffer of 256 KiB per connection. That is "
        "why reactor's TLS transport uses `wrap_socket` and no memory BIO "
        "([tls.md](tls.md#why-wrap_socket-not-a-memory-bio)). A new connection's handshake is "
        "OpenSSL's work (ECDHE and an ECDSA signature) for every server alike.",
        "",
    ]
    return lines


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'server':16} {'workload':15} {'req/s':>9} {'p99 ms':>8} {'CPU us/req':>11} {'errors':>7}"]
    for name, result in results.items():
        if "skipped" in result:
            lines.append(f"{name:16} skipped: {result['skipped']}")
            continue
        for workload in ("keep-alive", "new-connection"):
            if workload in result:
                r = result[workload]
                cpu = f"{r['cpu_us_per_request']:.0f}" if r["cpu_us_per_request"] else "-"
                lines.append(
                    f"{name:16} {workload:15} {r['requests_per_s']:>9.0f} {r['p99_ms'] or 0:>8.2f} {cpu:>11} "
                    f"{r['errors']:>7}"
                )
        if "idle" in result:
            i = result["idle"]
            lines.append(
                f"{name:16} {i['connections']} idle TLS connections: RSS {i['rss_before_kib']} -> "
                f"{i['rss_after_kib']} KiB, {i['kib_per_connection']:.2f} KiB each"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="TLS throughput, CPU per request and idle memory, against uvicorn."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (0: idle only)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument(
        "--idle", type=int, default=2000, help="idle TLS connections (0: skip; at most 15000)"
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.idle <= 15000 or not 0 <= args.duration <= 600 or not 1 <= args.connections <= 1000:
        parser.error("--idle 0..15000, --duration 0..600, --connections 1..1000")
    names = [name for name in args.servers.split(",") if name]
    unknown = set(names) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as directory:
        certs = make_ca(Path(directory))
        results = {name: measure(name, certs, args) for name in names}
    print(report(results))
    if args.out is not None:
        data = {
            "command": ["python3", "loadtests/tls_bench.py", *(sys.argv[1:] if argv is None else argv)],
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION,
            "uvicorn": _version(PEERS_PYTHON, "uvicorn") if PEERS_PYTHON.exists() else None,
            "git": _git(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "results": results,
        }
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
