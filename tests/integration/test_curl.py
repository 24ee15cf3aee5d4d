"""curl as the client, where installed (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import Running

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, check=True
    )


def test_curl_get_and_keep_alive_reuse(server: Running) -> None:
    base = f"http://{server.host}:{server.port}"
    result = curl("-v", f"{base}/", f"{base}/items/3")
    assert result.stdout.startswith("Hello, World!")
    assert '"id":"3"' in result.stdout
    assert "Re-using existing connection" in result.stderr or "Reusing existing connection" in result.stderr
    assert server.server.accepted == 1


def test_curl_post_and_head(server: Running) -> None:
    base = f"http://{server.host}:{server.port}"
    assert curl("--data-binary", "payload", f"{base}/echo").stdout == "payload"
    head = curl("-I", f"{base}/").stdout
    assert head.startswith("HTTP/1.1 200 OK")
    assert "Content-Length: 13" in head


def test_curl_expect_continue_and_http10(server: Running) -> None:
    base = f"http://{server.host}:{server.port}"
    result = curl("-v", "-H", "Expect: 100-continue", "--data-binary", "x" * 2000, f"{base}/echo")
    assert result.stdout == "x" * 2000
    assert "HTTP/1.1 100 Continue" in result.stderr
    result = curl("-v", "--http1.0", f"{base}/")
    assert result.stdout == "Hello, World!"
    assert "Connection: close" in result.stderr
