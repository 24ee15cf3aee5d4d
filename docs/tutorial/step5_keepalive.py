"""Step 5: keep-alive, so one connection carries many requests.

Fixes step 4: after a response the connection waits for the next request,
unless the client asked to close. To know that, the server now parses the
header lines (``Connection``; a request with a body is refused, since this
server reads none). Still no timeouts: a client that sends its head one byte
at a time, or never finishes it (slowloris), holds its thread forever.
"""

import os
import re
import socket
import sys
import threading
import urllib.parse

ROOT = os.path.realpath(os.getcwd())

# name ":" OWS value OWS. The value is a run of words, each optionally led by
# blanks: (?:[ \t]*[!-~]+)* can split "aaaa" into words in 2**3 ways, and when
# the line does not match, the regex engine tries every one of them (step 7).
HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[ \t]*[!-~]+)*)[ \t]*")


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
        match = HEADER.fullmatch(line)
        if match is None:
            return None
        headers[match.group(1).lower()] = match.group(2)
    if version != "HTTP/1.1":
        headers["connection"] = "close"  # HTTP/1.0 and older: one request
    return method, target, headers


def respond(client: socket.socket, head: bytes) -> bool:
    """Answer one request; returns whether the connection stays open."""
    request = parse(head)
    if request is None or "content-length" in request[2] or "transfer-encoding" in request[2]:
        client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return False
    _, target, headers = request
    keep_alive = headers.get("connection", "").lower() != "close"
    path = resolve(target)
    body, status = b"not found\n", "404 Not Found"
    if path is not None:
        try:
            with open(path, "rb") as file:
                body, status = file.read(), "200 OK"
        except OSError:
            pass
    connection = "keep-alive" if keep_alive else "close"
    head_out = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    client.sendall(head_out.encode() + body)
    return keep_alive


def handle(client: socket.socket) -> None:
    buffer = b""
    with client:
        while True:  # one request after another on this connection
            while b"\r\n\r\n" not in buffer:
                data = client.recv(4096)  # waits as long as the client likes
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            if not respond(client, head):
                return


def main() -> None:
    server = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
