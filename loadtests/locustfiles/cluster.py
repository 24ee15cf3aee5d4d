"""The cluster's load: ``GET /api/time`` through nginx, checked, with a short think time.

Used by ``loadtests/cluster.py`` (locust in distributed mode inside its own
network namespace). Each user has at most one request in flight, so a worker
killed mid-run can fail at most as many requests as there are users: that is
the bound the cluster tool checks. A failure is anything but a 200 with a JSON
body; nginx answers 502 for a request whose upstream connection was reset.
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task

from loadtests.locustfiles.common import expect_status


class ClusterUser(FastHttpUser):
    # A little think time keeps the nine processes of the cluster from
    # starving each other on a small machine; the rate is still a few
    # hundred requests per second.
    wait_time = constant(0.02)

    @task
    def time(self) -> None:
        with self.client.get("/api/time", catch_response=True) as response:
            if expect_status(response, 200) and not response.content.startswith(b'{"unix"'):
                response.failure(f"unexpected body {response.content[:40]!r}")
