"""Step 3: a thread per connection.

Fixes step 2: a client that sends nothing holds its own thread only, and the
others are served. Still serves ``open("." + path)``: ``/../../etc/passwd``
is a path outside the directory, and it is served.
"""

import socket
import sys
import threading


def respond(client: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:  # the end of the request head
        data = client.recv(4096)
        if not data:
            return
        head += data
    try:
        _, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    except ValueError:
        client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    if path == "/":
        path = "/index.html"
    try:
        with open("." + path, "rb") as file:  # "/../../etc/passwd" too
            body, status = file.read(), "200 OK"
    except OSError:
        body, status = b"not found\n", "404 Not Found"
    head_out = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    client.sendall(head_out.encode() + body)


def main() -> None:
    server = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


def handle(client: socket.socket) -> None:
    with client:
        respond(client)


if __name__ == "__main__":
    main()
