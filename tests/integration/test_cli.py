"""The command line in a real subprocess: the demo, --app, --port 0, signals."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Process:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reactor", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://([\d.]+):(\d+)/", line)
        assert match, f"no address printed: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}"
        self.host, self.port = match.group(1), int(match.group(2))

    def get(self, path: str) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err


@pytest.fixture
def demo() -> Iterator[Process]:
    process = Process()
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def test_demo_serves_a_page_and_json_then_stops_cleanly_on_sigint(demo: Process) -> None:
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


def test_sigterm_stops_cleanly(demo: Process) -> None:
    assert demo.get("/api/time")[0] == 200
    code, _ = demo.stop(signal.SIGTERM)
    assert code == 0


def test_app_flag_and_no_access_log() -> None:
    process = Process("--app", "loadtests.hello:app", "--no-access-log")
    try:
        status, body, response = process.get("/")
        assert (status, body) == (200, b"Hello, World!")
        assert response.getheader("Content-Type") == "text/plain"
        code, err = process.stop()
        assert code == 0
        assert "GET / HTTP/1.1" not in err
    finally:
        if process.proc.poll() is None:
            process.proc.kill()


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


def test_port_in_use_is_a_clear_error(demo: Process) -> None:
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
