"""What the scenarios share: a status check, and final CSV reports.

Importing this module (every scenario does) registers :func:`write_final_csv`
on locust's ``quitting`` event.
"""

from __future__ import annotations

import csv
from typing import Any

from locust import events, stats
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.runners import WorkerRunner

__all__ = ["expect_status", "write_final_csv"]


def expect_status(response: ResponseContextManager, status: int) -> bool:
    """Whether ``response`` has ``status``; if not, it is marked failed.

    A request that got no response (a refused or reset connection, a timeout)
    keeps locust's own error, which names the cause.
    """
    if response.status_code == status:
        response.success()  # type: ignore[no-untyped-call]
        return True
    if response.status_code:
        response.failure(f"expected {status}, got {response.status_code}")  # type: ignore[no-untyped-call]
    return False


def write_final_csv(environment: Environment, **kwargs: Any) -> None:
    """Rewrite ``--csv``'s ``_stats``, ``_failures`` and ``_exceptions`` files with the final figures.

    locust rewrites them once a second while it runs, and not when it stops, so
    without this the files miss up to the last second of requests (and disagree
    with the summary locust prints). ``_stats_history.csv`` is left as it is.
    """
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return
    writer = stats.StatsCSV(environment, stats.PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", writer.requests_csv),
        ("_failures.csv", writer.failures_csv),
        ("_exceptions.csv", writer.exceptions_csv),
    ):
        with open(f"{prefix}{suffix}", "w", newline="", encoding="utf-8") as file:
            write(csv.writer(file))


events.quitting.add_listener(write_final_csv)  # type: ignore[no-untyped-call]
