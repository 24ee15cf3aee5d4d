"""The server's figures, and their Prometheus text exposition.

Counters are plain integers on one :class:`Metrics` object owned by the
server; a connection adds to them as it works (a few integer additions per
request). Connections by state follow from the moves they make, counted in
:meth:`~reactor.connection.Connection._move`, the one place states change
(one list increment a move), so rendering the figures never walks the
connections. Pending timers are read
from the loop when asked for. The loop's lag is sampled by one timer.

Observers (this exposition, the live view, ``--trace``) never import the
server: it hands them an :class:`Observed`, the few figures they show.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Protocol

from .connection import MOVE_COUNTERS
from .pool import WAIT_BUCKETS_S

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from .connection import Connection
    from .loop import Loop
    from .pool import Pool

__all__ = ["DURATION_BUCKETS_S", "Metrics", "Observed", "prometheus_text"]

#: Upper bounds of the request-duration histogram's buckets, in seconds.
DURATION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Counters of one server."""

    __slots__ = (
        "requests",
        "responses_by_class",
        "bytes_received",
        "bytes_sent",
        "rejected",
        "duration_counts",
        "duration_sum_s",
        "loop_lag_s",
        "loop_lag_max_s",
        "slow_handlers",
        "moves",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.responses_by_class = [0, 0, 0, 0, 0, 0]  # index: status // 100
        self.bytes_received = 0
        self.bytes_sent = 0
        self.rejected = 0  # protocol errors answered with 4xx/5xx
        self.duration_counts = [0] * (len(DURATION_BUCKETS_S) + 1)  # the last: +Inf
        self.duration_sum_s = 0.0
        self.loop_lag_s = 0.0
        self.loop_lag_max_s = 0.0
        self.slow_handlers = 0
        #: How many times each state move was made, by its number (see
        #: :func:`reactor.connection.count_by_state`).
        self.moves = [0] * MOVE_COUNTERS

    def observe(self, status: int, duration_s: float) -> None:
        """One response sent, with its status and how long the request took."""
        self.requests += 1
        self.responses_by_class[min(status // 100, 5)] += 1
        self.duration_counts[bisect.bisect_left(DURATION_BUCKETS_S, duration_s)] += 1
        self.duration_sum_s += duration_s


class Observed(Protocol):
    """What a server hands its observers: its counters, its loop, its connections
    (in the order they were accepted) and how many are in each state."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def loop(self) -> Loop: ...
    @property
    def accepted(self) -> int: ...
    @property
    def connections(self) -> Collection[Connection]: ...
    def count_by_state(self) -> dict[str, int]: ...


def _line(name: str, value: float, labels: str = "") -> str:
    return f"{name}{{{labels}}} {value}\n" if labels else f"{name} {value}\n"


def prometheus_text(server: Observed) -> str:
    """Every figure of ``server`` in the Prometheus text format (version 0.0.4)."""
    metrics = server.metrics
    loop = server.loop
    out: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")

    family("reactor_connections", "gauge", "Open connections by state.")
    for state, count in server.count_by_state().items():
        out.append(_line("reactor_connections", count, f'state="{state.lower()}"'))
    family("reactor_connections_accepted_total", "counter", "Connections accepted.")
    out.append(_line("reactor_connections_accepted_total", server.accepted))
    family("reactor_requests_total", "counter", "Responses sent, by status class.")
    for index, count in enumerate(metrics.responses_by_class):
        if index:
            out.append(_line("reactor_requests_total", count, f'code="{index}xx"'))
    family("reactor_rejected_total", "counter", "Requests refused for breaking the protocol.")
    out.append(_line("reactor_rejected_total", metrics.rejected))
    family("reactor_received_bytes_total", "counter", "Bytes received from clients.")
    out.append(_line("reactor_received_bytes_total", metrics.bytes_received))
    family("reactor_sent_bytes_total", "counter", "Bytes sent to clients.")
    out.append(_line("reactor_sent_bytes_total", metrics.bytes_sent))
    family(
        "reactor_request_duration_seconds", "histogram", "From a request's first byte to its response queued."
    )
    cumulative = 0
    for bound, count in zip(DURATION_BUCKETS_S, metrics.duration_counts[:-1], strict=True):
        cumulative += count
        out.append(_line("reactor_request_duration_seconds_bucket", cumulative, f'le="{bound}"'))
    cumulative += metrics.duration_counts[-1]
    out.append(_line("reactor_request_duration_seconds_bucket", cumulative, 'le="+Inf"'))
    out.append(_line("reactor_request_duration_seconds_sum", metrics.duration_sum_s))
    out.append(_line("reactor_request_duration_seconds_count", cumulative))
    family("reactor_loop_lag_seconds", "gauge", "How late the loop's last lag probe timer fired.")
    out.append(_line("reactor_loop_lag_seconds", metrics.loop_lag_s))
    family("reactor_loop_lag_max_seconds", "gauge", "The largest loop lag seen.")
    out.append(_line("reactor_loop_lag_max_seconds", metrics.loop_lag_max_s))
    family("reactor_loop_iterations_total", "counter", "Passes of the event loop.")
    out.append(_line("reactor_loop_iterations_total", loop.iterations))
    family("reactor_loop_timers", "gauge", "Armed timers on the loop's heap.")
    out.append(_line("reactor_loop_timers", loop.pending_timers()))
    family(
        "reactor_slow_handlers_total",
        "counter",
        "Handlers that blocked the loop past the watchdog threshold.",
    )
    out.append(_line("reactor_slow_handlers_total", metrics.slow_handlers))
    pool = getattr(server, "pool", None)
    if pool is not None:
        _pool_text(pool, family, out)
    return "".join(out)


def _pool_text(pool: Pool, family: Callable[[str, str, str], None], out: list[str]) -> None:
    """The thread pool's figures (see reactor/pool.py)."""
    family("reactor_pool_threads", "gauge", "Threads the pool may run.")
    out.append(_line("reactor_pool_threads", pool.threads))
    family("reactor_pool_busy", "gauge", "Handlers running in the pool now.")
    out.append(_line("reactor_pool_busy", pool.busy))
    family("reactor_pool_queued", "gauge", "Requests waiting for a pool thread.")
    out.append(_line("reactor_pool_queued", pool.queued))
    family("reactor_pool_completed_total", "counter", "Handlers the pool has run to the end.")
    out.append(_line("reactor_pool_completed_total", pool.completed))
    family("reactor_pool_rejected_total", "counter", "Requests answered 503: the pool's queue was full.")
    out.append(_line("reactor_pool_rejected_total", pool.rejected))
    family("reactor_pool_stuck_total", "counter", "Handlers logged for running past thread_stuck_s.")
    out.append(_line("reactor_pool_stuck_total", pool.stuck))
    family("reactor_pool_wait_seconds", "histogram", "Time a request waited for a pool thread.")
    cumulative = 0
    counts = list(pool.wait_counts)
    for bound, count in zip(WAIT_BUCKETS_S, counts[:-1], strict=True):
        cumulative += count
        out.append(_line("reactor_pool_wait_seconds_bucket", cumulative, f'le="{bound}"'))
    cumulative += counts[-1]
    out.append(_line("reactor_pool_wait_seconds_bucket", cumulative, 'le="+Inf"'))
    out.append(_line("reactor_pool_wait_seconds_sum", pool.wait_sum_s))
    out.append(_line("reactor_pool_wait_seconds_count", cumulative))
