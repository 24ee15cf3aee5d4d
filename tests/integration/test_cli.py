"""The command line in a real subprocess: the demo, --app, --port 0, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ReactorProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo() -> Iterator[ReactorProcess]:
    process = ReactorProcess()
    yield process
    process.kill()


def test_demo_serves_a_page_and_json_then_stops_cleanly_on_sigint(demo: ReactorProcess) -> None:
    status, body, response = demo.get("/")
    assert status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"<h1>reactor" in body
    status, body, _ = demo.get("/api/info")
    assert status == 200 and b'"server":"reactor"' in body
    code, err = demo.stop(signal.SIGINT)
    assert code == 0
    assert '"GET / HTTP/1.1" 200 ' in err
    assert "shutting down" in err


def test_sigterm_stops_cleanly(demo: ReactorProcess) -> None:
    assert demo.get("/api/time")[0] == 200
    code, _ = demo.stop(signal.SIGTERM)
    assert code == 0


def test_app_flag_and_no_access_log() -> None:
    process = ReactorProcess("--app", "loadtests.hello:app", "--no-access-log")
    try:
        status, body, response = process.get("/")
        assert (status, body) == (200, b"Hello, World!")
        assert response.getheader("Content-Type") == "text/plain"
        code, err = process.stop()
        assert code == 0
        assert "GET / HTTP/1.1" not in err
    finally:
        process.kill()


def test_console_script_and_bad_app() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "--app", "no.such.module:app", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode != 0
    assert "cannot import 'no.such.module'" in result.stderr


def test_port_in_use_is_a_clear_error(demo: ReactorProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "--port", str(demo.port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
