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


# -- bad flags: argparse's one-line error and status 2, never a traceback --------


def run_reactor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reactor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


BAD_FLAGS = [
    (["--port", "99999"], "argument --port: '99999' is not a port (0 to 65535)"),
    (["--port", "65536"], "argument --port: '65536' is not a port (0 to 65535)"),
    (["--port", "-1"], "argument --port: '-1' is not a port (0 to 65535)"),
    (["--port", "http"], "argument --port: 'http' is not a whole number"),
    (["--header-timeout", "0"], "argument --header-timeout: '0' is not a finite number above 0"),
    (["--body-timeout", "-1"], "argument --body-timeout: '-1' is not a finite number above 0"),
    (
        ["--keepalive-timeout", "nan"],
        "argument --keepalive-timeout: 'nan' is not a finite number above 0",
    ),
    (["--write-timeout", "inf"], "argument --write-timeout: 'inf' is not a finite number above 0"),
    (["--shutdown-timeout", "soon"], "argument --shutdown-timeout: 'soon' is not a number"),
    (["--watchdog", "-0.1"], "argument --watchdog: '-0.1' is not a finite number above 0"),
    (["--max-body", "1MB"], "argument --max-body: '1MB' is not a whole number"),
    (["--max-body", "0"], "argument --max-body: '0' is not above 0"),
    (["--max-connections", "-5"], "argument --max-connections: '-5' is not above 0"),
    (["--max-headers", "1.5"], "argument --max-headers: '1.5' is not a whole number"),
    (["--backlog", "-1"], "argument --backlog: '-1' is not above 0"),
    (["--listing"], "argument --listing: only with --static"),
    (["--cache-control", "public"], "argument --cache-control: only with --static"),
    (["--app", "loadtests.hello:app", "--listing"], "argument --listing: only with --static"),
]


@pytest.mark.parametrize(("args", "error"), BAD_FLAGS, ids=[" ".join(args) for args, _ in BAD_FLAGS])
def test_bad_flag_is_argparses_one_line_error_and_status_2(args: list[str], error: str) -> None:
    result = run_reactor(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # it never got as far as serving
    usage, message = result.stderr.splitlines()  # the short usage line, then the error
    assert usage.startswith("usage: reactor ")
    assert message == f"reactor: error: {error}"


def test_every_numeric_flag_refuses_zero_and_negatives(capsys: pytest.CaptureFixture[str]) -> None:
    # In-process, over the flag table, so that a flag added to it is covered too.
    from reactor.cli import _CONFIG_FLAGS, parse_args

    assert _CONFIG_FLAGS
    for flag, _, _, _ in _CONFIG_FLAGS:
        for value in ("0", "-1"):
            with pytest.raises(SystemExit) as exited:
                parse_args([flag, value])
            assert exited.value.code == 2
            assert f"reactor: error: argument {flag}: '{value}' is not " in capsys.readouterr().err
        parse_args([flag, "7"])  # a positive value is taken


def test_edge_values_are_taken() -> None:
    from reactor.cli import parse_args

    assert parse_args(["--port", "65535"]).config.port == 65535
    assert parse_args(["--port", "0"]).config.port == 0
    args = parse_args(["--static", ".", "--listing", "--cache-control", ""])
    assert (args.listing, args.cache_control) == (True, "")
    assert parse_args(["--static", "."]).cache_control == "no-cache"
    assert parse_args(["--header-timeout", "0.25"]).config.header_timeout_s == 0.25


def test_static_with_listing_and_cache_control_serves(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    process = ReactorProcess("--static", str(tmp_path), "--listing", "--cache-control", "max-age=60")
    try:
        status, _, response = process.get("/a.txt")
        assert (status, response.getheader("Cache-Control")) == (200, "max-age=60")
        status, body, _ = process.get("/")
        assert status == 200 and b"a.txt" in body  # the listing
    finally:
        process.kill()
