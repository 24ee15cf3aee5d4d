"""The app the worker tests serve: it says which process answered.

At import it appends its process id to the file ``REACTOR_TEST_IMPORTS``
names (when set), so a test can show that only workers import the app.
"""

from __future__ import annotations

import os
import time

from reactor import App, Request, Response

IMPORTS = os.environ.get("REACTOR_TEST_IMPORTS")
if IMPORTS:
    with open(IMPORTS, "a") as log:
        log.write(f"{os.getpid()}\n")

# While the file REACTOR_TEST_HANG names exists, importing hangs: a new
# version of an app that never starts.
HANG = os.environ.get("REACTOR_TEST_HANG")
while HANG and os.path.exists(HANG):
    time.sleep(0.05)

app = App()


@app.route("/")
def index(request: Request) -> Response:
    return Response(b"Hello, World!", content_type="text/plain")


@app.route("/pid")
def pid(request: Request) -> Response:
    return Response(str(os.getpid()).encode(), content_type="text/plain")


@app.route("/client")
def client(request: Request) -> Response:
    host = request.client[0] if request.client else "-"
    return Response(host.encode(), content_type="text/plain")


@app.route("/env/{name}")
def env(request: Request) -> Response:
    return Response(os.environ.get(request.params["name"], "-").encode(), content_type="text/plain")


@app.route("/echo", methods=["POST"])
def echo(request: Request) -> Response:
    return Response(request.body, content_type="application/octet-stream")


@app.route("/exit/{status}")
def exit_now(request: Request) -> Response:
    """End this worker at once with ``status``, as a crash would."""
    os._exit(int(request.params["status"]))
