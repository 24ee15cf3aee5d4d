"""Step 1: the ten-line server of the common tutorials. It answers no valid HTTP."""

import socket
import sys

server = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
print(server.getsockname()[1], flush=True)
while True:
    client, _ = server.accept()
    client.recv(1024)
    client.sendall(b"Hello World")  # no status line, no headers: not an HTTP response
    client.close()
