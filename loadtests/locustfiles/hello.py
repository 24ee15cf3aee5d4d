"""The hot path: ``GET /`` on kept-alive connections, with no think time.

Each user sends its next request as soon as the last is answered, so the
request rate is what the server (or the generator) can sustain. Every answer
is checked: 200 and ``Hello, World!``. App: ``loadtests.hello:app``.
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task

from loadtests.locustfiles import shapes
from loadtests.locustfiles.common import expect_status

HELLO = b"Hello, World!"


class HelloUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def hello(self) -> None:
        with self.client.get("/", catch_response=True) as response:
            if expect_status(response, 200) and response.content != HELLO:
                response.failure(f"unexpected body {response.content[:40]!r}")


# The load shape $LOADTEST_SHAPE names, or None for a constant load.
Shape = shapes.selected()
