"""The access log's ``%(p)s`` names the worker that answered, not the master it was forked from."""

from __future__ import annotations

from pathlib import Path

from tests.integration.processes import APP, Reactor, get


def test_each_access_line_names_the_worker_that_answered(tmp_path: Path) -> None:
    reactor = Reactor(
        "--app", APP, "--port", "0", "--workers", "2", "--access-log-format", '%(p)s "%(r)s" %(s)s',
        log=tmp_path / "reactor.log",
    )  # fmt: skip
    try:
        reactor.wait_log(r"worker \d+ ready", count=2)
        # /pid answers with the pid of the worker that served it.
        answered = [int(get(reactor.address, "/pid")) for _ in range(40)]
        lines = reactor.wait_log(r'<(\d+)> "GET /pid HTTP/1.1" 200', count=40)
        logged = [int(pid) for pid in lines]
        workers = reactor.workers()
    finally:
        reactor.end()
    assert len(workers) == 2
    assert set(logged) <= workers, f"master {reactor.pid}, workers {workers}, logged {set(logged)}"
    assert reactor.pid not in logged
    # The same workers, in the same numbers, as the answers say.
    assert sorted(logged) == sorted(answered)
