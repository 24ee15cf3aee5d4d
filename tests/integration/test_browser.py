"""A real browser loads the demo site: headless Chromium, as Debian ships it.

The demo runs as ``python -m reactor --port 0`` with its access log on.
Chromium is driven over ``--remote-debugging-pipe`` (the DevTools protocol,
JSON over two pipes: no extra Python package), because the two one-shot modes
do not fit a page that holds an event stream open: ``--virtual-time-budget``
never runs out while a fetch is pending (and ``/events/clock`` always is), and
a plain ``--dump-dom`` races the page's first ``fetch``. Over the pipe the
test waits until the figures and the clock are filled in, then takes a
screenshot and the DOM.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.serverproc import stop
from tests.conftest import CHROMIUM_FLAGS, ReactorProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason="chromium is not installed (.ci/run installs Debian's chromium)"
)

ACCESS_LINE = re.compile(r'^\S+ - - \[[^\]]+\] "(\S+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+) ', re.MULTILINE)


class Demo(ReactorProcess):
    """``python -m reactor --port 0``: the demo, its access log in a file."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._stderr = log.open("w")
        super().__init__(stderr=self._stderr)
        self.url = f"http://{self.host}:{self.port}/"

    def info(self) -> dict[str, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        conn.request("GET", "/api/info")
        data = json.loads(conn.getresponse().read())
        conn.close()
        assert isinstance(data, dict)
        return data

    def requests(self) -> list[tuple[str, str, int]]:
        return [(m, path, int(status)) for m, path, status, _ in ACCESS_LINE.findall(self.log.read_text())]

    def close(self) -> None:
        stop(self.proc)
        self._stderr.close()


class Browser:
    """Headless Chromium, spoken to with the DevTools protocol over a pipe pair."""

    def __init__(self, tmp: Path, flags: tuple[str, ...] = ()) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4.
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_browser_r, from_browser_w)]
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        script = f'exec "$0" "$@" 3<&{theirs[0]} 4>&{theirs[1]} {theirs[0]}<&- {theirs[1]}>&-'
        self.stderr = (tmp / "chromium.log").open("w")
        self.proc = subprocess.Popen(
            [
                shutil.which("bash") or "/bin/bash",
                "-c",
                script,
                CHROMIUM,
                *CHROMIUM_FLAGS,
                "--disable-dev-shm-usage",
                f"--user-data-dir={tmp / 'profile'}",
                "--window-size=1200,900",
                "--remote-debugging-pipe",
                *flags,
                "about:blank",
            ],
            pass_fds=theirs,
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=self.stderr,
        )
        for fd in theirs:
            os.close(fd)
        self.send_fd = to_browser_w
        self.recv_fd = from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 20.0, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events in between are skipped)."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, _, self.buffer = self.buffer.partition(b"\0")
                answer = json.loads(raw)
                if answer.get("id") == self.next_id:
                    if "error" in answer:
                        raise AssertionError(f"{method}: {answer['error']}")
                    result = answer["result"]
                    assert isinstance(result, dict)
                    return result
            left = deadline - time.monotonic()
            assert left > 0, f"chromium did not answer {method}"
            ready, _, _ = select.select([self.recv_fd], [], [], left)
            if ready:
                data = os.read(self.recv_fd, 1 << 20)
                assert data, "chromium closed the pipe"
                self.buffer += data

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"never true in the page: {expression}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (AssertionError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self.send_fd, self.recv_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    process = Demo(tmp_path / "access.log")
    yield process
    process.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    instance = Browser(tmp_path)
    yield instance
    instance.close()


def test_chromium_loads_the_demo_site_over_keep_alive(demo: Demo, browser: Browser, tmp_path: Path) -> None:
    browser.open(demo.url)
    # app.js filled in the live figures from /api/info ...
    accepted = browser.wait_for(
        "/^[0-9]+$/.test(document.getElementById('accepted').textContent)"
        " && document.getElementById('accepted').textContent"
    )
    assert int(accepted) >= 1
    assert browser.evaluate("document.getElementById('status').textContent") == "live"
    assert re.fullmatch(r"\d+\.\d+\.\d+", browser.evaluate("document.getElementById('version').textContent"))
    # ... and the clock from the event stream /events/clock.
    clock = browser.wait_for(
        "/^\\d\\d:\\d\\d:\\d\\d$/.test(document.getElementById('clock').textContent)"
        " && document.getElementById('clock').textContent"
    )
    assert re.fullmatch(r"\d\d:\d\d:\d\d", clock)
    # A few refreshes, so that /api/info is fetched more than once.
    deadline = time.monotonic() + 15
    while sum(path == "/api/info" for _, path, _ in demo.requests()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    # The stylesheet applied, the image decoded.
    assert browser.evaluate("getComputedStyle(document.querySelector('.figures')).display") == "grid"
    assert browser.evaluate("document.querySelector('img.logo').naturalWidth") == 64
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    screenshot = tmp_path / "demo.png"
    screenshot.write_bytes(shot)
    dom = browser.evaluate("document.documentElement.outerHTML")
    (tmp_path / "demo.html").write_text(dom)
    assert re.search(r'<dd id="accepted">\d+</dd>', dom), dom
    assert re.search(r'<dd id="clock">\d\d:\d\d:\d\d</dd>', dom), dom
    browser_connections = demo.info()["accepted"] - 1  # less the one info() just made
    browser.close()

    assert screenshot.stat().st_size > 10_000
    assert shot.startswith(b"\x89PNG\r\n\x1a\n")

    requests = demo.requests()
    assert requests, demo.log.read_text()
    seen = {path: status for _, path, status in requests}
    for asset in ("/", "/style.css", "/app.js", "/logo.svg", "/api/info"):
        assert seen.get(asset) in (200, 304), (asset, requests)
    assert [r for r in requests if r[2] >= 400] == [], requests
    browser_requests = len(requests) - 1  # less info()
    assert browser_requests >= 7, requests
    # Keep-alive: the browser sent more requests than it opened connections.
    assert browser_connections < browser_requests, (browser_connections, requests)


def test_one_shot_screenshot_loads_every_asset(demo: Demo, tmp_path: Path) -> None:
    """The plain command line: ``chromium --headless --screenshot URL``."""
    screenshot = tmp_path / "demo.png"
    result = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1200,900",
            demo.url,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert screenshot.stat().st_size > 10_000
    requests = demo.requests()
    statuses = {path: status for _, path, status in requests}
    for asset in ("/", "/style.css", "/app.js", "/logo.svg"):
        assert statuses.get(asset) in (200, 304), (asset, requests)
    assert [r for r in requests if r[2] >= 400] == [], requests
    assert demo.info()["accepted"] - 1 < len(requests), requests


def test_the_site_is_package_data() -> None:
    from reactor.demo import SITE

    names = sorted(os.listdir(SITE))
    assert names == ["app.js", "chat.html", "chat.js", "index.html", "logo.svg", "style.css"]
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^reactor = \[[^\]]*"site/\*"', text, re.MULTILINE), "site/* is not package data"
    page = (Path(SITE) / "index.html").read_text()
    # No external assets: every src and href is local.
    for url in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert url.startswith("/") and not url.startswith("//"), url


def _chat_lines(browser: Browser) -> list[str]:
    lines = browser.evaluate("[...document.querySelectorAll('#log li')].map((li) => li.textContent)")
    assert isinstance(lines, list)
    return lines


def _say(browser: Browser, text: str) -> None:
    browser.evaluate(
        f"document.getElementById('text').value = {json.dumps(text)};"
        "document.getElementById('say').requestSubmit(); true"
    )


def test_the_chat_page_over_a_websocket_and_over_sse(demo: Demo, browser: Browser) -> None:
    from websockets.sync.client import connect as ws_connect

    # Two observers outside the browser: an event stream and a WebSocket.
    sse = http.client.HTTPConnection(*demo.address, timeout=10)
    sse.request("GET", "/events/chat")
    stream = sse.getresponse()
    assert stream.status == 200
    with ws_connect(f"ws://{demo.address[0]}:{demo.address[1]}/ws/chat", open_timeout=10) as observer:
        browser.open(f"{demo.url}chat.html")
        browser.wait_for("document.getElementById('status').textContent === 'connected'")
        assert browser.evaluate("document.getElementById('transport').textContent") == "a WebSocket"
        # Posted over HTTP: reaches the page's WebSocket.
        post = http.client.HTTPConnection(*demo.address, timeout=10)
        post.request("POST", "/chat", body=b"posted over HTTP")
        assert post.getresponse().status == 200
        browser.wait_for(
            "[...document.querySelectorAll('#log li')].some((li) => li.textContent === 'posted over HTTP')"
        )
        # Said on the page, over its WebSocket: reaches the event stream and the other WebSocket.
        _say(browser, "said over a WebSocket")
        seen = b""
        while b"data: said over a WebSocket\n" not in seen:
            seen += stream.read1(65536)
        assert observer.recv(10) == "posted over HTTP"
        assert observer.recv(10) == "said over a WebSocket"
        # The same page over Server-Sent Events and POST /chat.
        browser.open(f"{demo.url}chat.html?transport=sse")
        browser.wait_for("document.getElementById('status').textContent === 'connected'")
        _say(browser, "said over SSE")
        assert observer.recv(10) == "said over SSE"
        browser.wait_for(
            "[...document.querySelectorAll('#log li')].some((li) => li.textContent === 'said over SSE')"
        )
    sse.close()
    assert not [r for r in demo.requests() if r[2] >= 400], demo.requests()
    assert ("GET", "/ws/chat", 101) in demo.requests()
