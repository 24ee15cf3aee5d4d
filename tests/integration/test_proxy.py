"""Behind a proxy, over real sockets: forwarding headers and the PROXY protocol.

The default trust list is 127.0.0.1, so a client that binds 127.0.0.2 before
connecting is an untrusted peer on the same machine.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reactor import App, Request
from tests.conftest import Running, recv_response

ROOT = Path(__file__).resolve().parents[2]
GET = b"GET /who HTTP/1.1\r\nHost: direct\r\n"


def _app() -> App:
    app = App()

    @app.route("/who")
    def who(request: Request) -> dict[str, object]:
        assert request.client is not None
        return {"client": list(request.client), "scheme": request.scheme, "host": request.host}

    return app


def _ask(
    address: tuple[str, int], data: bytes, source: str = "127.0.0.1", prefix: bytes = b""
) -> dict[str, object]:
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(address)
        sock.sendall(prefix + data)
        response = recv_response(sock)
    assert response.status == 200, response
    result: dict[str, object] = json.loads(response.body)
    return result


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "reactor.access"]


def _closed(sock: socket.socket) -> bytes:
    """What the server sends before it closes (a reset counts as closed)."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


FORWARDED = (
    GET
    + b"X-Forwarded-For: 1.2.3.4, 203.0.113.7\r\n"
    + b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n\r\n"
)


def test_a_trusted_proxy_names_the_client(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.access")
    running = serve(_app())
    seen = _ask(running.address, FORWARDED)
    # The forged first hop is skipped: 203.0.113.7 is what the trusted proxy saw.
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "https", "host": "shop.example"}
    _wait_for(lambda: any("GET /who" in line for line in _access_lines(caplog)))
    assert _access_lines(caplog)[-1].startswith("203.0.113.7 ")


def test_spoofed_headers_from_an_untrusted_peer_are_ignored(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.access")
    running = serve(_app())  # trusts 127.0.0.1 only
    spoof = GET + b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nForwarded: for=5.6.7.8\r\n\r\n"
    seen = _ask(running.address, spoof, source="127.0.0.2")
    assert seen["client"][0] == "127.0.0.2"  # type: ignore[index]
    assert (seen["scheme"], seen["host"]) == ("http", "direct")
    _wait_for(lambda: any("GET /who" in line for line in _access_lines(caplog)))
    line = _access_lines(caplog)[-1]
    assert line.startswith("127.0.0.2 ") and "1.2.3.4" not in line and "5.6.7.8" not in line


def test_forwarded_header_and_networks(serve: Callable[..., Running]) -> None:
    running = serve(_app(), forwarded_allow_ips="127.0.0.0/30, ::1")
    data = GET + b'Forwarded: for="[2001:db8::1]:4711";proto=https;host=a.example, for=127.0.0.3\r\n\r\n'
    seen = _ask(running.address, data, source="127.0.0.2")
    assert seen == {"client": ["2001:db8::1", 4711], "scheme": "https", "host": "a.example"}
    # Keep-alive: each request is read on its own (a proxy reuses its connection).
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.connect(running.address)
        for hop in (b"198.51.100.1", b"198.51.100.2"):
            sock.sendall(GET + b"X-Forwarded-For: " + hop + b"\r\n\r\n")
            assert json.loads(recv_response(sock).body)["client"] == [hop.decode(), 0]
        sock.sendall(GET + b"\r\n")
        assert json.loads(recv_response(sock).body)["client"][0] == "127.0.0.1"


# -- the PROXY protocol -----------------------------------------------------------


def _v2(source: str, port: int, command: int = 1) -> bytes:
    block = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 8000)
    block += b"\x04\x00\x02ab"  # a NOOP TLV, skipped
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(block)) + block


def test_proxy_v1_then_a_request(serve: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "reactor.access")
    running = serve(_app(), proxy_protocol=True)
    seen = _ask(running.address, GET + b"\r\n", prefix=b"PROXY TCP4 192.0.2.10 127.0.0.1 51000 8000\r\n")
    assert seen["client"] == ["192.0.2.10", 51000]
    _wait_for(lambda: any("GET /who" in line for line in _access_lines(caplog)))
    assert _access_lines(caplog)[-1].startswith("192.0.2.10 ")


def test_the_proxy_header_names_the_client_of_every_request_on_its_connection(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    running = serve(_app(), proxy_protocol=True)
    with socket.create_connection(running.address, timeout=5) as sock:
        sock.sendall(b"PROXY TCP6 2001:db8::5 ::1 6000 8000\r\n" + GET + b"\r\n")
        assert json.loads(recv_response(sock).body)["client"] == ["2001:db8::5", 6000]
        sock.sendall(GET + b"\r\n")
        assert json.loads(recv_response(sock).body)["client"] == ["2001:db8::5", 6000]
        sock.sendall(b"BAD\r\n\r\n")
        assert recv_response(sock).status == 400
    assert any(r.getMessage().startswith("400 from 2001:db8::5") for r in caplog.records)


def test_a_bad_request_after_a_forwarded_one_logs_the_peer(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    running = serve(_app())
    with socket.create_connection(running.address, timeout=5) as sock:
        sock.sendall(GET + b"X-Forwarded-For: 198.51.100.9\r\n\r\n")
        assert json.loads(recv_response(sock).body)["client"] == ["198.51.100.9", 0]
        sock.sendall(b"BAD\r\n\r\n")
        assert recv_response(sock).status == 400
    _wait_for(lambda: any(r.getMessage().startswith("400 from ") for r in caplog.records))
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("400 from ")]
    assert line.startswith("400 from 127.0.0.1:")


def test_proxy_header_and_request_byte_by_byte(serve: Callable[..., Running]) -> None:
    running = serve(_app(), proxy_protocol=True)
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(running.address)
        for byte in _v2("192.0.2.11", 52000) + GET + b"\r\n":
            sock.send(bytes([byte]))
            time.sleep(0.0005)
        assert json.loads(recv_response(sock).body)["client"] == ["192.0.2.11", 52000]


def test_proxy_v2_in_the_same_segment_as_the_request(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.access")
    running = serve(_app(), proxy_protocol=True)
    seen = _ask(running.address, GET + b"\r\n", prefix=_v2("198.51.100.20", 40001))
    assert seen["client"] == ["198.51.100.20", 40001]
    _wait_for(lambda: any("GET /who" in line for line in _access_lines(caplog)))
    assert _access_lines(caplog)[-1].startswith("198.51.100.20 ")
    # LOCAL (a health check) keeps the socket's own address.
    seen = _ask(running.address, GET + b"\r\n", prefix=_v2("198.51.100.20", 40001, command=0))
    assert seen["client"][0] == "127.0.0.1"  # type: ignore[index]


def test_an_untrusted_peers_proxy_header_is_refused(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    running = serve(_app(), proxy_protocol=True)
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.2", 0))
        sock.connect(running.address)
        try:
            sock.sendall(b"PROXY TCP4 192.0.2.10 127.0.0.1 51000 8000\r\n" + GET + b"\r\n")
        except OSError:
            pass  # closed already
        assert _closed(sock) == b""
    refused = [r.getMessage() for r in caplog.records if "PROXY header refused" in r.getMessage()]
    assert refused == ["PROXY header refused: 127.0.0.2 is not in forwarded_allow_ips"]
    # The server goes on serving a trusted proxy.
    assert _ask(running.address, GET + b"\r\n", prefix=_v2("192.0.2.1", 1))["client"] == ["192.0.2.1", 1]


def test_a_request_without_the_proxy_header_is_closed(
    serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    running = serve(_app(), proxy_protocol=True)
    with socket.create_connection(running.address, timeout=5) as sock:
        sock.sendall(GET + b"X-Evil: \x1b\r\n\r\n")
        assert _closed(sock) == b""
    assert any(
        "bad PROXY header from 127.0.0.1: not a PROXY header" in r.getMessage() for r in caplog.records
    )


def test_the_header_timeout_covers_the_proxy_header(serve: Callable[..., Running]) -> None:
    running = serve(_app(), proxy_protocol=True, header_timeout_s=0.3)
    with socket.create_connection(running.address, timeout=5) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.10 ")
        started = time.monotonic()
        assert _closed(sock) == b""
        assert time.monotonic() - started < 4


# -- the command line, and real haproxy --------------------------------------------


def _start(*args: str, log: Path) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    host, _, port = banner.split("http://", 1)[1].split("/", 1)[0].rpartition(":")
    return proc, (host, int(port))


def _end(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_cli_flags(tmp_path: Path) -> None:
    log = tmp_path / "reactor.log"
    proc, address = _start("--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.2", "--proxy-protocol", log=log)
    try:
        with socket.socket() as sock:
            sock.settimeout(5)
            sock.bind(("127.0.0.2", 0))
            sock.connect(address)
            sock.sendall(b"PROXY TCP4 192.0.2.99 127.0.0.1 5 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert recv_response(sock).status == 200
        with socket.create_connection(address, timeout=5) as sock:  # 127.0.0.1: not in the list
            assert _closed(sock) == b""
        _wait_for(lambda: "PROXY header refused: 127.0.0.1" in log.read_text())
        assert any(
            line.startswith("192.0.2.99 ") and "GET / " in line for line in log.read_text().splitlines()
        )
    finally:
        _end(proc)


def test_cli_refuses_a_bad_trust_list() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reactor", "--forwarded-allow-ips", "10.0.0.0/40"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "'10.0.0.0/40' is not an address or network" in done.stderr


@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (Debian's haproxy package)"
)
def test_haproxy_in_front_with_send_proxy_v2(tmp_path: Path) -> None:
    log = tmp_path / "reactor.log"
    proc, address = _start("--proxy-protocol", log=log)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n"
        f"frontend web\n  bind 127.0.0.1:{front}\n  default_backend app\n"
        f"backend app\n  server r {address[0]}:{address[1]} send-proxy-v2\n"
    )
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket() as sock:
                    sock.settimeout(5)
                    sock.bind(("127.0.0.3", 0))
                    sock.connect(("127.0.0.1", front))
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert recv_response(sock).status == 200
                    break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.1)
        _wait_for(lambda: any(line.startswith("127.0.0.3 ") for line in log.read_text().splitlines()))
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        _end(proc)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (Debian's nginx package)")
def test_nginx_in_front_names_the_client_and_drops_the_forged_hop(tmp_path: Path) -> None:
    """nginx appends the address it saw to the X-Forwarded-For the client sent;
    reactor trusts nginx (127.0.0.1) but not 127.0.0.3, so the forged first hop is never reached."""
    log = tmp_path / "reactor.log"
    proc, address = _start(log=log)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
    temp = "".join(
        f"  {kind}_temp_path {tmp_path}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\nerror_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\n"
        "events {}\nhttp {\n  access_log off;\n"
        + temp
        + f"  upstream reactor {{ server {address[0]}:{address[1]}; }}\n"
        f"  server {{\n    listen 127.0.0.1:{front};\n    location / {{\n      proxy_pass http://reactor;\n"
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "      proxy_set_header X-Forwarded-Proto $scheme;\n    }\n  }\n}\n"
    )
    nginx = subprocess.Popen(
        ["nginx", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket() as sock:
                    sock.settimeout(5)
                    sock.bind(("127.0.0.3", 0))
                    sock.connect(("127.0.0.1", front))
                    sock.sendall(b"GET /?via=nginx HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
                    assert recv_response(sock).status == 200
                    break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        _wait_for(lambda: "via=nginx" in log.read_text())
        [line] = [line for line in log.read_text().splitlines() if "via=nginx" in line]
        assert line.startswith("127.0.0.3 ") and "1.2.3.4" not in line
    finally:
        nginx.terminate()
        nginx.wait(10)
        _end(proc)
