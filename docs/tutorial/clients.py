"""The misbehaving clients that the tutorial's steps are measured with.

    python3 clients.py get PORT PATH             one request with http.client
    python3 clients.py twice PORT PATH           two requests on one connection
    python3 clients.py idle PORT N [PID]         N connections that send nothing
    python3 clients.py slowloris PORT [LIMIT_S]  a head sent one byte every 0.5 s
    python3 clients.py header PORT N             a header line that a backtracking regex chokes on
    python3 clients.py bighead PORT MIB [PID]    MIB mebibytes of header lines, no end of head

Each prints what it measured; ``PID`` is the server's, to read its threads and
memory from ``/proc``. The tutorial's test (tests/integration/test_tutorial.py)
calls the same functions. Standard library only.
"""

from __future__ import annotations

import http.client
import socket
import sys
import time

HOST = "127.0.0.1"


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET with http.client: (status, body). Raises what http.client raises."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` as it is (no path normalisation) and read until the server closes."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def twice(port: int, path: str) -> list[bytes]:
    """Two requests, one after the other, on one connection: each response's first line
    (b"" if the connection was closed instead)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    lines = []
    with socket.create_connection((HOST, port), timeout=5) as sock:
        for _ in range(2):
            try:
                sock.sendall(request)
                response = _read_response(sock)
            except (BrokenPipeError, ConnectionResetError):
                response = b""
            lines.append(response.split(b"\r\n", 1)[0])
    return lines


def _read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, or b"" if the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        body += chunk
    return head + b"\r\n\r\n" + body


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing."""
    socks = []
    for _ in range(count):
        socks.append(socket.create_connection((HOST, port), timeout=5))
    return socks


def process_status(pid: int) -> dict[str, int]:
    """The server's threads, resident and virtual memory (KiB), from /proc/PID/status."""
    status = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name in ("Threads", "VmRSS", "VmSize"):
                status[name] = int(value.split()[0])
    return status


def slowloris(port: int, limit_s: float = 6.0) -> tuple[float, bytes]:
    """Send a request head one byte every 0.5 s, never ending it; return after how many
    seconds the server answered or closed, and what it sent (``limit_s``: give up)."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.5)
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            try:
                sock.sendall(b"X")
                data = sock.recv(65536)
            except TimeoutError:
                continue  # nothing yet: the server is still waiting for us
            except (BrokenPipeError, ConnectionResetError):
                data = b""
            return time.monotonic() - start, data
    return limit_s, b"(still open)"


def header(port: int, n: int) -> tuple[float, bytes]:
    """A request whose one header line is ``X: `` and ``n`` letters and a control byte:
    (seconds until the answer, its status line)."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * n + b"\x01\r\n\r\n"
    start = time.monotonic()
    response = raw(port, request, timeout=120)
    return time.monotonic() - start, response.split(b"\r\n", 1)[0]


def bighead(port: int, mib: int) -> tuple[int, bytes]:
    """Send ``mib`` MiB of header lines with no end of head: (bytes the server took
    before it answered or closed, what it answered)."""
    line = b"X-Filler: " + b"f" * 53 + b"\r\n"  # 65 bytes
    block = line * (65536 // len(line))
    sent = 0
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        try:
            while sent < mib << 20:
                sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(5.0)  # longer than a head deadline
        return sent, _read_all(sock).split(b"\r\n", 1)[0]


def main(argv: list[str]) -> None:
    command, port, *rest = argv
    if command == "get":
        status, body = get(int(port), rest[0])
        print(status, body)
    elif command == "twice":
        for line in twice(int(port), rest[0]):
            print(line or b"(connection closed)")
    elif command == "idle":
        socks = open_idle(int(port), int(rest[0]))
        time.sleep(1.0)
        print(f"{len(socks)} idle connections open")
        if len(rest) > 1:
            print("server:", process_status(int(rest[1])))
        for sock in socks:
            sock.close()
    elif command == "slowloris":
        seconds, data = slowloris(int(port), float(rest[0]) if rest else 6.0)
        first_line = data.split(b"\r\n", 1)[0] or b"(closed)"
        print(f"after {seconds:.1f} s: {first_line}")
    elif command == "header":
        seconds, line = header(int(port), int(rest[0]))
        print(f"{line} after {seconds:.3f} s")
    elif command == "bighead":
        before = process_status(int(rest[1])) if len(rest) > 1 else None
        sent, line = bighead(int(port), int(rest[0]))
        print(f"sent {sent} bytes; answer: {line or b'(none)'}")
        if before is not None:
            after = process_status(int(rest[1]))
            print(f"server VmRSS before {before['VmRSS']} KiB, after {after['VmRSS']} KiB")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
