"""``--reload``: restart the server when a module of the app changes (development).

Theory of operation
-------------------
``python -m reactor --app mod:app --reload`` does not serve: it becomes a
supervisor. It binds the listening socket itself and starts the server as a
child, ``python -m reactor`` with the same flags but ``--reload``, handing
the socket over as an inherited file descriptor (its number in the
environment variable ``REACTOR_LISTEN_FD``). The socket outlives every
child, so a client that connects during a restart waits in the kernel's
accept queue instead of being refused.

The supervisor polls the modification times of the files to watch every
half second (standard library only: no inotify). Those files are every
module the app imported from the app's own directory tree, not the standard
library's nor site-packages'; a *probe*, a fresh ``python -c`` that imports
the app and prints them, finds them, so the supervisor never runs the app's
code itself.

When a watched file changes:

1. each changed file is compiled: a syntax error is reported at once;
2. the probe imports the app afresh: an import-time error (a ``NameError``
   at module level, a missing module) only shows when the code runs;
3. only then a new child starts; once it says it is serving, the old child
   gets SIGTERM and finishes its requests in flight (a graceful shutdown).

If a step fails, the error is logged and the old child goes on serving the
old code; the next change tries again. SIGINT or SIGTERM to the supervisor
stops every child the same graceful way and exits; a second one kills them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__
from .log import error_log

if TYPE_CHECKING:
    from .config import Config

__all__ = ["inherited_socket", "supervise", "watched_files"]

#: The environment variable that hands the listening socket to a child.
LISTEN_FD_ENV = "REACTOR_LISTEN_FD"
#: How often the files are polled, in seconds.
POLL_INTERVAL_S = 0.5
#: How long a new child (or a probe) may take to start serving.
START_TIMEOUT_S = 30.0
_FILES_MARK = "reactor-reload-files: "


# -- in the child --------------------------------------------------------------


def inherited_socket() -> socket.socket | None:
    """The listening socket a supervisor handed over, if one did."""
    fd = os.environ.pop(LISTEN_FD_ENV, None)
    if fd is None:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.setblocking(False)
    return sock


def watched_files(modules: Sequence[object], root: str, extra: Sequence[str] = ()) -> list[str]:
    """The source files of ``modules`` (and the paths ``extra``) under ``root``,
    leaving out the standard library and site-packages."""
    paths = sysconfig.get_paths()
    excluded = tuple(
        os.path.join(os.path.realpath(paths[name]), "")
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
        if name in paths
    )
    root = os.path.join(os.path.realpath(root), "")
    files = set()
    for name in [getattr(module, "__file__", None) for module in modules] + list(extra):
        if not isinstance(name, str) or not name.endswith(".py"):
            continue
        path = os.path.realpath(name)
        if path.startswith(root) and not path.startswith(excluded) and os.path.exists(path):
            files.add(path)
    return sorted(files)


def probe(spec: str) -> int:
    """Import the app named by ``spec`` in this fresh process and print the files
    to watch; on failure also print the files the traceback went through."""
    from .cli import load_app  # noqa: PLC0415 (cli imports this module)

    root = os.getcwd()
    extra: list[str] = []
    status = 0
    try:
        load_app(spec)
        top = sys.modules[spec.partition(":")[0].split(".")[0]]
        top_file = getattr(top, "__file__", None) or ""
        parent = os.path.dirname(top_file)
        root = os.path.dirname(parent) if os.path.basename(top_file) == "__init__.py" else parent
    except BaseException as exc:  # SystemExit from load_app included: report every failure
        traceback.print_exception(exc)
        status = 1
        # load_app turns an ImportError into SystemExit: its context has the frames.
        for cause in (exc, exc.__cause__, exc.__context__):
            if cause is not None:
                extra += [frame.filename for frame in traceback.extract_tb(cause.__traceback__)]
            if isinstance(cause, SyntaxError) and cause.filename:
                extra.append(cause.filename)
    files = watched_files(list(sys.modules.values()), root, extra)
    print(_FILES_MARK + json.dumps(files), flush=True)
    return status


# -- in the supervisor -----------------------------------------------------------


class _Child:
    """One serving process, and what it wrote to its standard output so far."""

    __slots__ = ("proc", "ready", "_partial", "deadline")

    def __init__(self, argv: list[str], fd: int) -> None:
        env = dict(os.environ, **{LISTEN_FD_ENV: str(fd)})
        # Its own session: a Ctrl-C in the terminal reaches the supervisor only,
        # which then stops the child once, gracefully.
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, env=env, pass_fds=(fd,), start_new_session=True
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.ready = False
        self._partial = b""
        self.deadline = time.monotonic() + START_TIMEOUT_S  # to start, then to stop

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def drain(self) -> None:
        """Pass its output on; its "serving" line marks it ready (the supervisor showed its own)."""
        try:
            data = os.read(self.fileno(), 65536)
        except (BlockingIOError, ValueError):
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if not self.ready and line.startswith(b"reactor ") and b" serving http" in line:
                self.ready = True
                continue
            sys.stdout.buffer.write(line + b"\n")
        sys.stdout.flush()

    def stop(self, timeout_s: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.deadline = time.monotonic() + timeout_s

    def reap(self) -> bool:
        """True once it has exited (killed if past its deadline)."""
        if self.proc.poll() is None and time.monotonic() > self.deadline:
            error_log.warning("reload: pid %d did not stop in time: killed", self.proc.pid)
            self.proc.kill()
        if self.proc.poll() is None:
            return False
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return True


def _run_probe(spec: str) -> tuple[bool, list[str]]:
    """Import the app in a fresh process: whether it imported, and the files to watch."""
    code = "import sys; from reactor.reload import probe; sys.exit(probe(sys.argv[1]))"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, spec], stdout=subprocess.PIPE, timeout=START_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        error_log.error("reload: importing %s took over %.0f s", spec, START_TIMEOUT_S)
        return False, []
    files: list[str] = []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(_FILES_MARK):
            files = json.loads(line[len(_FILES_MARK) :])
    return result.returncode == 0, files


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def _syntax_errors(paths: Sequence[str]) -> list[str]:
    """One message per changed file that does not compile."""
    errors = []
    for path in paths:
        try:
            with open(path, "rb") as file:
                compile(file.read(), path, "exec", dont_inherit=True)
        except FileNotFoundError:
            continue  # deleted: the probe says whether anything still needs it
        except (SyntaxError, ValueError) as exc:
            errors.append("".join(traceback.format_exception_only(exc)).rstrip())
    return errors


def _listen(config: Config) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(config.backlog)
    except OSError:
        sock.close()
        raise
    return sock


def supervise(argv: list[str], config: Config) -> int:
    """Run the supervisor for ``python -m reactor ARGV`` (ARGV holds ``--reload``)."""
    spec = _app_spec(argv)
    child_argv = [sys.executable, "-m", "reactor", *(arg for arg in argv if arg != "--reload")]
    try:
        sock = _listen(config)
    except OSError as exc:
        print(f"reactor: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return 1
    # A signal writes a byte here, which wakes the select() at once.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
    current: _Child | None = None  # the child serving the newest code that started
    retiring: list[_Child] = []  # children finishing their requests after a reload
    grace_s = config.shutdown_timeout_s + 1.0
    try:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(
            f"reactor {__version__} serving http://{shown}:{port}/ (pid {os.getpid()}, --reload)", flush=True
        )
        ok, files = _run_probe(spec)
        stamps = {path: _stamp(path) for path in files}
        if ok:
            current = _start(child_argv, sock, retiring, wake_r, stopping)
        error_log.info("reload: watching %d files", len(stamps))
        while not stopping:
            _wait([wake_r, *_alive(current, retiring)])
            with contextlib.suppress(BlockingIOError):
                wake_r.recv(64)
            for child in _alive(current, retiring):
                child.drain()
            retiring = [child for child in retiring if not child.reap()]
            if current is not None and current.proc.poll() is not None:
                current.drain()
                error_log.error(
                    "reload: pid %d exited with status %d", current.proc.pid, current.proc.returncode
                )
                current.reap()
                current = None
            changed = [path for path, stamp in stamps.items() if _stamp(path) != stamp]
            if not changed:
                continue
            for path in changed:
                stamps[path] = _stamp(path)
                # Bytecode is checked against the source's mtime in whole
                # seconds and its size: an edit within the second of the last
                # one, same size, would load the old code.
                with contextlib.suppress(OSError, ValueError):
                    os.unlink(importlib.util.cache_from_source(path))
            error_log.info("reload: %s changed", ", ".join(os.path.relpath(path) for path in changed))
            errors = _syntax_errors(changed)
            for message in errors:
                error_log.error("reload: %s", message)
            if not errors:
                ok, new_files = _run_probe(spec)
                # A file the failed import went through is watched too, so that fixing it retries.
                stamps = {
                    path: stamps.get(path, _stamp(path))
                    for path in (new_files if ok else [*stamps, *new_files])
                }
            if errors or not ok:
                error_log.error(
                    "reload: not restarted%s", "; the old code goes on serving" if current else ""
                )
                continue
            others = [*retiring, *([current] if current else [])]
            new = _start(child_argv, sock, others, wake_r, stopping)
            if new is None:
                continue
            if current is not None:
                current.stop(grace_s)
                retiring.append(current)
            current = new
        return 0
    finally:
        children = _alive(current, retiring)
        for child in children:
            child.stop(grace_s)
        while children:
            for child in children:
                if len(stopping) > 1:  # a second signal: do not wait for the requests in flight
                    child.proc.kill()
                child.drain()
            children = [child for child in children if not child.reap()]
            if children:
                time.sleep(0.05)
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        wake_r.close()
        wake_w.close()
        sock.close()


def _wait(sources: Sequence[socket.socket | _Child]) -> None:
    """Sleep until a signal, some output, or the next poll of the files."""
    select.select([source.fileno() for source in sources], [], [], POLL_INTERVAL_S)


def _app_spec(argv: list[str]) -> str:
    for index, arg in enumerate(argv):
        if arg == "--app" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--app="):
            return arg[len("--app=") :]
    raise SystemExit("--reload needs --app")


def _alive(current: _Child | None, retiring: list[_Child]) -> list[_Child]:
    return [*retiring, current] if current is not None else list(retiring)


def _start(
    argv: list[str], sock: socket.socket, others: list[_Child], wake: socket.socket, stopping: list[int]
) -> _Child | None:
    """Start a child and wait until it says it is serving (passing the others' output on)."""
    new = _Child(argv, sock.fileno())
    children = [*others, new]
    while not new.ready and not stopping:
        _wait([wake, *children])
        for child in children:
            child.drain()
        if new.ready:
            break
        if new.proc.poll() is not None or time.monotonic() > new.deadline:
            error_log.error(
                "reload: the new process did not start%s", "; the old one goes on" if others else ""
            )
            new.stop(0.0)
            while not new.reap():
                time.sleep(0.05)
            return None
    if not new.ready:  # stopping
        new.stop(0.0)
        while not new.reap():
            time.sleep(0.05)
        return None
    error_log.info("reload: pid %d serving", new.proc.pid)
    return new
