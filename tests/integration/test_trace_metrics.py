"""What reactor shows about itself: --trace, the Prometheus metrics, the watchdog, /_reactor/stats.

These talk to a real server (a subprocess for --trace, a thread for the rest) because what they
check is what the server says about real traffic.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.serverproc import stop
from reactor import App, Request
from reactor.live import mount
from tests.conftest import Running, exchange, read_until_close, recv_response

ROOT = Path(__file__).resolve().parents[2]
Serve = Callable[..., Running]

# -- --trace -------------------------------------------------------------------


def _trace_of(stderr: str, client_port: int) -> list[str]:
    """The trace of the connection from ``client_port``, accept to close, without "fd=N "."""
    lines: list[str] = []
    fd: str | None = None
    for line in stderr.splitlines():
        match = re.fullmatch(r"fd=(\d+) (.*)", line)
        if match is None:
            continue
        if fd is None:
            if re.fullmatch(rf"accept 127\.0\.0\.1:{client_port} -> \w+", match.group(2)):
                fd = match.group(1)
                lines.append(match.group(2))
            continue
        if match.group(1) == fd:
            lines.append(match.group(2))
            if " -> CLOSED " in match.group(2):
                break
    return lines


def test_trace_shows_every_move_of_one_connection(tmp_path: Path) -> None:
    log_path = tmp_path / "stderr.txt"
    with log_path.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reactor",
                "--app",
                "loadtests.hello:app",
                "--port",
                "0",
                "--trace",
                "--no-access-log",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert proc.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
        assert match, log_path.read_text()
        address = ("127.0.0.1", int(match.group(1)))

        # A client that connects and waits: the read at accept finds nothing, so the connection
        # enters the selector, and its request arrives as a selector event.
        with socket.create_connection(address, timeout=5) as sock:
            waiting_port = sock.getsockname()[1]
            time.sleep(0.3)  # the server has accepted it long before
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer = read_until_close(sock)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"Hello, World!")

        # Two requests on one kept-alive connection, the second closing it.
        with socket.create_connection(address, timeout=5) as sock:
            kept_port = sock.getsockname()[1]
            time.sleep(0.3)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(sock).body == b"Hello, World!"
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_close(sock).endswith(b"Hello, World!")

        # A client that sends at once: its request has usually arrived when it is accepted.
        with socket.create_connection(address, timeout=5) as sock:
            eager_port = sock.getsockname()[1]
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_close(sock).endswith(b"Hello, World!")
    finally:
        stop(proc)  # SIGTERM first
    trace = log_path.read_text()
    assert proc.returncode == 0, trace  # SIGTERM is a graceful shutdown

    assert _trace_of(trace, waiting_port) == [
        f"accept 127.0.0.1:{waiting_port} -> READING_HEADERS",
        "read at accept",
        "watch READ",
        "ready READ",
        "READING_HEADERS -> WRITING on request",
        "WRITING -> CLOSING on last",
        "CLOSING -> CLOSED on close",
    ], trace
    assert _trace_of(trace, kept_port) == [
        f"accept 127.0.0.1:{kept_port} -> READING_HEADERS",
        "read at accept",
        "watch READ",
        "ready READ",
        "READING_HEADERS -> WRITING on request",
        "WRITING -> IDLE on keep-alive",
        "ready READ",
        "IDLE -> READING_HEADERS on data",
        "READING_HEADERS -> WRITING on request",
        "WRITING -> CLOSING on last",
        "CLOSING -> CLOSED on close",
    ], trace
    answered_at_accept = [
        f"accept 127.0.0.1:{eager_port} -> READING_HEADERS",
        "read at accept",
        "READING_HEADERS -> WRITING on request",
        "WRITING -> CLOSING on last",
        "CLOSING -> CLOSED on close",
    ]
    # If the request was not there yet at accept, it is read as a selector event instead.
    assert _trace_of(trace, eager_port) in (
        answered_at_accept,
        [*answered_at_accept[:2], "watch READ", "ready READ", *answered_at_accept[2:]],
    ), trace


# -- the Prometheus metrics ----------------------------------------------------------


def _app() -> App:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    @app.route("/slow")
    def slow(request: Request) -> str:
        time.sleep(0.3)  # blocks the loop: what the watchdog is for
        return "slow"

    @app.route("/slow/{id}")
    def slow_item(request: Request) -> str:
        time.sleep(0.3)
        return f"slow {request.params['id']}"

    mount(app)
    return app


def _get(running: Running, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(*running.address, timeout=5)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Every sample of a Prometheus text exposition, and each family's type, as prometheus_client reads them.

    Samples are keyed by (sample name, sorted labels); the parser names a counter's family without
    its ``_total`` suffix, and its samples with it.
    """
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples, types


def _metrics(running: Running) -> Samples:
    return _parse(_get(running, "/_reactor/metrics")[2].decode())[0]


def test_metrics_parse_as_prometheus_text(serve: Serve) -> None:
    running = serve(_app())
    for _ in range(3):
        assert _get(running, "/")[0] == 200
    assert _get(running, "/nowhere")[0] == 404
    malformed = exchange(running.address, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header : x\r\n\r\n")
    assert malformed.startswith(b"HTTP/1.1 400 ")

    status, content_type, body = _get(running, "/_reactor/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = _parse(body.decode())

    # Connections by state: one sample per state; the metrics request is the one writing.
    assert types["reactor_connections"] == "gauge"
    by_state = {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "reactor_connections"
    }
    assert by_state == {
        "idle": 0,
        "reading_headers": 0,
        "reading_body": 0,
        "writing": 1,
        "streaming": 0,
        "pushing": 0,
        "upgraded": 0,
        "closing": 0,
        "in_pool": 0,
    }

    # Responses by class: three 200s, then a 404 and a 400.
    assert types["reactor_requests"] == "counter"
    assert samples["reactor_requests_total", (("code", "2xx"),)] == 3
    assert samples["reactor_requests_total", (("code", "4xx"),)] == 2
    assert samples["reactor_requests_total", (("code", "5xx"),)] == 0
    assert samples["reactor_rejected_total", ()] == 1
    assert samples["reactor_connections_accepted_total", ()] == 6

    # The duration histogram: cumulative buckets, +Inf equal to the count.
    assert types["reactor_request_duration_seconds"] == "histogram"
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "reactor_request_duration_seconds_bucket"
    )
    assert len(buckets) > 2 and buckets[-1][0] == float("inf")
    counts = [value for _, value in buckets]
    assert counts == sorted(counts), f"buckets are not cumulative: {buckets}"
    assert buckets[-1][1] == samples["reactor_request_duration_seconds_count", ()] == 5
    assert samples["reactor_request_duration_seconds_sum", ()] > 0

    assert types["reactor_loop_lag_seconds"] == "gauge"
    assert samples["reactor_loop_lag_seconds", ()] >= 0
    assert samples["reactor_loop_iterations_total", ()] > 0
    assert samples["reactor_slow_handlers_total", ()] == 0


# -- the watchdog and the lag probe ----------------------------------------------------


def _blocked_ms(caplog: pytest.LogCaptureFixture, route: str) -> list[float]:
    found = []
    for record in caplog.records:
        match = re.fullmatch(
            rf"handler for GET {re.escape(route)} blocked the loop for (\d+) ms", record.getMessage()
        )
        if match is not None and record.name == "reactor.error" and record.levelno == logging.WARNING:
            found.append(float(match.group(1)))
    return found


def test_watchdog_logs_and_counts_a_handler_that_blocks_the_loop(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reactor.error")
    running = serve(_app(), watchdog_threshold_s=0.1, lag_probe_interval_s=0.05)

    assert _get(running, "/") == (200, "text/plain; charset=utf-8", b"Hello, World!")
    assert _blocked_ms(caplog, "/") == []  # a quick handler is not reported

    assert _get(running, "/slow")[2] == b"slow"
    blocked = _blocked_ms(caplog, "/slow")
    assert len(blocked) == 1 and blocked[0] >= 250, caplog.text

    samples = _metrics(running)
    assert samples["reactor_slow_handlers_total", ()] == 1
    # The watchdog counts the time the handler held the loop as the loop's lag, before the
    # response leaves: the next request sees it, whenever the lag probe's own timer fires.
    assert samples["reactor_loop_lag_max_seconds", ()] >= 0.25

    # A parameterised route is logged by its pattern, not by the path.
    assert _get(running, "/slow/42")[2] == b"slow 42"
    blocked = _blocked_ms(caplog, "/slow/{id}")
    assert len(blocked) == 1 and blocked[0] >= 250, caplog.text
    assert _blocked_ms(caplog, "/slow/42") == []
    assert _metrics(running)["reactor_slow_handlers_total", ()] == 2


def test_lag_probe_sees_a_callback_that_blocks_the_loop(serve: Serve) -> None:
    running = serve(_app(), lag_probe_interval_s=0.05)
    assert _metrics(running)["reactor_loop_lag_max_seconds", ()] < 0.25
    running.call(lambda: time.sleep(0.3))  # not a handler: the watchdog does not see it
    deadline = time.monotonic() + 5
    while _metrics(running)["reactor_loop_lag_max_seconds", ()] < 0.2:
        assert time.monotonic() < deadline, "the lag probe never saw the blocked loop"
        time.sleep(0.05)
    assert _metrics(running)["reactor_slow_handlers_total", ()] == 0


# -- the live view's JSON ------------------------------------------------------------


def test_stats_json_has_what_the_page_shows(serve: Serve) -> None:
    running = serve(_app())
    status, content_type, page = _get(running, "/_reactor/")
    assert status == 200 and content_type.startswith("text/html")
    # The page's script names the figures it shows.
    match = re.search(r"const fields = \[([^\]]*)\];", page.decode())
    assert match, "the page no longer lists its fields"
    fields = re.findall(r'"(\w+)"', match.group(1))
    assert "requests" in fields and "iterations_per_s" in fields

    status, content_type, body = _get(running, "/_reactor/stats")
    assert status == 200 and content_type == "application/json"
    stats: dict[str, Any] = json.loads(body)
    for name in fields:
        assert isinstance(stats[name], (int, float)), name
    # show() also reads stats.connections (the bars) and stats.watchers (the status line).
    assert set(stats["connections"]) == {
        "idle",
        "reading_headers",
        "reading_body",
        "writing",
        "streaming",
        "pushing",
        "upgraded",
        "closing",
        "in_pool",
    }
    assert stats["connections"]["writing"] == 1
    assert isinstance(stats["watchers"], int)
    assert stats["requests"] == 1  # the page itself
