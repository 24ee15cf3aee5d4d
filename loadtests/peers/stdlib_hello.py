"""The benchmark app on the standard library's ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive).

Run: ``python -m loadtests.peers.stdlib_hello --port 8000``. One thread per
connection; access logging off.
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HELLO = b"Hello, World!"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    # The head and the body go out in two writes; with Nagle's algorithm on, the
    # second waits for the client's delayed ACK (40 ms), and keep-alive falls to
    # about 25 requests/s per connection. TCP_NODELAY, as any real deployment would.
    disable_nagle_algorithm = True

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            # Say so: http.server closes after the answer but does not tell the
            # client, and wrk then counts each close as a read error.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/":
            self._answer(200, "text/plain", HELLO)
        else:
            self._answer(404, "text/plain", b"404 Not Found\n")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/echo":
            self._answer(200, "application/octet-stream", body)
        else:
            self._answer(404, "text/plain", b"404 Not Found\n")

    def log_message(self, format: str, *args: Any) -> None:  # no access log
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen(2) backlog, as the other servers have


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Server((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
