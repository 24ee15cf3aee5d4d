"""The master: one process that owns the listeners and supervises N workers.

``reactor --workers N`` runs this. The master opens the listening sockets,
forks N worker processes, and from then on only watches them; each worker
builds its own :class:`~reactor.loop.Loop` and :class:`~reactor.server.Server`
on the inherited sockets and imports and runs the app. The master never
imports the app: what a worker needs to start is a function (``boot``) that
the master calls only in the child, after the fork.

One shared socket, not SO_REUSEPORT
    Every worker accepts from the same listening socket, bound once by the
    master before it forks (gunicorn does this; nginx does it by default and
    offers ``reuseport`` as an option). The other way is for each worker to
    bind its own socket with ``SO_REUSEPORT``: the kernel then hashes each
    new connection to one worker's own accept queue. That spreads load
    evenly and wakes only one process per connection, but a queue belongs
    to one worker: connections hashed to a busy worker wait although others
    are idle, and when a worker exits (a crash, ``--max-requests``, a
    reload) the connections queued on its socket are reset. With one
    shared queue a worker that stops simply stops taking from it: the
    connections waiting there are accepted by the others, or by its
    replacement, which is why a reload loses no request. The shared socket
    also works the same way for sockets from outside (``--fd``, ``--uds``,
    systemd socket activation), which cannot be re-bound per worker. Its
    cost: each worker's selector watches the same socket, so a new
    connection wakes every idle worker, and under load the workers race
    for one queue; the one that finds it drained has made a pass for
    nothing. With two workers on one core and a new connection per
    request that was about 15 % more CPU per request (docs/scaling.md,
    which also shows that ``EPOLLEXCLUSIVE`` did not remove it); with
    keep-alive connections, nothing measurable.

Supervision
    The master's loop is reactor's own loop used only for its signal
    machinery and timers: every signal arrives through the loop's wakeup
    fd and is handled between events, never inside a signal handler.

    - SIGCHLD: reap every exited worker and say why it ended (exit status
      or signal name). One that was not asked to stop is replaced: at once
      the first time, then with a backoff that doubles while workers keep
      dying soon after they start (a crash loop), reset by a worker that
      lives :data:`STABLE_S`. A worker that ends because it reached its
      ``--max-requests`` exits 0 and is replaced at once.
    - SIGHUP: replace every worker, one at a time: start a new one, wait
      until it says it is accepting (a byte on its readiness pipe), then
      stop one old one gracefully (SIGTERM: it finishes its requests).
      A worker not ready within ``worker_boot_timeout_s`` is killed and,
      like any that dies, replaced with backoff: a new version that hangs
      at start stalls the reload while the old workers go on serving.
    - SIGTTIN / SIGTTOU: one worker more / one fewer (never below one).
    - SIGTERM / SIGINT: stop: close the master's copy of the listeners,
      send SIGTERM to every worker, and wait up to ``shutdown_timeout_s``
      (plus a second) before SIGKILL. A second signal is forwarded too:
      a worker that gets two stops at once.

    A worker that stops while the others serve on (SIGTERM, its
    ``--max-requests`` reached, its master gone) drains first
    (:meth:`~reactor.server.Server.drain`): it stops accepting, answers with
    ``Connection: close``, and gives connections that are idle or have just
    been accepted up to a second to send a request, so that none is closed
    under a request its client has already sent.

    Workers ignore SIGINT: Ctrl-C in a terminal signals the whole process
    group, and the master's forwarded SIGTERM is the one they act on. A
    worker whose master is gone (``os.getppid()`` changed) shuts down.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import traceback
from collections.abc import Callable

from .config import Config
from .log import error_log
from .loop import EVENT_READ, Loop, Timer
from .server import Server

__all__ = ["BOOT_FAILED", "STABLE_S", "Master", "WorkerBoot", "run_worker"]

#: The exit status of a worker that could not start (its app did not import,
#: say). Before any worker has been ready, the master then gives up.
BOOT_FAILED = 3
#: A worker that lived this long ends a crash loop: the next death is
#: replaced at once again.
STABLE_S = 5.0
# Backoff before replacing a worker that died: the second death in a row
# waits the first figure, each further one twice the last, up to the cap.
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 10.0
# How often a worker checks that its master is still there.
_PARENT_CHECK_S = 1.0

#: What a worker runs after the fork: ``boot(listeners, ready, max_requests)``
#: builds the app and server, calls ``ready()`` once accepting, serves and
#: returns the exit status. ``max_requests`` 0 means no limit.
WorkerBoot = Callable[[list[socket.socket], Callable[[], None], int], int]


class Worker:
    """The master's record of one worker process."""

    __slots__ = ("pid", "pipe", "started", "ready", "retiring", "boot_timer")

    def __init__(self, pid: int, pipe: int, started: float) -> None:
        self.pid = pid
        self.pipe = pipe  # read end of its readiness pipe; -1 once closed
        self.started = started
        self.ready = False
        self.retiring = False  # asked to stop: not replaced when it exits
        self.boot_timer: Timer | None = None  # kills it if it is not ready in time


class Master:
    """Fork and supervise ``config.workers`` workers serving ``listeners``."""

    def __init__(self, config: Config, listeners: list[socket.socket], boot: WorkerBoot) -> None:
        self.config = config
        self.listeners = listeners
        self.boot = boot
        self.target = config.workers
        self.workers: dict[int, Worker] = {}
        self.loop = Loop()
        self._stopping = False
        self._finished = False
        self._status = 0
        self._ever_ready = False
        self._streak = 0  # workers in a row that died soon after they started
        self._spawn_after = 0.0  # no worker is started before this time (backoff)
        self._spawn_timer: Timer | None = None
        self._reload: list[int] = []  # old workers a SIGHUP still has to replace
        self._kill_timer: Timer | None = None

    # -- running -------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until stopped; the exit status."""
        handlers: dict[signal.Signals, Callable[[int], object]] = {
            signal.SIGCHLD: self._reap,
            signal.SIGHUP: self._on_hup,
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGTTIN: self._on_ttin,
            signal.SIGTTOU: self._on_ttou,
        }
        # Before the first fork, so that no worker's exit goes unnoticed.
        for signum, handler in handlers.items():
            self.loop.add_signal_handler(signum, handler)
        error_log.info("master %d: starting %d workers", os.getpid(), self.target)
        self._maintain()
        try:
            self.loop.run()
        finally:
            for sock in self.listeners:
                sock.close()
            self.loop.close()
        return self._status

    # -- starting workers ----------------------------------------------------

    def _spawn(self) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns to the master's code
            os.close(read_end)
            self._run_child(write_end)
        os.close(write_end)
        worker = Worker(pid, read_end, self.loop.time())
        self.workers[pid] = worker
        self.loop.register(read_end, EVENT_READ, lambda mask: self._on_pipe(worker))
        worker.boot_timer = self.loop.call_later(
            self.config.worker_boot_timeout_s, self._boot_timed_out, worker
        )
        error_log.info("worker %d started", pid)

    def _run_child(self, ready_fd: int) -> None:
        """In a new worker: drop the master's loop and signals, then boot."""
        status = BOOT_FAILED
        try:
            self.loop.close()  # restores the default signal handlers
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # see the module docs
            for worker in self.workers.values():
                if worker.pipe >= 0:
                    os.close(worker.pipe)
            limit = self.config.max_requests
            if limit:
                limit += random.randint(0, self.config.max_requests_jitter)
            status = self.boot(self.listeners, lambda: _say_ready(ready_fd), limit)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                print(exc.code if isinstance(exc.code, str) else f"exit {exc.code}", file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _on_pipe(self, worker: Worker) -> None:
        try:
            data = os.read(worker.pipe, 64)
        except (BlockingIOError, InterruptedError):
            return
        if not data:  # it exited (or closed the pipe): SIGCHLD says why
            self._close_pipe(worker)
            return
        if not worker.ready:
            worker.ready = True
            _release(worker)
            self._ever_ready = True
            error_log.info("worker %d ready", worker.pid)
            self._reload_step()

    def _close_pipe(self, worker: Worker) -> None:
        if worker.pipe >= 0:
            self.loop.unregister(worker.pipe)
            os.close(worker.pipe)
            worker.pipe = -1

    def _active(self) -> list[Worker]:
        """The workers not asked to stop, oldest first."""
        return [worker for worker in self.workers.values() if not worker.retiring]

    def _maintain(self) -> None:
        """Start or stop workers until the count is the target."""
        if self._stopping:
            return
        active = self._active()
        missing = self.target - len(active)
        if missing > 0 and not self._backing_off():
            for _ in range(missing):
                self._spawn()
        elif missing < 0 and not self._reload:
            for worker in active[:-missing]:
                self._retire(worker)

    def _backing_off(self) -> bool:
        """Whether no worker may start yet; if so, a timer tries again when one may."""
        delay = self._spawn_after - self.loop.time()
        if delay <= 0:
            return False
        if self._spawn_timer is None:
            self._spawn_timer = self.loop.call_later(delay, self._spawn_due)
        return True

    def _spawn_due(self) -> None:
        self._spawn_timer = None
        self._reload_step()
        self._maintain()

    def _boot_timed_out(self, worker: Worker) -> None:
        worker.boot_timer = None
        if not worker.ready and self.workers.get(worker.pid) is worker:
            timeout_s = self.config.worker_boot_timeout_s
            error_log.warning("worker %d not ready after %.1fs: SIGKILL", worker.pid, timeout_s)
            _kill(worker.pid, signal.SIGKILL)

    def _retire(self, worker: Worker, signum: int = signal.SIGTERM) -> None:
        worker.retiring = True
        _kill(worker.pid, signum)

    # -- workers that end ----------------------------------------------------

    def _reap(self, signum: int) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._ended(worker, status)
        if self._stopping and not self.workers:
            self._finish()
            return
        self._reload_step()
        self._maintain()

    def _ended(self, worker: Worker, status: int) -> None:
        self._close_pipe(worker)
        _release(worker)
        code = os.waitstatus_to_exitcode(status)
        why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        lived = self.loop.time() - worker.started
        if worker.retiring or self._stopping:
            error_log.info("worker %d stopped: %s", worker.pid, why)
            return
        if code == 0:
            error_log.info("worker %d %s (recycled); replacing it", worker.pid, why)
            return
        if code == BOOT_FAILED and not self._ever_ready:
            error_log.error("worker %d could not start (%s): stopping", worker.pid, why)
            self._status = 1
            self._stop()
            return
        self._streak = self._streak + 1 if lived < STABLE_S else 1
        backoff = (
            0.0 if self._streak == 1 else min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (self._streak - 2))
        )
        self._spawn_after = self.loop.time() + backoff
        error_log.warning(
            "worker %d %s after %.1fs; starting another in %.1fs", worker.pid, why, lived, backoff
        )

    # -- signals -------------------------------------------------------------

    def _on_hup(self, signum: int) -> None:
        if self._stopping:
            return
        error_log.info("SIGHUP: replacing %d workers one at a time", len(self._active()))
        self._reload = [worker.pid for worker in self._active()]
        self._reload_step()

    def _reload_step(self) -> None:
        """Replace the next old worker once no new one is still starting."""
        if self._stopping:
            return
        while self._reload and self._reload[0] not in self.workers:
            self._reload.pop(0)  # it died meanwhile: it was replaced anyway
        if not self._reload:
            self._maintain()  # a SIGTTOU during the reload may have left extras
            return
        if any(not worker.ready for worker in self._active()):
            return  # wait for it: its readiness calls this again
        if len(self._active()) > self.target:
            # The replacement is ready: the old one may go.
            self._retire(self.workers[self._reload.pop(0)])
            self._reload_step()
        elif not self._backing_off():
            self._spawn()

    def _on_ttin(self, signum: int) -> None:
        if not self._stopping:
            self.target += 1
            error_log.info("SIGTTIN: %d workers", self.target)
            self._maintain()

    def _on_ttou(self, signum: int) -> None:
        if not self._stopping and self.target > 1:
            self.target -= 1
            error_log.info("SIGTTOU: %d workers", self.target)
            self._maintain()

    def _on_stop(self, signum: int) -> None:
        if self._stopping:
            error_log.warning("second signal: stopping the workers now")
            for pid in self.workers:
                _kill(pid, signal.SIGTERM)  # a worker's second signal: it closes everything
            return
        error_log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
        self._stop()

    def _stop(self) -> None:
        self._stopping = True
        if self._spawn_timer is not None:
            self._spawn_timer.cancel()
            self._spawn_timer = None
        for sock in self.listeners:
            sock.close()  # the workers' copies close as they shut down
        for worker in self.workers.values():
            self._retire(worker)
        self._kill_timer = self.loop.call_later(self.config.shutdown_timeout_s + 1.0, self._kill_all)
        if not self.workers:
            self._finish()

    def _kill_all(self) -> None:
        self._kill_timer = None
        for pid in self.workers:
            error_log.warning("worker %d still running after the shutdown timeout: SIGKILL", pid)
            _kill(pid, signal.SIGKILL)

    def _finish(self) -> None:
        if self._finished:
            return  # one SIGCHLD reaped them all; the next finds none
        self._finished = True
        if self._kill_timer is not None:
            self._kill_timer.release()
            self._kill_timer = None
        error_log.info("master %d: all workers stopped", os.getpid())
        self.loop.stop()


def _release(worker: Worker) -> None:
    if worker.boot_timer is not None:
        worker.boot_timer.release()
        worker.boot_timer = None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it has exited; SIGCHLD will say so


def _say_ready(fd: int) -> None:
    """Tell the master this worker is accepting: one byte on its pipe, once."""
    os.write(fd, b"r")
    os.close(fd)


# -- the worker's side ---------------------------------------------------------


def run_worker(server: Server, ready: Callable[[], None], max_requests: int) -> int:
    """Serve on ``server`` (a :class:`~reactor.server.Server`) as a master's worker.

    Reports readiness once accepting, stops gracefully on SIGTERM (at once
    on a second), and shuts down if the master goes away.
    """
    master = os.getppid()
    if max_requests:
        server.stop_after_requests(max_requests)
    server.start()
    loop = server.loop

    def on_term(signum: int) -> None:
        if server.accepting:
            server.drain()
        else:
            error_log.warning("second signal: stopping now")
            server.close_all()

    def check_parent() -> None:
        if os.getppid() != master:
            error_log.warning("worker %d: the master is gone; shutting down", os.getpid())
            server.drain()
        elif server.accepting:
            loop.call_later(_PARENT_CHECK_S, check_parent)

    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.call_later(_PARENT_CHECK_S, check_parent)
    ready()
    server.serve_forever(install_signals=False)
    return 0
