"""The server: listening sockets, accept, the connection registry, shutdown.

Listening
    :func:`open_listeners` makes the sockets: TCP on ``host:port``, a Unix
    socket (``uds``), inherited descriptors (``fds``) or systemd's
    (``LISTEN_FDS``). :meth:`Server.listen` opens them itself;
    :meth:`Server.adopt` takes sockets opened elsewhere, as each worker of
    reactor/master.py takes those its master opened before forking.

Accepting
    The listener is watched for ``EVENT_READ``; each wakeup accepts in a loop
    until ``accept()`` would block (bounded per pass, so a connection storm
    cannot starve the connections already open). ``ECONNABORTED`` (the client
    gave up while queued) is skipped. ``EMFILE``/``ENFILE`` (out of file
    descriptors) takes the listener out of the selector for
    ``accept_pause_s`` and is logged once per episode: with level-triggered
    readiness, retrying at once would spin.

Limits
    At ``max_connections`` the listener leaves the selector; it comes back as
    soon as a connection closes. New clients wait in the kernel's backlog.

Graceful shutdown
    The first SIGINT or SIGTERM closes the listeners, closes idle connections,
    and lets requests in flight finish: their responses carry
    ``Connection: close``. When the last connection is gone the loop stops.
    ``shutdown_timeout_s`` bounds the wait; a second signal ends it at once.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import ssl
import stat
import threading
from collections.abc import Callable
from functools import partial
from sys import intern

from . import trace
from .config import Config
from .connection import (
    Application,
    Connection,
    FirstBytes,
    KeepAlive,
    ProxyProtocolReader,
    State,
    count_by_state,
)
from .log import error_log
from .loop import EVENT_READ, Loop, Timer
from .metrics import Metrics
from .pool import Pool
from .proxy import trusted
from .tls import TLSTransport, make_context
from .transport import Lingering, Transport

__all__ = [
    "DRAIN_S",
    "LISTEN_FDS_START",
    "Server",
    "bind_tcp",
    "bind_unix",
    "describe_listener",
    "inherited_socket",
    "open_listeners",
    "systemd_sockets",
]

# Accepts per listener wakeup, at most (tornado accepts up to its backlog).
_ACCEPT_BATCH = 128
_OUT_OF_FDS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_OPEN_STATES = tuple(state for state in State if state is not State.CLOSED)
#: How long :meth:`Server.drain` waits for idle and fresh connections to send a request.
DRAIN_S = 1.0
_DRAIN_POLL_S = 0.01


class Server:
    """Serve ``app`` on the address in ``config``.

    Args:
        app: answers requests (an :class:`~reactor.app.App`).
        config: limits, timeouts and the address to listen on.
        loop: the event loop to run on (a new one by default).
    """

    def __init__(self, app: Application, config: Config | None = None, loop: Loop | None = None) -> None:
        self.app = app
        self.config = config if config is not None else Config()
        self.loop = loop if loop is not None else Loop()
        #: Every open connection, in the order they were accepted (a dict
        #: keeps it: the oldest come first, as the live view lists them).
        self.connections: dict[Connection, None] = {}
        #: The idle ones among them, waiting for their next request under one
        #: shared keep-alive timer (see :class:`~reactor.connection.KeepAlive`).
        self.keepalive = KeepAlive()
        #: The new ones that have sent nothing yet, under one shared header
        #: timer (see :class:`~reactor.connection.FirstBytes`).
        self.first_bytes = FirstBytes()
        #: Counters for /_reactor/metrics and the live view.
        self.metrics = Metrics()
        self._lag_probe: Timer | None = None
        #: Bound addresses, filled by :meth:`listen`.
        self.addresses: list[tuple[str, int]] = []
        self.accepted = 0
        self._listeners: list[socket.socket] = []
        self._listening = False  # whether the listeners are in the selector
        self._accept_paused_until = 0.0
        self._fd_error_logged = False
        self._stopping = False
        self._draining = False  # see drain()
        #: False once shutdown (or a drain) has begun: responses then close
        #: their connection. An attribute, not a property: read for every response.
        self.accepting = True
        self._shutdown_timer: Timer | None = None
        self._lingering = Lingering(self.loop, self.config.linger_timeout_s)
        #: The TLS context when ``config.certfile`` is set (see :meth:`reload_tls`), else None.
        self.tls: ssl.SSLContext | None = None
        if self.config.certfile is not None:
            self.tls = make_context(self.config)
        #: Threads for blocking handlers and WSGI apps (started when first needed).
        self.pool: Pool | None = Pool(
            self.config.threads, self.config.thread_queue_count, self.config.thread_stuck_s, self.loop
        )
        self._shutdown_deadline: float | None = None
        # An app may want the server (for its loop and figures): it says so
        # with an attach(server) method.
        attach = getattr(app, "attach", None)
        if attach is not None:
            attach(self)
        if self.config.trace:
            trace.enable()

    # -- listening -----------------------------------------------------------

    def listen(self) -> list[tuple[str, int]]:
        """Open the listeners ``config`` names (see :func:`open_listeners`); returns the TCP addresses."""
        self.adopt(open_listeners(self.config))
        return self.addresses

    def adopt(self, listeners: list[socket.socket]) -> None:
        """Serve on sockets that are already listening (bound by a master, or inherited)."""
        for sock in listeners:
            sock.setblocking(False)
            self._listeners.append(sock)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                bound = sock.getsockname()
                self.addresses.append((bound[0], bound[1]))

    def _start_accepting(self) -> None:
        if not self._listening and not self._stopping:
            for sock in self._listeners:
                # The family as a plain int: reading sock.family makes an enum member.
                self.loop.register(sock, EVENT_READ, partial(self._accept, sock, int(sock.family)))
            self._listening = True

    def _stop_accepting(self) -> None:
        if self._listening:
            for sock in self._listeners:
                self.loop.unregister(sock)
            self._listening = False

    def _accept(self, listener: socket.socket, family: int, mask: int) -> None:
        loop, config, app = self.loop, self.config, self.app
        connections = self.connections
        for _ in range(_ACCEPT_BATCH):
            if len(connections) >= config.max_connections:
                error_log.debug("at max_connections=%d: not accepting", config.max_connections)
                self._stop_accepting()
                return
            try:
                # socket.accept() less its Python layer, which turns the
                # family and type into enum members for each new socket.
                fd, address = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_FDS:
                    error_log.error("accept() failed: %s", exc)
                    return
                self._pause_accepting(exc)
                return
            self._fd_error_logged = False
            self.accepted += 1
            sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            sock.setblocking(False)
            if family != _AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _client_address(address)
            # Only a trusted proxy may say who the client is: with
            # --proxy-protocol anyone else is closed before a byte is read.
            if config.proxy_protocol and client[0] not in trusted(config.forwarded_allow_ips):
                error_log.warning("PROXY header refused: %s is not in forwarded_allow_ips", client[0])
                sock.close()
                continue
            if self.tls is not None:
                self._accept_tls(sock, client)
                continue
            connection = Connection(client, loop, config, app, self)
            connections[connection] = None
            protocol = ProxyProtocolReader(connection) if config.proxy_protocol else connection
            Transport(sock, loop, config, self, protocol).start()

    def _accept_tls(self, sock: socket.socket, client: tuple[str, int]) -> None:
        """Start the TLS handshake on an accepted socket (see reactor.tls)."""
        assert self.tls is not None
        try:
            wrapped = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:  # the client left already
            error_log.debug("TLS wrap failed for %s: %s", client[0], exc)
            sock.close()
            return
        connection = Connection(client, self.loop, self.config, self.app, self)
        connection.scheme = "https"
        self.connections[connection] = None
        TLSTransport(wrapped, self.loop, self.config, self, connection).start()

    def reload_tls(self) -> None:
        """Load the certificate and key again, for connections accepted from
        now on; open connections keep the context they began with. Raises
        :class:`~reactor.tls.TLSConfigError` (and keeps the old context) if
        the files are bad. SIGHUP calls it (without ``--workers``)."""
        self.tls = make_context(self.config)
        error_log.info("TLS certificate reloaded from %s", self.config.certfile)

    def _on_hup(self, signum: int) -> None:
        try:
            self.reload_tls()
        except ValueError as exc:
            error_log.error("SIGHUP: TLS certificate not reloaded: %s", exc)

    def _pause_accepting(self, exc: OSError) -> None:
        pause_s = self.config.accept_pause_s
        if not self._fd_error_logged:
            error_log.warning(
                "accept() failed: %s; %d connections open; pausing accepting for %.1fs",
                exc.strerror,
                len(self.connections),
                pause_s,
            )
            self._fd_error_logged = True
        self._stop_accepting()
        self.loop.call_later(pause_s, self._resume_after_pause)

    def _resume_after_pause(self) -> None:
        if len(self.connections) < self.config.max_connections:
            self._start_accepting()

    # -- recycling (a worker's --max-requests) ----------------------------

    def stop_after_requests(self, requests: int) -> None:
        """Shut down gracefully once ``requests`` responses have been sent.

        Call it before :meth:`start`. A worker process that a master
        supervises uses it to be replaced after a number of requests.
        """
        self.metrics = _CountingMetrics(requests, partial(self.loop.call_soon, self._recycle))

    def _recycle(self) -> None:
        error_log.info("served %d requests: stopping to be replaced", self.metrics.requests)
        self.drain()

    def drain(self, timeout_s: float = DRAIN_S) -> None:
        """Leave the other processes on a shared socket to serve, losing no request.

        :meth:`shutdown` closes at once a connection that is idle or has not
        sent a byte yet; for a process that stops while others go on
        serving, that loses requests: a client that has just connected has
        sent its request or is about to, and one on an idle keep-alive
        connection may be sending its next. So first: stop accepting (the
        connections waiting in the shared queue go to the others), answer
        every request with ``Connection: close``, and give the connections
        that are idle or waiting for a request head up to ``timeout_s`` to
        send one. Then :meth:`shutdown`.
        """
        if self._draining or self._stopping:
            return
        self._draining = True
        self.accepting = False
        self._stop_accepting()
        for sock in self._listeners:
            sock.close()  # this process's copy: the socket stays open in the others
        self._listeners.clear()
        self._drain_until(self.loop.time() + timeout_s)

    def _drain_until(self, deadline: float) -> None:
        counts = self.count_by_state()
        if counts["IDLE"] + counts["READING_HEADERS"] == 0 or self.loop.time() >= deadline or self._stopping:
            self.shutdown()
        else:
            self.loop.call_later(_DRAIN_POLL_S, self._drain_until, deadline)

    # -- the connection registry --------------------------------------------

    def connection_closed(self, connection: Connection) -> None:
        """Called by a connection once it has closed."""
        self.connections.pop(connection, None)
        if self._stopping:
            self._stop_when_done()
        elif not self._listening and len(self.connections) < self.config.max_connections:
            self._start_accepting()

    def linger(self, sock: socket.socket) -> None:
        """A transport's lingering close: kept here so that shutdown waits for it."""
        self._lingering.add(sock, self._linger_ended)

    def _linger_ended(self) -> None:
        if self._stopping:
            self._stop_when_done()

    def count_by_state(self) -> dict[str, int]:
        """How many connections are in each state (kept as they move: no walk)."""
        counts = count_by_state(self.metrics.moves)
        return {state.name: counts[state] for state in _OPEN_STATES}

    # -- running and stopping ------------------------------------------------

    def start(self) -> None:
        """Listen (if not yet done), register the listeners, start the lag probe."""
        if not self._listeners:
            self.listen()
        self._start_accepting()
        if self._lag_probe is None:
            self._lag_probe = self.loop.timer(self._probe_lag)
            self._lag_probe.reset(self.loop.time() + self.config.lag_probe_interval_s)

    def _probe_lag(self) -> None:
        """How late this timer fired is how long the loop was busy: its lag."""
        probe = self._lag_probe
        if probe is None:
            return  # released by a stop while it was due
        now = self.loop.time()
        lag = max(0.0, now - probe.when)
        self.metrics.loop_lag_s = lag
        self.metrics.loop_lag_max_s = max(self.metrics.loop_lag_max_s, lag)
        if self.pool is not None and self.pool.busy:
            self.pool.report_stuck()  # the watchdog of handlers off the loop
        if not self._stopping:
            probe.reset(now + self.config.lag_probe_interval_s)

    def serve_forever(self, install_signals: bool = True) -> None:
        """Run until shut down. Installs SIGINT/SIGTERM handlers in the main thread."""
        self.start()
        if install_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(signum, self._on_signal)
            if self.tls is not None:
                self.loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        try:
            self.loop.run()
        finally:
            self.close()

    def _on_signal(self, signum: int) -> None:
        if self._stopping:
            error_log.warning("second signal: stopping now")
            self.close_all()
            return
        self.shutdown()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (see the module docs)."""
        if self._stopping:
            return
        error_log.info("shutting down: %d connections open", len(self.connections))
        self._stop_accepting()
        self._stopping = True
        self.accepting = False
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        for connection in list(self.connections):
            connection.shutdown()
        self._shutdown_timer = self.loop.call_later(self.config.shutdown_timeout_s, self._shutdown_timed_out)
        self._shutdown_deadline = self.loop.time() + self.config.shutdown_timeout_s
        self._stop_when_done()

    def _shutdown_timed_out(self) -> None:
        error_log.warning("shutdown timeout: closing %d connections still open", len(self.connections))
        self.close_all()

    def _stop_when_done(self) -> None:
        if not self.connections and not self._lingering:
            self._release_timers()
            self.loop.stop()

    def _release_timers(self) -> None:
        # The server's timers call its methods: released, they no longer hold it.
        if self._shutdown_timer is not None:
            self._shutdown_timer.release()
            self._shutdown_timer = None
        if self._lag_probe is not None:
            self._lag_probe.release()
            self._lag_probe = None
        self.keepalive.release()
        self.first_bytes.release()

    def close_all(self) -> None:
        """Close every connection and listener now and stop the loop."""
        self._stopping = True
        self.accepting = False
        self._stop_accepting()
        for connection in list(self.connections):
            connection.close()
        self._lingering.close_all()
        self._release_timers()
        self.loop.stop()

    def close(self) -> None:
        """Release every socket and the loop; let the pool's handlers finish
        within what is left of the shutdown timeout (their clients are gone
        by now: what they answer is dropped)."""
        self.close_all()
        if self.pool is not None:
            deadline = self._shutdown_deadline
            self.pool.close(0.0 if deadline is None else max(0.0, deadline - self.loop.time()))
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        self.loop.close()


class _CountingMetrics(Metrics):
    """Metrics that call ``on_limit`` once, when the ``limit``-th response is counted."""

    __slots__ = ("limit", "on_limit")

    def __init__(self, limit: int, on_limit: Callable[[], object]) -> None:
        super().__init__()
        self.limit = limit
        self.on_limit = on_limit

    def observe(self, status: int, duration_s: float) -> None:
        super().observe(status, duration_s)
        if self.requests == self.limit:
            self.on_limit()


# -- listening sockets ---------------------------------------------------------
# A listener comes from one of three places: bound here (TCP or a Unix
# socket), inherited as a descriptor number (--fd), or passed by systemd's
# socket activation. Each is made in one small function; open_listeners()
# picks them from the config. None of them accepts: that is the Server's job.

_AF_UNIX = int(getattr(socket, "AF_UNIX", -1))
#: The first descriptor systemd passes (SD_LISTEN_FDS_START in sd-daemon.h).
LISTEN_FDS_START = 3
#: A Unix-socket peer has no address: its connections' client is this.
_UNIX_CLIENT = ("unix", 0)


def _client_address(address: object) -> tuple[str, int]:
    """The peer as ``(host, port)``; a Unix-socket peer (a path or "") is ``("unix", 0)``."""
    if isinstance(address, tuple):
        # Clients behind one address share one host string.
        return intern(address[0]), address[1]
    return _UNIX_CLIENT


def open_listeners(config: Config) -> list[socket.socket]:
    """The listening sockets ``config`` asks for, each listening and non-blocking.

    Sockets from outside win: systemd's (``LISTEN_FDS``), then ``config.fds``
    and ``config.uds``; only when there are none is ``host:port`` bound.
    """
    listeners = systemd_sockets()
    try:
        listeners += [inherited_socket(fd) for fd in config.fds]
        if config.uds is not None:
            listeners.append(bind_unix(config.uds, config.backlog, config.uds_mode))
        if not listeners:
            listeners.append(bind_tcp(config.host, config.port, config.backlog))
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_unix(path: str, backlog: int, mode: int) -> socket.socket:
    """A Unix stream socket at ``path`` with permission bits ``mode``, listening.

    A socket file left by a process that died is removed first, but only
    when nothing answers on it: a second server must not steal the path of
    a running one. Any other file at ``path`` is left alone (bind fails).
    """
    if _is_stale_socket(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The file bind() creates gets 0o777 minus the umask: setting the umask
    # around it gives the file its mode from the start, with no window in
    # which it has wider bits (a chmod after bind would leave one).
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    try:
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        os.unlink(path)
        raise
    return sock


def _is_stale_socket(path: str) -> bool:
    """Whether ``path`` is a socket file that nothing listens on."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except FileNotFoundError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True  # a file with no listener behind it
    except OSError:
        return False
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"a server is listening on {path}")


def inherited_socket(fd: int) -> socket.socket:
    """The listening stream socket open on descriptor ``fd`` (``--fd``, or systemd's)."""
    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise OSError(errno.EINVAL, f"descriptor {fd} is not a listening stream socket")
    sock.set_inheritable(False)  # a program the app runs must not hold it
    sock.setblocking(False)
    return sock


def systemd_sockets() -> list[socket.socket]:
    """The sockets systemd passed (``LISTEN_FDS`` from descriptor 3), or none.

    As sd_listen_fds(3): only when ``LISTEN_PID`` is this process. The
    variables are removed once read, so that no child process (a worker,
    or a program the app runs) takes the sockets for its own.
    """
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if pid is None or count is None or pid != str(os.getpid()):
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit():
        raise OSError(errno.EINVAL, f"LISTEN_FDS is not a number: {count!r}")
    return [inherited_socket(fd) for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count))]


def describe_listener(sock: socket.socket, tls: bool = False) -> str:
    """Where ``sock`` listens, as printed at start: a URL, or ``unix:PATH``
    (``https://`` and ``unix:PATH (TLS)`` with ``tls``)."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = address.decode(errors="replace") if isinstance(address, bytes) else address
        return f"unix:{path or '(unnamed)'}" + (" (TLS)" if tls else "")
    host, port = address[0], address[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/"
