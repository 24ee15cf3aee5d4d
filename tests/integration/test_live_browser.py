"""The live view in a real browser: headless Chromium watches /_reactor/ while the test drives traffic.

The demo (``python -m reactor --port 0``) mounts the live view at ``/_reactor/``. Chromium runs
headless with ``--remote-debugging-port=0``; the port it picked is read from ``DevToolsActivePort``
in its profile directory, and the page target is driven over the DevTools protocol's WebSocket
with the ``websocket-client`` package. The test reads the figures the page shows (they arrive over
Server-Sent Events once a second), sends 200 requests, and checks that the page's request count
went up by at least that much.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


def test_live_view_counts_requests_in_a_real_browser(tmp_path: Path) -> None:
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
                "--window-size=1000,700",
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
            "closing",
        }, rows
        assert shown["pushing"] >= 1, rows  # the page's own event stream is a push stream
        status = devtools.evaluate("document.getElementById('status').textContent")
        assert re.match(r"updated .* 1 watching$", status), status

        shot = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        assert shot.startswith(PNG_SIGNATURE) and len(shot) > 1000
        (tmp_path / "live.png").write_bytes(shot)
    finally:
        if devtools is not None:
            devtools.close()
        if browser is not None:
            _stop(browser, group=True)
        _stop(server)
        server_log.close()
    assert server.returncode == 0, (tmp_path / "server.log").read_text()
