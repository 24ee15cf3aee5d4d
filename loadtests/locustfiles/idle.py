"""Many idle keep-alive connections, and a few busy clients beside them.

:class:`IdleUser` (most users) sends ``GET /`` and then waits 5 to 15 s before
the next one, holding its kept-alive connection open meanwhile: the server
holds hundreds of idle connections, each with its keep-alive timer (75 s by
default, longer than any wait here, so none is cut). :class:`BusyUser`
(:data:`BUSY_USERS` users) sends ``GET /`` back to back on its own connection.
Their latency shows what the idle connections cost everyone else: it should
match the ``hello`` scenario's at the same number of busy users. App:
``loadtests.hello:app``.
"""

from __future__ import annotations

from locust import FastHttpUser, between, constant, task

from loadtests.locustfiles import shapes
from loadtests.locustfiles.common import expect_status

HELLO = b"Hello, World!"
BUSY_USERS = 5
IDLE_WAIT_S = (5.0, 15.0)


class _HelloUser(FastHttpUser):
    abstract = True
    label = "/"

    def on_start(self) -> None:
        # Open the connection at once, so that every spawned user holds one.
        self.hello()

    @task
    def hello(self) -> None:
        with self.client.get("/", name=self.label, catch_response=True) as response:
            if expect_status(response, 200) and response.content != HELLO:
                response.failure(f"unexpected body {response.content[:40]!r}")


class IdleUser(_HelloUser):
    label = "/ (idle)"
    wait_time = between(*IDLE_WAIT_S)


class BusyUser(_HelloUser):
    label = "/ (busy)"
    wait_time = constant(0)
    fixed_count = BUSY_USERS


# The load shape $LOADTEST_SHAPE names, or None for a constant load.
Shape = shapes.selected()
