"""Step 7: header lines parsed in linear time.

Fixes step 6: each header line is split at its first colon, the blanks around
the value are stripped, and the name and the value are each checked by a
pattern that can match a string one way only. Still a thread per connection:
ten thousand idle keep-alive clients are ten thousand threads.
"""

import os
import re
import socket
import sys
import threading
import time
import urllib.parse

ROOT = os.path.realpath(os.getcwd())

# Short, so that you can watch them expire; reactor's defaults are in docs/limits.md.
IDLE_TIMEOUT_S = 10.0  # between requests on a kept-alive connection
HEAD_TIMEOUT_S = 2.0  # from the first byte of a request head to its end
WRITE_TIMEOUT_S = 10.0  # for the client to take a response
TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

# A field name: one or more token characters (RFC 9110, 5.1). One character
# class repeated: a string matches one way only, so this runs in linear time.
NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A field value with its outer blanks stripped: words of visible characters
# separated by runs of blanks. A word ends only where a blank starts, and the
# two classes share no character, so a string matches one way only: linear.
VALUE = re.compile(r"(?:[!-~]+(?:[ \t]+[!-~]+)*)?")


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
        try:
            while True:
                head = read_head(client, buffer)
                if head is None:
                    return
                head, _, buffer = head.partition(b"\r\n\r\n")
                client.settimeout(WRITE_TIMEOUT_S)
                if not respond(client, head):
                    return
        except OSError:  # TimeoutError while writing, or the client reset
            return


def read_head(client: socket.socket, buffer: bytes) -> bytes | None:
    """``buffer`` plus what arrives until it holds a whole head, or None (closed, timed out)."""
    deadline = None  # set when the head's first byte is in
    while b"\r\n\r\n" not in buffer:
        if buffer and deadline is None:
            deadline = time.monotonic() + HEAD_TIMEOUT_S
        timeout = IDLE_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        if timeout <= 0:
            client.sendall(TIMEOUT)
            return None
        client.settimeout(timeout)
        try:
            data = client.recv(4096)
        except TimeoutError:
            if buffer:
                client.sendall(TIMEOUT)  # a head begun and not finished
            return None  # an idle keep-alive connection just closes
        if not data:
            return None
        buffer += data
    return buffer


def main() -> None:
    server = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
