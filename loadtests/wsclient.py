"""A raw-socket WebSocket client for tests and load tools: bytes on the wire, nothing hidden.

It sends exactly the handshake and frames it is told to (masked, as RFC 6455
requires of a client, with :func:`reactor.websocket.frames.client_frame`) and
reads the server's frames as they are, so that tests can assert on the bytes.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

from reactor.websocket.frames import Opcode, client_frame

__all__ = ["RawWebSocket", "handshake_request", "read_head"]


def handshake_request(path: str, host: str = "127.0.0.1", key: str | None = None, *extra: str) -> bytes:
    """The bytes of an upgrade request (a fresh random key unless ``key``)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """Read up to the end of a response head: (head, bytes that followed it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise EOFError(f"closed before the head ended: {data!r}")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


class RawWebSocket:
    """One client connection: :meth:`open` does the handshake, then frames in and out."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.head = b""

    def open(self, path: str, *extra: str, first: bytes = b"") -> bytes:
        """Send the handshake (and ``first`` in the same send); returns the response head."""
        self.sock.sendall(handshake_request(path, "127.0.0.1", None, *extra) + first)
        self.head, self.buffer = read_head(self.sock)
        return self.head

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> None:
        self.sock.sendall(client_frame(opcode, payload, os.urandom(4), fin=fin, rsv=rsv))

    def send_text(self, text: str) -> None:
        self.send(Opcode.TEXT, text.encode())

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.send(Opcode.CLOSE, struct.pack("!H", code) + reason.encode())

    def recv_frame(self, timeout: float = 5.0) -> tuple[int, bool, bytes]:
        """The next server frame: (opcode, fin, payload). EOFError if the server closed."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the server")
            self.sock.settimeout(left)
            piece = self.sock.recv(65536)
            if not piece:
                raise EOFError("the server closed the connection")
            self.buffer += piece

    def _parse(self) -> tuple[int, bool, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        b0, b1 = data[0], data[1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n = b1 & 0x7F
        at = 2
        if n == 126:
            if len(data) < 4:
                return None
            (n,) = struct.unpack("!H", data[2:4])
            at = 4
        elif n == 127:
            if len(data) < 10:
                return None
            (n,) = struct.unpack("!Q", data[2:10])
            at = 10
        if len(data) < at + n:
            return None
        self.buffer = data[at + n :]
        return b0 & 0x0F, bool(b0 & 0x80), data[at : at + n]

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the TCP connection within ``timeout`` (frames before it dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                piece = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not piece:
                return True
        return False

    def fileno(self) -> int:
        return self.sock.fileno()

    def shut(self) -> None:
        self.sock.close()
