"""Every limit and timeout of the server, in one object, with units in the names.

Each default has its reason beside it; ``docs/limits.md`` compares them with
nginx, uvicorn, waitress and gunicorn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .log import compile_format
from .proxy import trusted

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

    # -- compression (reactor/compress.py, docs/compression.md) -------------
    #: gzip handlers' text responses for clients that accept it, and send a
    #: static file's precompressed ``name.gz`` instead of it.
    gzip: bool = True
    #: zlib's level, 1 to 9. 1, as nginx: on the demo site's files level 6
    #: saves under 3% more bytes than level 1 (see docs/compression.md).
    gzip_level: int = 1
    #: Bodies shorter than this are sent as they are: a response of about a
    #: kilobyte fits one TCP segment either way, so gzip saves no packet.
    gzip_min_bytes: int = 1024

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
    #: ``redis://HOST:PORT``: broadcasts that apps link to a channel go
    #: through Redis pub/sub to every process (see docs/broker.md); None: none.
    broker: str | None = None

    # -- processes and sockets (see docs/scaling.md and docs/deployment.md) ----
    #: Worker processes under a master (reactor/master.py); 0: one process, no master.
    workers: int = 0
    #: A worker that has sent this many responses is replaced; 0: never.
    #: gunicorn's max_requests; a slow leak in an app then cannot grow forever.
    max_requests: int = 0
    #: Each worker's limit is max_requests plus a random 0 to this, so that
    #: workers started together are not all replaced at the same moment.
    max_requests_jitter: int = 0
    #: A new worker that is not accepting this long after its fork is killed
    #: (and replaced with backoff): a reload never waits forever.
    worker_boot_timeout_s: float = 30.0
    #: Listen on this Unix socket path instead of host:port.
    uds: str | None = None
    #: Permission bits of the ``uds`` socket file: who may connect.
    uds_mode: int = 0o660
    #: Inherited listening sockets, by descriptor number, instead of host:port.
    fds: tuple[int, ...] = ()

    # -- behind a proxy (reactor/proxy.py, docs/deployment.md) ---------------
    #: Peers whose X-Forwarded-*/Forwarded headers (and PROXY headers) are
    #: believed: addresses and CIDR networks, comma-separated; ``*`` trusts
    #: every peer, ``unix`` Unix-socket peers. The default trusts a proxy on
    #: the same machine only, as uvicorn's and gunicorn's do.
    forwarded_allow_ips: str = "127.0.0.1"
    #: Read HAProxy's PROXY protocol (v1 or v2) header before the first
    #: request of each connection; a peer outside forwarded_allow_ips is closed.
    proxy_protocol: bool = False

    # -- TLS (reactor/tls.py, docs/tls.md) ------------------------------------
    #: The certificate chain (PEM) to serve TLS with; None: plain HTTP.
    certfile: str | None = None
    #: Its private key (PEM); None: the key is in ``certfile``.
    keyfile: str | None = None
    #: The password of an encrypted ``keyfile``.
    keyfile_password: str | None = None
    #: CA certificates (PEM) that client certificates are checked against;
    #: given, a client must present one (see ``cert_reqs``).
    ca_certs: str | None = None
    #: 0, 1, 2 as ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED; None:
    #: CERT_REQUIRED with ``ca_certs``, else CERT_NONE.
    cert_reqs: int | None = None
    #: OpenSSL cipher list for TLS 1.2 (TLS 1.3's suites are OpenSSL's own);
    #: None: Python's default, which excludes the weak ones.
    ssl_ciphers: str | None = None
    #: From accept to the end of the TLS handshake; a client that connects and
    #: says nothing is cut here. 10 s, as the header deadline that follows it
    #: (nginx's ssl_handshake_timeout is 60 s; uvicorn has none).
    handshake_timeout_s: float = 10.0
    # -- WebSockets (reactor/websocket/, docs/websockets.md) -----------------
    #: The largest message a client may send (the frames of a fragmented one
    #: together); over it: Close 1009. 1 MiB, as the ``websockets`` library.
    ws_max_message_bytes: int = 1048576
    #: A WebSocket not heard from this long is pinged (one shared timer for
    #: every socket); 20 s, as the ``websockets`` library, below the 60 s
    #: idle timeout of common load balancers.
    ws_ping_interval_s: float = 20.0
    #: A ping not answered within this cuts the connection.
    ws_ping_timeout_s: float = 20.0
    #: After the server sends a Close, how long it waits for the client's.
    ws_close_timeout_s: float = 10.0
    #: Allowed ``Origin`` values of WebSocket handshakes, comma-separated
    #: (``https://example.com``); others get 403. None: any origin.
    ws_origins: str | None = None
    # -- the thread pool (reactor/pool.py, docs/wsgi.md) ------------------------
    #: Threads for blocking handlers and WSGI apps. 4, waitress's default: under
    #: one GIL more threads add no CPU, only overlap for handlers that wait.
    threads: int = 4
    #: Requests that may wait for a thread; past it: 503 with Retry-After.
    #: As many as the listen backlog, so a burst the kernel would have queued
    #: is queued here too, and no more.
    thread_queue_count: int = 1024
    #: A handler running in the pool longer than this is logged (once): it
    #: holds a thread, which is never killed.
    thread_stuck_s: float = 30.0
    #: The URL prefix the application is mounted under behind a proxy: WSGI's
    #: SCRIPT_NAME (PATH_INFO is the rest). ``""``: at the root.
    root_path: str = ""

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
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a whole number, 1 or more, not {self.threads!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(f"root_path must start with '/' and not end with one, not {self.root_path!r}")
        for name in ("workers", "max_requests", "max_requests_jitter"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more, not {getattr(self, name)!r}")
        if (self.max_requests or self.max_requests_jitter) and not self.workers:
            raise ValueError("max_requests needs workers: a master replaces a worker that stops")
        if self.max_requests_jitter and not self.max_requests:
            raise ValueError("max_requests_jitter needs max_requests")
        trusted(self.forwarded_allow_ips)  # ValueError for an entry that is no address
        if not 0 <= self.uds_mode <= 0o777:
            raise ValueError(f"uds_mode must be permission bits, 0 to 0o777, not {oct(self.uds_mode)}")
        if not (isinstance(self.gzip_level, int) and 1 <= self.gzip_level <= 9):
            raise ValueError(f"gzip_level must be 1 to 9, not {self.gzip_level!r}")
        if self.access_log_format is not None:  # checked here, so a bad one fails at start
            compile_format(self.access_log_format, self.access_log_json)
        for name in ("keyfile", "keyfile_password", "ca_certs", "cert_reqs", "ssl_ciphers"):
            if getattr(self, name) is not None and self.certfile is None:
                raise ValueError(f"{name} needs certfile: it is a TLS setting")
        if self.cert_reqs is not None and self.cert_reqs not in (0, 1, 2):
            raise ValueError(
                f"cert_reqs must be 0 (none), 1 (optional) or 2 (required), not {self.cert_reqs!r}"
            )
        if self.certfile is not None and self.proxy_protocol:
            raise ValueError("proxy_protocol with certfile: a PROXY header before TLS is not supported")
        if self.write_low_water_bytes > self.write_high_water_bytes:
            raise ValueError("write_low_water_bytes must not exceed write_high_water_bytes")
