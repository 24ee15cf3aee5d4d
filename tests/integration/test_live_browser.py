"""The live view in a real browser: headless Chromium watches /_reactor/ while the test drives traffic.

The demo (``python -m reactor --port 0``) mounts the live view at ``/_reactor/``. Chromium runs
headless with ``--remote-debugging-port=0``; the port it picked is read from ``DevToolsActivePort``
in its profile directory, and the page target is driven over the DevTools protocol's WebSocket
with the ``websocket-client`` package. One test reads the figures the page shows (they arrive over
Server-Sent Events once a second), sends 200 requests, and checks that the page's request count
went up by at least that much. The other drives a steady load and checks that the requests chart's
pixels change between samples, that the table lists the test's own connections in their states
with their timers, and takes a screenshot under load; ``REACTOR_SCREENSHOT=1`` also writes it to
``docs/img/live-view.png`` (the picture docs/architecture.md shows)::

    REACTOR_SCREENSHOT=1 .venv/bin/python -m pytest tests/integration/test_live_browser.py
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.serverproc import stop
from tests.conftest import CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (Debian's chromium package)"
)


def _stop(proc: subprocess.Popen[Any], group: bool = False) -> None:
    """SIGTERM ``proc`` (and, with ``group``, the process group it leads), then SIGKILL if need be."""
    stop(proc)
    if group:
        # Chromium's helpers (zygote, renderer, GPU) are in the session we started it in.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class DevTools:
    """One page target, spoken to with the DevTools protocol over its WebSocket."""

    def __init__(self, url: str) -> None:
        websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")
        # suppress_origin: Chromium refuses DevTools WebSockets that carry an Origin it was not
        # told to allow (--remote-allow-origins).
        self.ws = websocket.create_connection(url, timeout=10, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


def _number(text: Any) -> float | None:
    """The number the page shows ("1,234" or "56.5"), or None while it shows "-"."""
    if not isinstance(text, str) or not re.fullmatch(r"\d[\d,]*(\.\d+)?", text):
        return None
    return float(text.replace(",", ""))


def _wait_for(read: Callable[[], Any], ready: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ready(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        time.sleep(0.1)


@contextlib.contextmanager
def _watching(tmp_path: Path, width: int = 1000, height: int = 700) -> Iterator[tuple[DevTools, int]]:
    """The demo on a free port, and headless Chromium showing its /_reactor/: (the page, the port)."""
    pytest.importorskip("websocket", reason="websocket-client is not installed")
    server_log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "reactor", "--port", "0", "--no-access-log"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=server_log,
        text=True,
    )
    browser: subprocess.Popen[bytes] | None = None
    devtools: DevTools | None = None
    try:
        assert server.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", server.stdout.readline())
        assert match, (tmp_path / "server.log").read_text()
        port = int(match.group(1))

        profile = tmp_path / "profile"
        browser = subprocess.Popen(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--window-size={width},{height}",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "chromium.log").open("w"),
            start_new_session=True,
        )
        active = profile / "DevToolsActivePort"
        _wait_for(
            lambda: active.exists() and active.read_text().count("\n") >= 1,
            bool,
            15,
            "Chromium wrote no DevToolsActivePort",
        )
        devtools_port = int(active.read_text().splitlines()[0])
        listing = http.client.HTTPConnection("127.0.0.1", devtools_port, timeout=5)
        listing.request("GET", "/json/list")
        targets = json.loads(listing.getresponse().read())
        listing.close()
        page = next(target for target in targets if target["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])

        devtools.call("Page.enable")
        devtools.call("Page.navigate", url=f"http://127.0.0.1:{port}/_reactor/")
        yield devtools, port
    finally:
        if devtools is not None:
            devtools.close()
        if browser is not None:
            _stop(browser, group=True)
        _stop(server)
        server_log.close()
    assert server.returncode == 0, (tmp_path / "server.log").read_text()


def test_live_view_counts_requests_in_a_real_browser(tmp_path: Path) -> None:
    with _watching(tmp_path) as (devtools, port):

        def requests_shown() -> float | None:
            return _number(devtools.evaluate("document.getElementById('requests')?.textContent ?? null"))

        # The first stats event is sent as soon as the page subscribes.
        before = _wait_for(requests_shown, lambda n: n is not None, 10, "#requests never became a number")

        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(200):
            client.request("GET", "/api/time")
            response = client.getresponse()
            assert response.status == 200 and "unix" in json.loads(response.read())
        client.close()

        # The page is updated once a second: within ~2.5 s it shows the 200 requests.
        time.sleep(2.5)
        after = _wait_for(
            requests_shown, lambda n: n is not None and n >= before + 200, 3, "#requests did not count them"
        )
        assert after >= before + 200

        iterations = _number(devtools.evaluate("document.getElementById('iterations_per_s').textContent"))
        assert iterations is not None and iterations > 0
        rows = devtools.evaluate(
            "Array.from(document.querySelectorAll('#states .row'), row => row.textContent)"
        )
        # Each row is the state's name as State's value has it, then its count.
        shown = {name.strip(): int(count) for name, count in (row.rsplit(maxsplit=1) for row in rows)}
        assert set(shown) == {
            "idle",
            "reading headers",
            "reading body",
            "writing",
            "streaming",
            "pushing",
            "upgraded",
            "closing",
            "in pool",
        }, rows
        assert shown["pushing"] >= 1, rows  # the page's own event stream is a push stream
        status = devtools.evaluate("document.getElementById('status').textContent")
        assert re.match(r"updated .* 1 watching$", status), status

        shot = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        assert shot.startswith(PNG_SIGNATURE) and len(shot) > 1000
        (tmp_path / "live.png").write_bytes(shot)


#: Where the screenshot the docs show is written, when REACTOR_SCREENSHOT=1 asks for it.
SCREENSHOT = ROOT / "docs" / "img" / "live-view.png"


def _traffic(port: int, stop: threading.Event, counted: list[int]) -> None:
    """Keep-alive GETs, a small answer and a larger one in turn, until ``stop``."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        while not stop.is_set():
            for path in ("/api/time", "/"):
                client.request("GET", path)
                response = client.getresponse()
                assert response.status == 200
                response.read()
                counted[0] += 1
            time.sleep(0.002)  # a steady load, not one that starves the loop's other work
    finally:
        client.close()


def _canvas(devtools: DevTools, name: str) -> str:
    value = devtools.evaluate(f"document.getElementById('chart-{name}').toDataURL('image/png')")
    assert isinstance(value, str) and value.startswith("data:image/png;base64,")
    return value


def _samples(devtools: DevTools) -> int:
    return int(devtools.evaluate("typeof samples === 'undefined' ? 0 : samples.length"))


def test_live_view_charts_and_table_follow_traffic(tmp_path: Path) -> None:
    with _watching(tmp_path, 1280, 1180) as (devtools, port):
        _wait_for(lambda: _samples(devtools), lambda n: n >= 1, 10, "no stats event reached the page")

        # The test's own connections, as the table should list them: kept alive and idle, or
        # half way through a request head.
        idle = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /api/time HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"}" not in answer:
                piece = sock.recv(4096)
                assert piece, answer
                answer += piece
            idle.append(sock)
        reading = socket.create_connection(("127.0.0.1", port), timeout=5)
        reading.sendall(b"GET /api/time HTTP/1.1\r\nHost:")

        stop = threading.Event()
        counted = [0]
        driver = threading.Thread(target=_traffic, args=(port, stop, counted), daemon=True)
        driver.start()
        try:
            # Two samples apart, the requests chart is drawn differently: it moves with the load.
            start = _samples(devtools)
            _wait_for(lambda: _samples(devtools), lambda n: n >= start + 2, 5, "the page got no new samples")
            first = _canvas(devtools, "requests")
            seen = _samples(devtools)
            _wait_for(lambda: _samples(devtools), lambda n: n >= seen + 2, 5, "the page got no new samples")
            assert _canvas(devtools, "requests") != first, "the requests/s chart did not change"
            assert counted[0] > 0
            rates = devtools.evaluate("samples.slice(-3).map(s => s.requests_per_s)")
            assert max(rates) > 0, rates

            # The table lists the test's own connections, each in its state, with its timer.
            rows = devtools.evaluate(
                "Array.from(document.querySelectorAll('#connections tbody tr'),"
                " row => Array.from(row.cells, cell => cell.textContent))"
            )
            by_peer = {cells[1]: cells for cells in rows}
            for sock in idle:
                cells = by_peer[f"127.0.0.1:{sock.getsockname()[1]}"]
                assert cells[2] == "idle" and cells[6].startswith("keep-alive in "), cells
            cells = by_peer[f"127.0.0.1:{reading.getsockname()[1]}"]
            assert cells[2] == "reading headers" and cells[6].startswith("header in "), cells
            assert re.fullmatch(r"\d+", cells[0]), cells  # its fd
            more = devtools.evaluate("document.getElementById('more').textContent")
            assert re.fullmatch(r"\d+ open", more), more  # fewer than 50: no "more"
            heap = devtools.evaluate("document.getElementById('heap').textContent")
            assert re.match(r"\d+ entries, \d+ armed", heap), heap
            deadlines = devtools.evaluate(
                "Array.from(document.querySelectorAll('#deadlines tbody tr'),"
                " row => row.cells[0].textContent)"
            )
            assert "lag probe" in deadlines and any(d.startswith("keep-alive timeout") for d in deadlines)

            # Let the charts fill a little, then keep a picture of the page under load.
            _wait_for(lambda: _samples(devtools), lambda n: n >= start + 8, 12, "the page got no new samples")
            shot = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        finally:
            stop.set()
            driver.join(10)
            reading.close()
            for sock in idle:
                sock.close()
        assert shot.startswith(PNG_SIGNATURE) and len(shot) > 10000
        (tmp_path / "live-view.png").write_bytes(shot)
        if os.environ.get("REACTOR_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.write_bytes(shot)
