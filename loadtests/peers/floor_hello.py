"""The least Python an HTTP server must run for a request: a bare ``selectors`` loop.

Run: ``python -m loadtests.peers.floor_hello --port 0`` (it prints the port it got).

A yardstick, not a server: it reads what a connection sends, finds the end of
each request head with ``find(b"\\r\\n\\r\\n")`` and sends a fixed answer
(``Hello, World!``), and closes the connection after the answer when the head
asks for ``Connection: close``. No parse, no validation, no limits, no timers,
no body. ``loadtests/floor_bench.py`` runs it beside reactor and uvicorn-uvloop
to tell what any pure-Python server must spend a request; ``--path floor`` of
``loadtests/instructions.py`` counts the same loop's instructions.
"""

from __future__ import annotations

import argparse
import selectors
import socket

HELLO = b"Hello, World!"
_HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: reactor\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\n"
)
KEEP_ALIVE = _HEAD + b"\r\n" + HELLO
CLOSE = _HEAD + b"Connection: close\r\n\r\n" + HELLO


def serve(listener: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}

    def drop(sock: socket.socket) -> None:
        selector.unregister(sock)
        del buffers[sock]
        sock.close()

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffers[sock] = bytearray()
            selector.register(sock, selectors.EVENT_READ)

    def readable(sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            drop(sock)
            return
        buffer = buffers[sock]
        buffer += data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            close = buffer.find(b"\r\nConnection: close", 0, end) >= 0
            del buffer[: end + 4]
            try:
                sock.send(CLOSE if close else KEEP_ALIVE)
            except OSError:
                close = True
            if close:
                drop(sock)
                return

    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                accept()
            else:
                readable(key.fileobj)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(1024)
    print(listener.getsockname()[1], flush=True)
    serve(listener)


if __name__ == "__main__":
    main()
