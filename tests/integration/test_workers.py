"""``--workers N``: a master that supervises worker processes, with real processes on loopback.

Each test starts ``python -m reactor --workers N`` and ends it, and every
worker it left, by pid in ``finally``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

from tests.conftest import parse_responses, read_until_close
from tests.integration.processes import APP, Hammer, Reactor, children, connect, get


def start(tmp_path: Path, workers: int, *args: str, **kwargs: object) -> Reactor:
    reactor = Reactor(
        "--app", APP, "--port", "0", "--no-access-log", "--workers", str(workers), *args,
        log=tmp_path / "reactor.log", **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    try:
        reactor.wait_log(r"worker \d+ ready", count=workers)
    except BaseException:
        reactor.end()
        raise
    return reactor


def pids_answering(reactor: Reactor, want: int, attempts: int = 400) -> set[int]:
    """The worker pids seen answering new connections, until ``want`` are seen."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add(int(get(reactor.address, "/pid")))
        if len(seen) >= want:
            break
    return seen


def test_two_workers_serve_and_only_they_import_the_app(tmp_path: Path) -> None:
    imports = tmp_path / "imports"
    reactor = start(tmp_path, 2, env={"REACTOR_TEST_IMPORTS": str(imports)})
    try:
        workers = reactor.workers()
        assert len(workers) == 2
        assert pids_answering(reactor, 2) == workers
        imported_in = {int(line) for line in imports.read_text().split()}
        assert imported_in == workers  # never in the master
        assert reactor.pid not in imported_in
        assert f"(master pid {reactor.pid}, 2 workers)" in reactor.banner
    finally:
        reactor.end()


def test_a_killed_worker_is_replaced_within_a_second_and_the_master_says_why(tmp_path: Path) -> None:
    reactor = start(tmp_path, 2)
    try:
        before = reactor.workers()
        victim = min(before)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        after = reactor.wait_workers(lambda pids: len(pids) == 2 and victim not in pids, timeout=5)
        assert time.monotonic() - killed < 1.0
        (newcomer,) = after - before
        reactor.wait_log(rf"worker {newcomer} ready")
        assert f"worker {victim} killed by SIGKILL" in reactor.log()
        assert pids_answering(reactor, 2) == after
    finally:
        reactor.end()


def test_workers_that_keep_dying_are_replaced_with_a_growing_backoff(tmp_path: Path) -> None:
    reactor = start(tmp_path, 1)
    try:
        for _ in range(3):
            (worker,) = reactor.wait_workers(lambda pids: len(pids) == 1)
            reactor.wait_log(rf"worker {worker} ready")
            with connect(reactor.address) as sock:
                sock.sendall(b"GET /exit/7 HTTP/1.1\r\nHost: t\r\n\r\n")
                assert sock.recv(100) == b""  # it died before answering
            reactor.wait_log(rf"worker {worker} exited with status 7 after [\d.]+s; starting another")
            reactor.wait_workers(lambda pids, gone=worker: len(pids) == 1 and gone not in pids)
        delays = re.findall(
            r"exited with status 7 after [\d.]+s; starting another in ([\d.]+)s", reactor.log()
        )
        assert delays == ["0.0", "0.1", "0.2"]  # died soon after starting: a crash loop
    finally:
        reactor.end()


def test_workers_stop_when_the_master_is_killed(tmp_path: Path) -> None:
    reactor = start(tmp_path, 2)
    workers = reactor.workers()
    try:
        os.kill(reactor.pid, signal.SIGKILL)
        reactor.proc.wait(5)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") and not zombie(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.05)
        assert reactor.log().count("the master is gone; shutting down") == 2
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reactor.end()


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_max_requests_recycles_workers_without_a_failed_request(tmp_path: Path) -> None:
    reactor = start(tmp_path, 2, "--max-requests", "20", "--max-requests-jitter", "5")
    first = reactor.workers()
    hammers = [Hammer(reactor.address, per_connection=1), Hammer(reactor.address, per_connection=10)]
    try:
        for hammer in hammers:
            hammer.start()
        # 20 to 25 requests per worker: 800 requests take some 35 workers in turn,
        # each of which stops while clients are connecting to it.
        deadline = time.monotonic() + 40
        while sum(hammer.ok for hammer in hammers) < 800 and time.monotonic() < deadline:
            time.sleep(0.05)
        for hammer in hammers:
            hammer.stop()
        served_by = set().union(*(hammer.pids for hammer in hammers))
        assert sum(hammer.ok for hammer in hammers) >= 800
        assert [failure for hammer in hammers for failure in hammer.failures] == []
        assert len(served_by) >= 20, served_by
        assert served_by - first
        assert "(recycled); replacing it" in reactor.log()
        assert "stopping to be replaced" in reactor.log()
    finally:
        for hammer in hammers:
            hammer.stopping.set()
        reactor.end()


def test_sighup_replaces_every_worker_with_no_failed_request_under_load(tmp_path: Path) -> None:
    reactor = start(tmp_path, 2)
    old = reactor.workers()
    hammers = [Hammer(reactor.address, per_connection=1), Hammer(reactor.address, per_connection=50)]
    try:
        for hammer in hammers:
            hammer.start()
        time.sleep(0.5)
        before = sum(hammer.ok for hammer in hammers)
        reactor.signal(signal.SIGHUP)
        new = reactor.wait_workers(lambda pids: len(pids) == 2 and not pids & old, timeout=15)
        time.sleep(0.5)  # the load goes on after the reload too
        for hammer in hammers:
            hammer.stop()
        assert [failure for hammer in hammers for failure in hammer.failures] == []
        assert sum(hammer.ok for hammer in hammers) > before + 50
        served_by = set().union(*(hammer.pids for hammer in hammers))
        assert old <= served_by and new <= served_by
        log = reactor.log()
        assert "SIGHUP: replacing 2 workers one at a time" in log
        # One at a time: the k-th old worker is stopped only after k new ones are ready.
        after_hup = log[log.index("SIGHUP") :]
        ready = stopped = 0
        for match in re.finditer(r"worker (\d+) (ready|stopped)", after_hup):
            pid, what = int(match.group(1)), match.group(2)
            if what == "ready" and pid in new:
                ready += 1
            elif what == "stopped" and pid in old:
                stopped += 1
                assert ready >= stopped, after_hup
        assert (ready, stopped) == (2, 2), after_hup
    finally:
        for hammer in hammers:
            hammer.stopping.set()
        reactor.end()


def test_a_new_worker_that_never_gets_ready_is_killed_and_the_old_one_serves_on(tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    reactor = start(tmp_path, 1, "--worker-boot-timeout", "0.5", env={"REACTOR_TEST_HANG": str(hang)})
    try:
        (old,) = reactor.workers()
        hang.touch()  # from now on the app hangs at import
        reactor.signal(signal.SIGHUP)
        reactor.wait_log(r"worker \d+ not ready after 0.5s: SIGKILL", count=2)
        assert reactor.wait_log(r"killed by SIGKILL after [\d.]+s; starting another in ([\d.]+)s", count=2)[
            :2
        ] == [
            "0.0",
            "0.1",
        ]
        assert int(get(reactor.address, "/pid")) == old  # the old worker still serves
        hang.unlink()  # a fixed version: the reload completes
        (new,) = reactor.wait_workers(lambda pids: len(pids) == 1 and old not in pids, timeout=15)
        reactor.wait_log(rf"worker {new} ready")
        assert int(get(reactor.address, "/pid")) == new
    finally:
        reactor.end()


def test_sigttin_and_sigttou_change_the_number_of_workers(tmp_path: Path) -> None:
    reactor = start(tmp_path, 2)
    try:
        reactor.signal(signal.SIGTTIN)
        three = reactor.wait_workers(lambda pids: len(pids) == 3)
        reactor.wait_log(r"worker \d+ ready", count=3)
        assert "SIGTTIN: 3 workers" in reactor.log()
        # One at a time: two of the same signal sent at once may arrive as one.
        reactor.signal(signal.SIGTTOU)
        reactor.wait_workers(lambda pids: len(pids) == 2)
        reactor.signal(signal.SIGTTOU)
        one = reactor.wait_workers(lambda pids: len(pids) == 1)
        assert one < three
        reactor.signal(signal.SIGTTOU)  # never below one
        time.sleep(0.3)
        assert reactor.workers() == one
        assert pids_answering(reactor, 1) == one
    finally:
        reactor.end()


def test_sigterm_finishes_requests_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    reactor = start(tmp_path, 2, "--shutdown-timeout", "10")
    try:
        workers = reactor.workers()
        in_flight = []
        for _ in range(6):  # head sent, body not yet: on whichever worker took it
            sock = socket.create_connection(reactor.address, timeout=10)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhe")
            in_flight.append(sock)
        time.sleep(0.3)
        reactor.signal(signal.SIGTERM)
        time.sleep(0.3)
        for sock in in_flight:
            sock.sendall(b"llo")
        replies = [parse_responses(read_until_close(sock, timeout=10)) for sock in in_flight]
        for sock in in_flight:
            sock.close()
        assert reactor.proc.wait(15) == 0, reactor.log()
        for (response,) in replies:
            assert response.status == 200
            assert response.body == b"hello"
            assert response.header("connection") == "close"
        log = reactor.log()
        assert "SIGTERM: stopping 2 workers" in log
        assert all(f"worker {pid} stopped: exited with status 0" in log for pid in workers)
        assert log.count("all workers stopped") == 1
        assert not any(children(reactor.pid))
        try:
            socket.create_connection(reactor.address, timeout=2).close()
            raise AssertionError("still listening after the shutdown")
        except ConnectionRefusedError:
            pass
    finally:
        reactor.end()


def test_one_worker_serves_under_a_master_and_no_flag_runs_no_master(tmp_path: Path) -> None:
    reactor = start(tmp_path, 1)
    try:
        (worker,) = reactor.workers()
        assert int(get(reactor.address, "/pid")) == worker != reactor.pid
    finally:
        reactor.end()
    single = Reactor("--app", APP, "--port", "0", log=tmp_path / "single.log")
    try:
        assert int(get(single.address, "/pid")) == single.pid
        assert single.workers() == set()
        assert f"(pid {single.pid})" in single.banner
    finally:
        single.end()


def test_an_app_that_does_not_import_stops_the_master(tmp_path: Path) -> None:
    reactor = Reactor(
        "--app", "no_such_module:app", "--port", "0", "--workers", "2",
        log=tmp_path / "reactor.log",
    )  # fmt: skip
    try:
        assert reactor.proc.wait(10) == 1
        log = reactor.log()
        assert "cannot import 'no_such_module'" in log
        assert "could not start" in log
    finally:
        reactor.end()
