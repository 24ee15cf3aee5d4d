"""Connection churn: a new TCP connection for every request.

Each request carries ``Connection: close``; the server must answer with
``Connection: close`` and close, and the client then connects afresh for the
next request. This measures accept, connection set-up and tear-down, which
the keep-alive scenarios never exercise. App: ``loadtests.hello:app``.
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task

from loadtests.locustfiles import shapes
from loadtests.locustfiles.common import expect_status

HELLO = b"Hello, World!"


class ChurnUser(FastHttpUser):
    wait_time = constant(0)
    # Sent on every request; geventhttpclient closes its socket after a
    # response that says Connection: close, so each request connects anew.
    default_headers = {"Connection": "close"}

    @task
    def hello(self) -> None:
        with self.client.get("/", name="/ (Connection: close)", catch_response=True) as response:
            if not expect_status(response, 200):
                return
            if response.content != HELLO:
                response.failure(f"unexpected body {response.content[:40]!r}")
            elif (response.headers.get("Connection") or "").lower() != "close":
                response.failure("the server did not answer with Connection: close")


# The load shape $LOADTEST_SHAPE names, or None for a constant load.
Shape = shapes.selected()
