"""The server: listening sockets, accept, the connection registry, shutdown.

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
import signal
import socket
import threading
from functools import partial
from sys import intern

from . import trace
from .config import Config
from .connection import Application, Connection, State, count_by_state
from .log import error_log
from .loop import EVENT_READ, Loop, Timer
from .metrics import Metrics
from .transport import Lingering, Transport

__all__ = ["Server"]

# Accepts per listener wakeup, at most (tornado accepts up to its backlog).
_ACCEPT_BATCH = 128
_OUT_OF_FDS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_OPEN_STATES = tuple(state for state in State if state is not State.CLOSED)


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
        #: Every open connection.
        self.connections: set[Connection] = set()
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
        self._shutdown_timer: Timer | None = None
        self._lingering = Lingering(self.loop, self.config.linger_timeout_s)
        # An app may want the server (for its loop and figures): it says so
        # with an attach(server) method.
        attach = getattr(app, "attach", None)
        if attach is not None:
            attach(self)
        if self.config.trace:
            trace.enable()

    # -- listening -----------------------------------------------------------

    def listen(self) -> list[tuple[str, int]]:
        """Bind and listen; returns the bound ``(host, port)`` addresses."""
        config = self.config
        family, kind, proto, _, address = socket.getaddrinfo(
            config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(config.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listeners.append(sock)
        bound = sock.getsockname()
        self.addresses.append((bound[0], bound[1]))
        return self.addresses

    @property
    def accepting(self) -> bool:
        """False once shutdown has begun: responses then close their connection."""
        return not self._stopping

    def _start_accepting(self) -> None:
        if not self._listening and not self._stopping:
            for sock in self._listeners:
                self.loop.register(sock, EVENT_READ, partial(self._accept, sock))
            self._listening = True

    def _stop_accepting(self) -> None:
        if self._listening:
            for sock in self._listeners:
                self.loop.unregister(sock)
            self._listening = False

    def _accept(self, listener: socket.socket, mask: int) -> None:
        loop, config, app = self.loop, self.config, self.app
        connections = self.connections
        for _ in range(_ACCEPT_BATCH):
            if len(connections) >= config.max_connections:
                error_log.debug("at max_connections=%d: not accepting", config.max_connections)
                self._stop_accepting()
                return
            try:
                sock, address = listener.accept()
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
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Clients behind one address share one host string (a Unix
            # socket's peer has no address: it is named "unix").
            client = (intern(address[0]), address[1]) if address else ("unix", 0)
            connection = Connection(client, loop, config, app, self)
            connections.add(connection)
            Transport(sock, loop, config, self, connection).start()

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

    # -- the connection registry --------------------------------------------

    def connection_closed(self, connection: Connection) -> None:
        """Called by a connection once it has closed."""
        self.connections.discard(connection)
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
        if not self._stopping:
            probe.reset(now + self.config.lag_probe_interval_s)

    def serve_forever(self, install_signals: bool = True) -> None:
        """Run until shut down. Installs SIGINT/SIGTERM handlers in the main thread."""
        self.start()
        if install_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(signum, self._on_signal)
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
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        for connection in list(self.connections):
            connection.shutdown()
        self._shutdown_timer = self.loop.call_later(self.config.shutdown_timeout_s, self._shutdown_timed_out)
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

    def close_all(self) -> None:
        """Close every connection and listener now and stop the loop."""
        self._stopping = True
        self._stop_accepting()
        for connection in list(self.connections):
            connection.close()
        self._lingering.close_all()
        self._release_timers()
        self.loop.stop()

    def close(self) -> None:
        """Release every socket and the loop."""
        self.close_all()
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        self.loop.close()
