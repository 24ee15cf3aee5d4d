"""Shared fixtures: a real server on a free loopback port, and raw clients."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

from loadtests.serverproc import start_reactor
from reactor import App, Config, Request, Response, Server

# Debian's chromium, headless, with nothing that reaches beyond this machine.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_app() -> App:
    """The app most integration tests talk to."""
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    @app.route("/echo", methods=["POST", "PUT"])
    def echo(request: Request) -> Response:
        return Response(request.body, content_type="application/octet-stream")

    @app.route("/items/{id}")
    def item(request: Request) -> dict[str, Any]:
        return {"id": request.params["id"], "query": request.query.to_dict()}

    @app.route("/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("handler exploded")

    @app.route("/split")
    def split(request: Request) -> Response:
        return Response(b"x", headers=[("X-Evil", "a\r\nSet-Cookie: owned=1")])

    @app.route("/big")
    def big(request: Request) -> Response:
        size = int(request.query.get("n", "100000"))
        return Response(b"b" * size, content_type="application/octet-stream")

    return app


class Running:
    """A server running its loop in a thread."""

    def __init__(self, server: Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.host, self.port = server.addresses[0]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the loop thread and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self.server.loop.call_soon_threadsafe(run)
        assert done.wait(5), "the loop did not run the call"
        return box[0]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.loop.call_soon_threadsafe(self.server.close_all)
            self.thread.join(10)
            assert not self.thread.is_alive(), "the server thread did not stop"


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """``serve(app=None, **config)`` starts a server and returns a :class:`Running`."""
    started: list[Running] = []

    def start(app: App | None = None, **config: Any) -> Running:
        server = Server(app if app is not None else make_app(), Config(port=0, **config))
        server.listen()
        thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        running = Running(server, thread)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def server(serve: Callable[..., Running]) -> Running:
    """A server with the default test app and config."""
    return serve()


def connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    return sock


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            return b"".join(chunks)
        chunks.append(data)
    raise AssertionError(f"the server did not close the connection; got {b''.join(chunks)[:200]!r}")


def exchange(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and return all bytes until the server closes."""
    with connect(address, timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout)


class Parsed:
    """One response parsed from raw bytes."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def __repr__(self) -> str:
        return f"<Parsed {self.status} {self.headers} {self.body[:40]!r}>"


def parse_responses(data: bytes, head_only: bool = False) -> list[Parsed]:
    """Split raw bytes into responses framed by Content-Length (all ours are)."""
    responses = []
    while data:
        end = data.index(b"\r\n\r\n")
        lines = data[:end].decode("latin-1").split("\r\n")
        version, status, reason = [*lines[0].split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", lines[0]
        headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        data = data[end + 4 :]
        parsed = Parsed(int(status), reason, headers, b"")  # type: ignore[arg-type]
        length = parsed.header("content-length")
        if length is not None and not head_only and int(status) >= 200:
            parsed.body = data[: int(length)]
            data = data[int(length) :]
        responses.append(parsed)
    return responses


def recv_response(sock: socket.socket, timeout: float = 5.0) -> Parsed:
    """Read exactly one Content-Length framed response from ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a full head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    parsed = parse_responses(head + b"\r\n\r\n", head_only=True)[0]
    length = int(parsed.header("content-length") or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("closed mid-body")
        rest += chunk
    assert len(rest) == length, f"extra bytes after the response: {rest[length:]!r}"
    parsed.body = rest
    return parsed


def get_ok(address: tuple[str, int]) -> None:
    """Assert that a fresh client is answered: the server is alive and well."""
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = recv_response(sock)
    assert response.status == 200
    assert response.body == b"Hello, World!"


class ReactorProcess:
    """``python -m reactor --port 0 ARGS`` running in a child process."""

    def __init__(self, *args: str, stderr: int | IO[str] = subprocess.PIPE) -> None:
        self.proc, (self.host, self.port) = start_reactor(*args, stderr=stderr)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def get(self, path: str) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        """Signal it and wait: its exit status and what it wrote to a piped stderr."""
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err or ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def complete_chunks(body: bytes) -> bytes:
    """The payload of the complete chunks at the start of a chunked ``body``."""
    payload, position = b"", 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return payload
        size = int(body[position:line_end], 16)
        start = line_end + 2
        if size == 0 or len(body) < start + size + 2:
            return payload
        payload += body[start : start + size]
        position = start + size + 2
