"""Sockets from outside: ``--uds``, ``--fd`` and systemd socket activation, with real processes."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.integration.processes import APP, ROOT, Reactor, get


def test_unix_socket_serves_curl_with_its_mode_and_is_removed_at_shutdown(tmp_path: Path) -> None:
    path = str(tmp_path / "reactor.sock")
    reactor = Reactor("--app", APP, "--uds", path, "--uds-mode", "640", log=tmp_path / "log", address=False)
    try:
        assert f"serving unix:{path} " in reactor.banner
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        curl = subprocess.run(
            ["curl", "-sS", "--max-time", "5", "--unix-socket", path, "http://t/client"],
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
        assert curl.returncode == 0, curl.stderr
        assert curl.stdout == "unix"  # request.client of a Unix-socket peer
        assert get(path, "/") == b"Hello, World!"
        reactor.signal(signal.SIGTERM)
        assert reactor.proc.wait(10) == 0
        assert '"GET /client HTTP/1.1" 200 4' in reactor.log()
        assert "\nunix - - [" in "\n" + reactor.log()  # the access log names the peer "unix"
        assert not os.path.exists(path)
    finally:
        reactor.end()


def test_a_stale_socket_file_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "reactor.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # the file stays after close: what a killed server leaves
    stale.close()
    reactor = Reactor("--app", APP, "--uds", path, log=tmp_path / "log", address=False)
    try:
        assert get(path, "/") == b"Hello, World!"
        second = subprocess.run(
            [sys.executable, "-m", "reactor", "--app", APP, "--uds", path],
            cwd=ROOT,
            capture_output=True,
            check=False,
            text=True,
            timeout=20,
        )
        assert second.returncode == 1
        assert f"cannot listen on {path}: a server is listening on {path}" in second.stderr
        assert get(path, "/") == b"Hello, World!"  # the first server still has its socket
    finally:
        reactor.end()


def test_a_regular_file_at_the_socket_path_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("keep me")
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "--app", APP, "--uds", str(path)],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "cannot listen on" in result.stderr
    assert path.read_text() == "keep me"


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def test_an_inherited_fd_is_served_by_one_process_and_by_workers(tmp_path: Path) -> None:
    for workers in ([], ["--workers", "2"]):
        sock = listening_socket()
        port = sock.getsockname()[1]
        fd = sock.fileno()
        reactor = Reactor(
            "--app", APP, "--fd", str(fd), *workers,
            log=tmp_path / "log", pass_fds=(fd,),
        )  # fmt: skip
        sock.close()  # the server holds it now
        try:
            assert reactor.address == ("127.0.0.1", port)
            if workers:
                reactor.wait_log(r"worker \d+ ready", count=2)
            assert get(reactor.address, "/") == b"Hello, World!"
        finally:
            reactor.end()


def test_an_fd_that_is_not_a_listening_socket_is_refused(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "reactor", "--app", APP, "--fd", str(read_end)],
            cwd=ROOT,
            capture_output=True,
            check=False,
            text=True,
            timeout=20,
            pass_fds=(read_end,),
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 1
    assert f"cannot listen on fd {read_end}" in result.stderr


def test_systemd_socket_activation_and_the_variables_are_not_passed_on(tmp_path: Path) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    # What systemd does: the socket as descriptor 3, LISTEN_FDS=1 and
    # LISTEN_PID set to the pid of the process it then execs.
    exec_reactor = (
        f"import os, sys; os.dup2({fd}, 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='http'); "
        f"os.execv(sys.executable, [sys.executable, '-m', 'reactor', '--app', {APP!r}, '--workers', '2'])"
    )
    reactor = Reactor(argv=[sys.executable, "-c", exec_reactor], log=tmp_path / "log", pass_fds=(fd,))
    sock.close()
    try:
        assert reactor.address == ("127.0.0.1", port)
        reactor.wait_log(r"worker \d+ ready", count=2)
        assert get(reactor.address, "/") == b"Hello, World!"
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            assert get(reactor.address, f"/env/{name}") == b"-"  # unset before the workers
    finally:
        reactor.end()


def test_a_unix_socket_under_workers_is_removed_by_the_master(tmp_path: Path) -> None:
    path = str(tmp_path / "reactor.sock")
    reactor = Reactor("--app", APP, "--uds", path, "--workers", "2", log=tmp_path / "log", address=False)
    try:
        reactor.wait_log(r"worker \d+ ready", count=2)
        workers = {str(pid).encode() for pid in reactor.workers()}
        answered: set[bytes] = set()
        for _ in range(400):  # which idle worker wins each accept is the kernel's choice
            answered.add(get(path, "/pid"))
            if answered == workers:
                break
        assert answered == workers
        reactor.signal(signal.SIGTERM)
        assert reactor.proc.wait(10) == 0
        assert not os.path.exists(path)
    finally:
        reactor.end()
