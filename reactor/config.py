"""Every limit and timeout of the server, in one object, with units in the names.

Each default has its reason beside it; ``docs/limits.md`` compares them with
nginx, uvicorn, waitress and gunicorn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .log import compile_format

__all__ = ["Config"]


@dataclass(frozen=True, slots=True)
class Config:
    """Server settings. Frozen: build a new one with :func:`dataclasses.replace`."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Length of the kernel's accept queue (listen(2) backlog).
    backlog: int = 1024
    #: Largest single recv(); 64 KiB, as tornado reads.
    recv_bytes: int = 65536

    # -- request limits (the parser enforces them across partial reads) -----
    #: Request line; over it: 414. nginx allows 8 KiB per header buffer.
    max_request_line_bytes: int = 8192
    #: One header line; over it: 431. gunicorn allows 8190.
    max_header_line_bytes: int = 8192
    #: The whole head; over it: 431. nginx: 4 buffers of 8 KiB.
    max_head_bytes: int = 32768
    #: Header fields in one request; over it: 431. gunicorn allows 100.
    max_header_count: int = 100
    #: Request body; over it: 413. nginx's client_max_body_size is 1 MiB.
    max_body_bytes: int = 1048576

    # -- timeouts: each a timer armed on entering its state -----------------
    #: From the first byte of a request (or accept) to the end of its head;
    #: not refreshed by each byte, so a slowloris client is cut at the deadline.
    header_timeout_s: float = 10.0
    #: Longest gap between two reads of a request body.
    body_timeout_s: float = 30.0
    #: From the first byte of a request (or accept) to the end of its body;
    #: never refreshed, so a client that trickles a byte before each gap
    #: timeout is cut here. 300 s as Node.js's requestTimeout: a full
    #: max_body_bytes upload still fits at about 3.5 KB/s (nginx has only
    #: the 60 s gap timers).
    request_timeout_s: float = 300.0
    #: Idle time between requests; above the 60 s idle timeout of common load
    #: balancers, so they never reuse a connection the server just closed.
    keepalive_timeout_s: float = 75.0
    #: Longest time a response write may make no progress.
    write_timeout_s: float = 30.0
    #: After the last response on a closing connection whose client may still
    #: be sending, how long its input is drained so that the client receives
    #: the response, not a reset.
    linger_timeout_s: float = 2.0
    #: How long a graceful shutdown waits for requests in flight.
    shutdown_timeout_s: float = 30.0

    # -- connections and output ------------------------------------------
    #: Open connections at most; at the limit the listener stops accepting.
    max_connections: int = 10000
    #: Output queued above this stops reading the connection's next request
    #: (and pulling a streamed body); asyncio's default is 64 KiB.
    write_high_water_bytes: int = 65536
    #: Output must drain below this before reading resumes.
    write_low_water_bytes: int = 16384
    #: How long accepting pauses after accept() fails with EMFILE or ENFILE.
    accept_pause_s: float = 0.5

    # -- logging and watching -------------------------------------------------
    access_log: bool = True
    #: The access log's line in gunicorn's atoms (see ``docs/logging.md``);
    #: ``None``: the Common Log Format plus the time taken.
    access_log_format: str | None = None
    #: Write each access log record as one JSON object per line.
    access_log_json: bool = False
    #: A handler that runs longer than this is logged with its route: it
    #: blocked every other connection meanwhile (asyncio's debug mode uses 0.1 s).
    watchdog_threshold_s: float = 0.1
    #: How often the loop's lag is sampled.
    lag_probe_interval_s: float = 0.5
    #: Log every connection's state moves and selector events (for learners).
    trace: bool = False

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if (field.name.endswith(("_s", "_bytes", "_count")) or field.name == "max_connections") and (
                not isinstance(value, (int, float)) or value <= 0
            ):
                raise ValueError(f"{field.name} must be positive, not {value!r}")
        if self.access_log_format is not None:  # checked here, so a bad one fails at start
            compile_format(self.access_log_format, self.access_log_json)
        if self.write_low_water_bytes > self.write_high_water_bytes:
            raise ValueError("write_low_water_bytes must not exceed write_high_water_bytes")
