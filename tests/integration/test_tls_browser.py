"""Headless Chromium loads the demo over HTTPS: its assets, its event stream,
and the live view with its own, with the test CA's certificate trusted by its
public key's hash (``--ignore-certificate-errors-spki-list``)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.certs import Certs, make_ca, spki_hash
from loadtests.serverproc import start_reactor, stop
from tests.integration.test_browser import ACCESS_LINE, CHROMIUM, Browser

pytestmark = [
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="chromium is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_ca(tmp_path / "certs")


@pytest.fixture
def https_demo(tmp_path: Path, certs: Certs) -> Iterator[tuple[int, Path]]:
    log = tmp_path / "access.log"
    with log.open("w") as err:
        proc, (_, port) = start_reactor(
            "--certfile", str(certs.cert), "--keyfile", str(certs.key), stderr=err
        )
    try:
        yield port, log
    finally:
        stop(proc)


def test_chromium_loads_the_demo_and_the_live_view_over_https(
    https_demo: tuple[int, Path], certs: Certs, tmp_path: Path
) -> None:
    port, log = https_demo
    browser = Browser(tmp_path, flags=(f"--ignore-certificate-errors-spki-list={spki_hash(certs.cert)}",))
    try:
        browser.open(f"https://localhost:{port}/")
        accepted = browser.wait_for(
            "/^[0-9]+$/.test(document.getElementById('accepted').textContent)"
            " && document.getElementById('accepted').textContent"
        )
        assert int(accepted) >= 1
        assert browser.evaluate("location.protocol") == "https:"
        # The clock comes from the event stream /events/clock, over TLS.
        clock = browser.wait_for(
            "/^\\d\\d:\\d\\d:\\d\\d$/.test(document.getElementById('clock').textContent)"
            " && document.getElementById('clock').textContent"
        )
        assert re.fullmatch(r"\d\d:\d\d:\d\d", clock)
        assert browser.evaluate("getComputedStyle(document.querySelector('.figures')).display") == "grid"
        assert browser.evaluate("document.querySelector('img.logo').naturalWidth") == 64
        # The live view: its figures come from its own event stream.
        browser.call("Page.navigate", url=f"https://localhost:{port}/_reactor/")
        first = browser.wait_for(
            "/^[0-9,]+$/.test(document.getElementById('requests')?.textContent ?? '')"
            " && document.getElementById('requests').textContent"
        )
        deadline = time.monotonic() + 15
        while browser.evaluate("document.getElementById('requests').textContent") == first:
            assert time.monotonic() < deadline, "the live view's stream sent no second update"
            time.sleep(0.2)
        status = browser.evaluate("document.getElementById('status').textContent")
        assert re.match(r"updated .* 1 watching$", status), status
    finally:
        browser.close()
    requests = [(path, int(status)) for _, path, status, _ in ACCESS_LINE.findall(log.read_text())]
    seen = dict(requests)
    for asset in ("/", "/style.css", "/app.js", "/logo.svg", "/api/info", "/_reactor/"):
        assert seen.get(asset) in (200, 304), (asset, requests)
    # The live view's page names no icon, so Chromium asks for /favicon.ico (404 as on plain HTTP).
    assert [r for r in requests if r[1] >= 400 and r[0] != "/favicon.ico"] == [], requests
    assert "TLS handshake" not in log.read_text()  # no handshake failed
