"""The access log of a real ``python -m reactor``: every atom of
``--access-log-format``, ``--access-log-json``, and refusals' request lines."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ReactorProcess, read_until_close

ROOT = Path(__file__).resolve().parents[2]

EVERY_ATOM = "|".join(
    f"%({atom})s"
    for atom in (
        "h",
        "l",
        "u",
        "t",
        "r",
        "m",
        "U",
        "q",
        "H",
        "s",
        "B",
        "b",
        "f",
        "a",
        "T",
        "M",
        "D",
        "L",
        "p",
    )
)


def _exchange(process: ReactorProcess, data: bytes) -> bytes:
    with socket.create_connection(process.address, timeout=5) as sock:
        sock.sendall(data)
        return read_until_close(sock)


def _log_lines(process: ReactorProcess, *requests: bytes) -> tuple[list[bytes], list[str]]:
    """Send each request on its own connection, stop the server: the responses and its access log lines."""
    try:
        responses = [_exchange(process, request) for request in requests]
        code, err = process.stop(signal.SIGTERM)
        assert code == 0, err
    finally:
        process.kill()
    lines = [line for line in err.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]
    return responses, lines


def test_every_atom_has_gunicorns_meaning() -> None:
    process = ReactorProcess("--app", "loadtests.hello:app", "--access-log-format", EVERY_ATOM)
    pid = process.proc.pid
    request = (
        b"GET /?x=1&y=%20 HTTP/1.1\r\nHost: a\r\nReferer: http://example.test/from\r\n"
        b"User-Agent: probe/1.0\r\nAuthorization: Basic dXNlcjpwYXNz\r\nConnection: close\r\n\r\n"
    )
    missing = b"GET /no%20such?q HTTP/1.0\r\n\r\n"
    responses, lines = _log_lines(process, request, missing)
    assert responses[0].startswith(b"HTTP/1.1 200 ")
    assert responses[1].startswith(b"HTTP/1.1 404 ")
    assert len(lines) == 2, lines
    fields = lines[0].split("|")
    h, ident, u, t, r, m, path, q, protocol, s, big_b, b, f, a, seconds, ms, us, decimal, p = fields
    assert (h, ident, u) == ("127.0.0.1", "-", "user")
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\]", t)
    assert (r, m, path, q, protocol) == ("GET /?x=1&y=%20 HTTP/1.1", "GET", "/", "x=1&y=%20", "HTTP/1.1")
    assert (s, big_b, b) == ("200", "13", "13")  # Hello, World!
    assert (f, a) == ("http://example.test/from", "probe/1.0")
    assert p == f"<{pid}>"
    # Durations: one request on loopback, so under 5 s, and each atom the same time in its unit.
    assert seconds == "0"
    assert 0 <= int(us) < 5_000_000
    assert int(ms) == int(us) // 1000 or abs(int(ms) - int(us) / 1000) <= 1
    assert re.fullmatch(r"0\.\d{6}", decimal) and abs(float(decimal) * 1e6 - int(us)) <= 1
    fields = lines[1].split("|")
    assert fields[4:10] == ["GET /no%20such?q HTTP/1.0", "GET", "/no such", "q", "HTTP/1.0", "404"]
    assert fields[2] == fields[12] == fields[13] == "-"  # no user, referer, user agent


def test_a_request_header_atom_and_literal_percent() -> None:
    process = ReactorProcess(
        "--app",
        "loadtests.hello:app",
        "--access-log-format",
        "%(s)s %({X-Request-Id}i)s %({x-absent}i)s 100%%",
    )
    _, lines = _log_lines(
        process, b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc-1\r\nConnection: close\r\n\r\n"
    )
    assert lines == ["200 abc-1 - 100%"]


def test_client_chosen_values_are_escaped() -> None:
    process = ReactorProcess(
        "--app", "loadtests.hello:app", "--access-log-format", '"%(a)s" "%({X-Note}i)s" %(s)s'
    )
    request = (
        b'GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: a"b\\c\x85d\r\n'
        b'X-Note: x" 200 "forged\r\nConnection: close\r\n\r\n'
    )
    _, lines = _log_lines(process, request)
    assert lines == ['"a\\"b\\\\c\\x85d" "x\\" 200 \\"forged" 200']


def test_json_lines_parse_and_keep_every_byte() -> None:
    process = ReactorProcess("--app", "loadtests.hello:app", "--access-log-json")
    request = b'GET /?a=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: q"\x85\r\nConnection: close\r\n\r\n'
    refused = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"  # no Host: 400
    _, lines = _log_lines(process, request, refused)
    assert len(lines) == 2, lines
    records = [json.loads(line) for line in lines]
    first, second = records
    assert first["remote_addr"] == "127.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["time"])
    assert first["request"] == "GET /?a=1 HTTP/1.1"
    assert (first["method"], first["path"], first["query"], first["protocol"]) == (
        "GET",
        "/",
        "a=1",
        "HTTP/1.1",
    )
    assert (first["status"], first["bytes"]) == (200, 13)
    assert first["referer"] == "-"
    assert first["user_agent"] == 'q"\x85'  # decoded back exactly; on the line it is escaped
    assert '\\"\\u0085' in lines[0] and "\x85" not in lines[0]
    assert isinstance(first["duration_us"], int) and 0 <= first["duration_us"] < 5_000_000
    assert second["status"] == 400 and second["request"] == "POST / HTTP/1.1"


def test_refusals_log_the_request_line_once_it_was_read() -> None:
    process = ReactorProcess("--app", "loadtests.hello:app", "--max-body", "10")
    too_large = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    no_host = b"GET /x?y HTTP/1.1\r\nUser-Agent: t\r\n\r\n"
    not_a_request = b"\x16\x03\x01\x00"  # nothing that is a request line: still "-"
    responses, lines = _log_lines(process, too_large, no_host, not_a_request)
    assert [response[:12] for response in responses] == [b"HTTP/1.1 413", b"HTTP/1.1 400", b"HTTP/1.1 400"]
    assert len(lines) == 3, lines
    assert '"POST /echo HTTP/1.1" 413 ' in lines[0]
    assert '"GET /x?y HTTP/1.1" 400 ' in lines[1]
    assert '"-" 400 ' in lines[2]


def test_the_default_line_is_unchanged() -> None:
    process = ReactorProcess("--app", "loadtests.hello:app")
    _, lines = _log_lines(process, b"GET /?a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert len(lines) == 1
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
        r'"GET /\?a HTTP/1\.1" 200 13 \d+\.\d\dms',
        lines[0],
    ), lines[0]


def test_a_bad_format_is_refused_at_start() -> None:
    for fmt, message in (
        ("%(Z)s", "unknown access log atom %(Z)s"),
        ("50% %(s)s", "a lone %"),
        ("plain", "no atom"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "reactor", "--port", "0", "--access-log-format", fmt],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert message in result.stderr
