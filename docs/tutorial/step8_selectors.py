"""Step 8: one thread, one selectors loop, a state machine per connection.

Fixes step 7: an idle connection is a small object in a table, not a thread
blocked in recv(); one thread waits on every socket at once with
``selectors`` (epoll on Linux) and handles whichever is ready, and every
deadline of step 6 is a timer on one heap. The parsing of step 7 is kept.
Still no limit on the bytes of a head: a client that sends megabytes of
header lines within the head deadline makes the server hold them all.
"""

import enum
import heapq
import itertools
import os
import re
import selectors
import socket
import sys
import time
import urllib.parse

ROOT = os.path.realpath(os.getcwd())
IDLE_TIMEOUT_S = 10.0
HEAD_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 10.0
TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

# Linear-time patterns, as in step 7: each string matches one way only.
NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
VALUE = re.compile(r"(?:[!-~]+(?:[ \t]+[!-~]+)*)?")


class State(enum.Enum):
    IDLE = "idle"  # kept alive, waiting for the first byte of a request
    READING_HEADERS = "reading headers"
    WRITING = "writing"
    CLOSED = "closed"


# Every move a connection may make, and the one that ends it from any state.
MOVES = {
    (State.IDLE, "data"): State.READING_HEADERS,
    (State.READING_HEADERS, "head"): State.WRITING,
    (State.WRITING, "sent, keep-alive"): State.IDLE,
}


class Connection:
    __slots__ = ("sock", "state", "buffer", "searched", "out", "keep_alive", "deadline")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = State.IDLE
        self.buffer = bytearray()  # received, not yet parsed
        self.searched = 0  # where the search for the end of the head resumes
        self.out = b""  # the response not yet sent
        self.keep_alive = True
        self.deadline = 0.0  # of the one timer armed for the current state

    def move(self, event: str) -> None:
        self.state = MOVES[(self.state, event)]  # KeyError: a move the table does not allow


class Server:
    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.timers: list[tuple[float, int, Connection]] = []  # a heap, soonest first
        self.sequence = itertools.count()  # breaks ties between equal deadlines

    def arm(self, conn: Connection, seconds: float) -> None:
        """(Re)arm the connection's one timer; a stale heap entry is skipped when it comes up."""
        conn.deadline = time.monotonic() + seconds
        heapq.heappush(self.timers, (conn.deadline, next(self.sequence), conn))

    def serve_forever(self) -> None:
        while True:
            timeout = max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else None
            for key, mask in self.selector.select(timeout):
                if key.data is None:
                    self.accept()
                elif mask & selectors.EVENT_READ:
                    self.readable(key.data)
                elif mask & selectors.EVENT_WRITE:
                    self.write(key.data)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                deadline, _, conn = heapq.heappop(self.timers)
                if conn.state is not State.CLOSED and conn.deadline == deadline:
                    self.expire(conn)

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            sock.setblocking(False)
            conn = Connection(sock)
            self.selector.register(sock, selectors.EVENT_READ, conn)
            self.arm(conn, IDLE_TIMEOUT_S)

    def readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        if not data:
            self.close(conn)
            return
        conn.buffer += data  # no limit on how many bytes (step 9)
        self.advance(conn)

    def advance(self, conn: Connection) -> None:
        """Answer every whole head in the buffer, one at a time, while responses go out at once."""
        while True:
            if conn.state is State.IDLE and conn.buffer:
                conn.move("data")
                self.arm(conn, HEAD_TIMEOUT_S)
            if conn.state is not State.READING_HEADERS:
                return
            end = conn.buffer.find(b"\r\n\r\n", conn.searched)
            if end < 0:
                conn.searched = max(0, len(conn.buffer) - 3)  # never search the same bytes twice
                return
            head = bytes(conn.buffer[:end])
            del conn.buffer[: end + 4]  # pipelined bytes after it wait their turn
            conn.searched = 0
            conn.move("head")
            conn.out, conn.keep_alive = respond(head)
            self.arm(conn, WRITE_TIMEOUT_S)
            if not self.flush(conn):
                if conn.state is not State.CLOSED:
                    # The socket took part of it: watch for writing only, so that
                    # no further request is read before this response is out.
                    self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
                return

    def write(self, conn: Connection) -> None:
        """The socket is writable again: send more, and go back to reading when done."""
        if self.flush(conn) and conn.state is State.IDLE:
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
            self.advance(conn)  # a pipelined request may already be in the buffer

    def flush(self, conn: Connection) -> bool:
        """Send what the socket takes; True once the response is out (the connection is then
        IDLE, or CLOSED if it was not to be kept alive)."""
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return False
        except ConnectionError:
            self.close(conn)
            return False
        conn.out = conn.out[sent:]
        if conn.out:
            return False  # the rest when the socket is writable again
        if conn.keep_alive:
            conn.move("sent, keep-alive")
            self.arm(conn, IDLE_TIMEOUT_S)
        else:
            self.close(conn)
        return True

    def expire(self, conn: Connection) -> None:
        if conn.state is State.READING_HEADERS:
            try:
                conn.sock.send(TIMEOUT)  # best effort: the socket is non-blocking
            except OSError:
                pass
        self.close(conn)

    def close(self, conn: Connection) -> None:
        self.selector.unregister(conn.sock)
        conn.sock.close()
        conn.state = State.CLOSED  # from any state


def resolve(target: str) -> str | None:
    """The file that ``target`` names inside ROOT, or None."""
    path = urllib.parse.unquote(target.split("?", 1)[0])
    if path == "/":
        path = "/index.html"
    try:
        full = os.path.realpath(os.path.join(ROOT, path.lstrip("/")))
    except ValueError:
        return None
    if os.path.commonpath([ROOT, full]) != ROOT or not os.path.isfile(full):
        return None
    return full


def parse(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, target, headers) of a request head, or None if it is malformed."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or NAME.fullmatch(name) is None or VALUE.fullmatch(value) is None:
            return None
        headers[name.lower()] = value
    if version != "HTTP/1.1":
        headers["connection"] = "close"
    return method, target, headers


def respond(head: bytes) -> tuple[bytes, bool]:
    """The response to one request head, and whether the connection stays open."""
    request = parse(head)
    if request is None or "content-length" in request[2] or "transfer-encoding" in request[2]:
        return BAD, False
    _, target, headers = request
    keep_alive = headers.get("connection", "").lower() != "close"
    path = resolve(target)
    body, status = b"not found\n", "404 Not Found"
    if path is not None:
        try:
            with open(path, "rb") as file:  # reads the whole file: fine for a tutorial
                body, status = file.read(), "200 OK"
        except OSError:
            pass
    connection = "keep-alive" if keep_alive else "close"
    head_out = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    return head_out.encode() + body, keep_alive


def main() -> None:
    server = Server(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.listener.getsockname()[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
