"""Step 4: only files inside the directory.

Fixes step 3: the path is decoded once, made absolute, resolved (``..`` and
symlinks) and must still lie inside the directory, or the answer is 404.
Still one request per connection: every request pays a new TCP handshake,
and a client that sends a second request on the same connection gets nothing.
"""

import os
import socket
import sys
import threading
import urllib.parse

ROOT = os.path.realpath(os.getcwd())


def resolve(target: str) -> str | None:
    """The file that ``target`` names inside ROOT, or None."""
    path = urllib.parse.unquote(target.split("?", 1)[0])  # decoded once: %2e%2e is ".."
    if path == "/":
        path = "/index.html"
    try:
        full = os.path.realpath(os.path.join(ROOT, path.lstrip("/")))
    except ValueError:  # a NUL byte
        return None
    if os.path.commonpath([ROOT, full]) != ROOT or not os.path.isfile(full):
        return None
    return full


def respond(client: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        data = client.recv(4096)
        if not data:
            return
        head += data
    try:
        _, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    except ValueError:
        client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    path = resolve(target)
    body, status = b"not found\n", "404 Not Found"
    if path is not None:
        try:
            with open(path, "rb") as file:
                body, status = file.read(), "200 OK"
        except OSError:
            pass
    head_out = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    client.sendall(head_out.encode() + body)


def handle(client: socket.socket) -> None:
    with client:
        respond(client)  # one request, then close


def main() -> None:
    server = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
