"""TLS on real sockets: curl, openssl s_client, requests and raw ssl clients
against a server with a test CA made in the session (see loadtests/certs.py)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtests.certs import Certs, make_ca
from loadtests.serverproc import ROOT, start_reactor, stop
from reactor import App, Request
from tests.conftest import Running, get_ok, make_app, parse_responses, recv_response

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

NO_PROXY = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_ca(tmp_path_factory.mktemp("tls"))


def tls_app() -> App:
    app = make_app()

    @app.route("/scheme")
    def scheme(request: Request) -> str:
        return request.scheme

    return app


def client_context(ca: Certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.ca))


def connect_tls(address: tuple[str, int], ca: Certs, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(address, timeout=timeout)
    return client_context(ca).wrap_socket(raw, server_hostname="localhost")


def get(sock: socket.socket, path: str = "/") -> tuple[int, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    response = recv_response(sock)
    return response.status, response.body


@pytest.fixture
def tls_server(serve: Callable[..., Running], test_ca: Certs) -> Running:
    return serve(tls_app(), certfile=str(test_ca.cert), keyfile=str(test_ca.key))


def get_tls_ok(address: tuple[str, int], ca: Certs, body: bytes | None = b"Hello, World!") -> None:
    with connect_tls(address, ca) as sock:
        status, got = get(sock)
    assert status == 200
    assert body is None or got == body


# -- clients ------------------------------------------------------------------


def test_keep_alive_requests_over_tls_with_scheme_https(tls_server: Running, test_ca: Certs) -> None:
    with connect_tls(tls_server.address, test_ca) as sock:
        assert sock.selected_alpn_protocol() is None  # the client offered none
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        for _ in range(3):
            assert get(sock, "/scheme") == (200, b"https")
        assert get(sock, "/big?n=300000") == (200, b"b" * 300000)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_with_the_test_ca(tls_server: Running, test_ca: Certs) -> None:
    url = f"https://localhost:{tls_server.port}/scheme"
    out = subprocess.run(  # noqa: PLW1510 (the status is asserted)
        ["curl", "-sS", "--cacert", str(test_ca.ca), url, url, "-w", " %{http_code} %{http_version}\n"],
        capture_output=True,
        text=True,
        timeout=30,
        env=NO_PROXY,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "https 200 1.1\nhttps 200 1.1\n"
    # Without the CA, curl refuses the certificate.
    refused = subprocess.run(
        ["curl", "-sS", url], check=False, capture_output=True, text=True, timeout=30, env=NO_PROXY
    )
    assert refused.returncode == 60, refused.stderr


def s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 (the status is asserted)
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_openssl_s_client_alpn_http11_and_no_tls11(tls_server: Running, test_ca: Certs) -> None:
    out = s_client(
        tls_server.port, "-alpn", "h2,http/1.1", "-CAfile", str(test_ca.ca), "-servername", "localhost"
    )
    assert "ALPN protocol: http/1.1" in out.stdout, out.stdout + out.stderr
    assert "Verify return code: 0 (ok)" in out.stdout
    old = s_client(tls_server.port, "-tls1_1")
    assert old.returncode != 0
    assert "Cipher is (NONE)" in old.stdout or "alert" in old.stderr, old.stdout + old.stderr
    get_tls_ok(tls_server.address, test_ca)


def test_requests_verifies_against_the_ca(tls_server: Running, test_ca: Certs) -> None:
    requests = pytest.importorskip("requests")
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment
    response = session.get(
        f"https://localhost:{tls_server.port}/items/7?a=b", verify=str(test_ca.ca), timeout=10
    )
    assert response.status_code == 200
    assert response.json() == {"id": "7", "query": {"a": ["b"]}}
    response = session.post(
        f"https://localhost:{tls_server.port}/echo", data=b"z" * 200_000, verify=str(test_ca.ca), timeout=10
    )
    assert response.content == b"z" * 200_000
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://localhost:{tls_server.port}/", timeout=10)  # the system CAs do not know ours


def test_a_request_larger_than_one_read_is_drained_from_openssl(
    serve: Callable[..., Running], test_ca: Certs
) -> None:
    # recv_bytes far under a TLS record: the rest of each record waits in
    # OpenSSL (pending()), where the selector cannot see it.
    running = serve(tls_app(), certfile=str(test_ca.cert), keyfile=str(test_ca.key), recv_bytes=100)
    body = os.urandom(12000)
    with connect_tls(running.address, test_ca) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        response = recv_response(sock)
        assert (response.status, response.body) == (200, body)
        assert get(sock) == (200, b"Hello, World!")


def test_close_notify_ends_a_closing_connection(tls_server: Running, test_ca: Certs) -> None:
    raw = socket.create_connection(tls_server.address, timeout=5)
    sock = client_context(test_ca).wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)  # SSLEOFError if the server closed without close_notify
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"Hello, World!")


def test_a_file_is_sent_in_bounded_pieces_under_tls(
    serve: Callable[..., Running], test_ca: Certs, tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(content)
    app = App()
    app.static("/", str(tmp_path))
    running = serve(app, certfile=str(test_ca.cert), keyfile=str(test_ca.key))
    with connect_tls(running.address, test_ca, timeout=10) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.5)  # read nothing: the output must stay at the water mark
        queued = running.call(lambda: max(c.transport.buffered for c in running.server.connections))
        limit = running.server.config.write_high_water_bytes + (1 << 16)
        assert 0 < queued <= limit, queued
        response = recv_response(sock, timeout=20)
    assert response.status == 200
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(content).digest()


# -- clients that do not speak TLS --------------------------------------------


def test_plain_http_to_the_tls_port_is_answered_400(tls_server: Running, test_ca: Certs) -> None:
    with socket.create_connection(tls_server.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in data
    assert data.endswith(b"The plain HTTP request was sent to HTTPS port\n")
    get_tls_ok(tls_server.address, test_ca)


def test_garbage_instead_of_a_client_hello_is_closed_and_logged(
    tls_server: Running, test_ca: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reactor.error")
    with socket.create_connection(tls_server.address, timeout=5) as bad:
        bad.sendall(b"\x16\x03\x01\xff\xff\x1b[31m\r\n\x00garbage" * 4)
        with socket.create_connection(tls_server.address, timeout=5) as worse:
            worse.sendall(b"\x00\x01\x02\x03 \x1b]0;owned\x07\n" * 8)
            get_tls_ok(tls_server.address, test_ca)  # meanwhile, others are served
            for sock in (bad, worse):
                assert b"HTTP" not in read_to_close(sock)  # at most a TLS alert, then closed
    lines = [r.getMessage() for r in caplog.records if "TLS handshake with" in r.getMessage()]
    assert len(lines) == 2, lines
    for line in lines:
        assert "\n" not in line and "\x1b" not in line and "\x00" not in line
    get_tls_ok(tls_server.address, test_ca)


def test_a_slow_handshake_is_cut_at_its_timeout(serve: Callable[..., Running], test_ca: Certs) -> None:
    running = serve(tls_app(), certfile=str(test_ca.cert), keyfile=str(test_ca.key), handshake_timeout_s=0.5)
    hello = _client_hello(running.address)
    silent = socket.create_connection(running.address, timeout=10)
    slow = socket.create_connection(running.address, timeout=10)
    started = time.monotonic()
    slow.sendall(hello[:20])  # a third of a ClientHello, and no more
    get_tls_ok(running.address, test_ca)  # a client that does speak is served meanwhile
    for sock in (silent, slow):
        with sock:
            assert read_to_close(sock) == b""
    waited = time.monotonic() - started
    assert 0.4 <= waited < 5.0, waited


def read_to_close(sock: socket.socket) -> bytes:
    """What the server sends until it closes (a reset, for unread input, counts)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _client_hello(address: tuple[str, int]) -> bytes:
    """The first bytes a real TLS client sends (a memory BIO does not connect)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


# -- client certificates -------------------------------------------------------


def test_client_certificates_are_verified_with_ca_certs(
    serve: Callable[..., Running], test_ca: Certs
) -> None:
    running = serve(tls_app(), certfile=str(test_ca.cert), keyfile=str(test_ca.key), ca_certs=str(test_ca.ca))
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        connect_tls(running.address, test_ca) as sock,
    ):
        get(sock)  # TLS 1.3: the refusal arrives with the first read
    context = client_context(test_ca)
    context.load_cert_chain(str(test_ca.client_cert), str(test_ca.client_key))
    raw = socket.create_connection(running.address, timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        assert get(sock, "/scheme") == (200, b"https")


# -- reloading the certificate -----------------------------------------------


def test_reload_tls_serves_the_new_certificate_to_new_connections_only(
    serve: Callable[..., Running], test_ca: Certs, tmp_path: Path
) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(test_ca.cert, cert)
    shutil.copy(test_ca.key, key)
    running = serve(tls_app(), certfile=str(cert), keyfile=str(key))
    old = connect_tls(running.address, test_ca)
    assert get(old) == (200, b"Hello, World!")
    first = old.getpeercert(binary_form=True)
    renewed = make_ca(test_ca.ca.parent, name="renewed")
    shutil.copy(renewed.cert, cert)
    shutil.copy(renewed.key, key)
    running.call(running.server.reload_tls)
    with connect_tls(running.address, test_ca) as new:
        assert get(new) == (200, b"Hello, World!")
        second = new.getpeercert(binary_form=True)
    assert second == ssl.PEM_cert_to_DER_cert(renewed.cert.read_text())
    assert second != first
    with old:
        assert get(old, "/scheme") == (200, b"https")  # the open connection goes on
        assert old.getpeercert(binary_form=True) == first
    # A bad file keeps the old context.
    key.write_text("not a key\n")

    def reload() -> Exception | None:
        try:
            running.server.reload_tls()
        except ValueError as exc:
            return exc
        return None

    assert "not a certificate and its key" in str(running.call(reload))
    get_tls_ok(running.address, test_ca)


def test_sighup_reloads_the_certificate(test_ca: Certs, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(test_ca.cert, cert)
    shutil.copy(test_ca.key, key)
    with (tmp_path / "err.log").open("w") as err:
        proc, address = start_reactor("--certfile", str(cert), "--keyfile", str(key), stderr=err)
    try:
        old = connect_tls(address, test_ca)
        assert get(old)[0] == 200  # the demo's page
        renewed = make_ca(test_ca.ca.parent, name="hup")
        shutil.copy(renewed.cert, cert)
        shutil.copy(renewed.key, key)
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "TLS certificate reloaded" not in (tmp_path / "err.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "err.log").read_text()
            time.sleep(0.05)
        with connect_tls(address, test_ca) as new:
            assert new.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(renewed.cert.read_text())
        with old:
            old.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert recv_response(old).status == 200
    finally:
        stop(proc)


# -- the command line -------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--certfile", "/nonexistent/cert.pem"], "certfile '/nonexistent/cert.pem': no such file"),
        (["--keyfile", "x.key"], "keyfile needs certfile"),
        (["--certfile", "{ca}", "--keyfile", "{ca}"], "not a certificate and its key"),
        (["--certfile", "{cert}", "--keyfile", "{key}", "--ssl-ciphers", "NOPE"], "no cipher matches"),
        (["--certfile", "{cert}", "--keyfile", "{key}", "--cert-reqs", "maybe"], "--cert-reqs"),
    ],
)
def test_bad_tls_flags_stop_the_start_with_status_2(test_ca: Certs, flags: list[str], message: str) -> None:
    args = [f.format(ca=test_ca.ca, cert=test_ca.cert, key=test_ca.key) for f in flags]
    out = subprocess.run(  # noqa: PLW1510 (the status is asserted)
        [sys.executable, "-m", "reactor", "--port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr, out.stderr


def test_tls_with_workers_and_the_access_log_scheme(test_ca: Certs, tmp_path: Path) -> None:
    with (tmp_path / "err.log").open("w") as err:
        proc, address = start_reactor(
            "--workers", "2", "--certfile", str(test_ca.cert), "--keyfile", str(test_ca.key),
            "--access-log-format", "%(S)s %(r)s %(s)s", stderr=err,
        )  # fmt: skip
    try:
        for _ in range(4):
            get_tls_ok(address, test_ca, body=None)  # the demo's page
        deadline = time.monotonic() + 10
        while (tmp_path / "err.log").read_text().count("https GET / HTTP/1.1 200") < 4:
            assert time.monotonic() < deadline, (tmp_path / "err.log").read_text()
            time.sleep(0.05)
    finally:
        stop(proc)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_tls_on_a_unix_socket(test_ca: Certs, tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    flags = ["--uds", str(path), "--certfile", str(test_ca.cert), "--keyfile", str(test_ca.key)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "(TLS)" in proc.stdout.readline()
        out = subprocess.run(  # noqa: PLW1510 (the status is asserted)
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{scheme}",
                "--unix-socket",
                str(path),
                "--cacert",
                str(test_ca.ca),
                "https://localhost/",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=NO_PROXY,
        )
        assert (out.returncode, out.stdout.lower()) == (0, "200 https"), out.stderr
    finally:
        stop(proc)


def test_plain_listener_still_says_http(server: Running) -> None:
    get_ok(server.address)


def test_graceful_shutdown_closes_idle_and_handshaking_tls_connections(test_ca: Certs) -> None:
    proc, address = start_reactor("--certfile", str(test_ca.cert), "--keyfile", str(test_ca.key))
    try:
        raw = socket.create_connection(address, timeout=10)
        idle = client_context(test_ca).wrap_socket(
            raw, server_hostname="localhost", suppress_ragged_eofs=False
        )
        assert get(idle)[0] == 200  # now idle, kept alive
        silent = socket.create_connection(address, timeout=10)  # connected, handshake not begun
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5.0  # nothing waited for the shutdown timeout
        with idle:
            assert idle.recv(100) == b""  # close_notify, not a truncation (SSLEOFError)
        with silent:
            assert read_to_close(silent) == b""
    finally:
        stop(proc)


def test_a_tls_client_that_stops_reading_is_cut_at_the_write_timeout(
    serve: Callable[..., Running], test_ca: Certs
) -> None:
    running = serve(tls_app(), certfile=str(test_ca.cert), keyfile=str(test_ca.key), write_timeout_s=0.5)
    stuck = connect_tls(running.address, test_ca, timeout=10)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /big?n=20000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    deadline = time.monotonic() + 10
    while running.call(lambda: len(running.server.connections)) and time.monotonic() < deadline:
        get_tls_ok(running.address, test_ca)  # others are served meanwhile
        time.sleep(0.1)
    assert running.call(lambda: len(running.server.connections)) == 0, "the stuck client was never cut"
    stuck.close()


def test_sighup_with_workers_serves_the_renewed_certificate(test_ca: Certs, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(test_ca.cert, cert)
    shutil.copy(test_ca.key, key)
    proc, address = start_reactor("--workers", "1", "--certfile", str(cert), "--keyfile", str(key))
    try:
        old = connect_tls(address, test_ca)
        assert get(old)[0] == 200
        renewed = make_ca(test_ca.ca.parent, name="rolled")
        shutil.copy(renewed.cert, cert)
        shutil.copy(renewed.key, key)
        expected = ssl.PEM_cert_to_DER_cert(renewed.cert.read_text())
        os.kill(proc.pid, signal.SIGHUP)  # the master replaces its worker; the new one loads the files
        deadline = time.monotonic() + 30
        while True:
            with connect_tls(address, test_ca) as new:
                if new.getpeercert(binary_form=True) == expected:
                    assert get(new)[0] == 200
                    break
            assert time.monotonic() < deadline, "no worker served the renewed certificate"
            time.sleep(0.1)
        old.close()
    finally:
        stop(proc)


def test_pipelined_requests_left_in_openssl_are_read_after_backpressure(
    serve: Callable[..., Running], test_ca: Certs
) -> None:
    # Three requests in one TLS record, read 100 bytes at a time: the first
    # answer's backpressure pauses reading while the rest sit decrypted in
    # OpenSSL, where no selector event will announce them.
    running = serve(tls_app(), certfile=str(test_ca.cert), keyfile=str(test_ca.key), recv_bytes=100)
    with connect_tls(running.address, test_ca, timeout=10) as sock:
        sock.sendall(b"GET /big?n=400000 HTTP/1.1\r\nHost: localhost\r\n\r\n" * 3)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < 3 * (data.index(b"\r\n\r\n") + 4 + 400000):
            chunk = sock.recv(65536)  # each head is as long as the first (Date is fixed-width)
            assert chunk, f"closed after {len(data)} bytes"
            data += chunk
    responses = parse_responses(data)
    assert [(r.status, r.body) for r in responses] == [(200, b"b" * 400000)] * 3


# -- WebSockets over TLS --------------------------------------------------------


def test_a_websocket_over_tls_echoes_and_the_handler_sees_https(
    serve: Callable[..., Running], test_ca: Certs
) -> None:
    """wss:// is the same hand-off: the TLS transport is given to the
    WebSocket protocol after the 101, and a large message crosses many records."""
    from websockets.sync.client import connect as ws_connect

    from reactor import WebSocket

    app = make_app()
    schemes: list[str] = []

    @app.websocket("/echo")
    class Echo:
        def on_open(self, ws: WebSocket) -> None:
            schemes.append(ws.request.scheme)

        def on_message(self, ws: WebSocket, data: str | bytes) -> None:
            ws.send(data)

    running = serve(app, certfile=str(test_ca.cert), keyfile=str(test_ca.key))
    url = f"wss://localhost:{running.port}/echo"
    with ws_connect(url, ssl=client_context(test_ca), max_size=None) as client:
        client.send("héllo")
        assert client.recv() == "héllo"
        big = os.urandom(300_000)  # about 19 TLS records each way
        client.send(big)
        assert client.recv() == big
    assert schemes == ["https"]
    get_tls_ok(running.address, test_ca)  # and HTTPS goes on


# -- WSGI over TLS --------------------------------------------------------------


def test_a_wsgi_app_over_tls_sees_https_and_streams_a_large_upload(
    serve: Callable[..., Running], test_ca: Certs
) -> None:
    """The pool's handoff does not care which transport carries the bytes:
    ``wsgi.url_scheme`` is https, and a body larger than the worker's input
    bound (so reading pauses and resumes) arrives whole through TLS."""
    from wsgiref.validate import validator

    from reactor.wsgi import WSGIApp

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        stream = environ["wsgi.input"]
        digest = hashlib.sha256()
        while True:
            piece = stream.read(65536)  # type: ignore[attr-defined]
            if not piece:
                break
            digest.update(piece)
        body = f"{environ['wsgi.url_scheme']} {digest.hexdigest()}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    running = serve(
        WSGIApp(validator(app)),
        certfile=str(test_ca.cert),
        keyfile=str(test_ca.key),
        max_body_bytes=8 * 1024 * 1024,
    )
    upload = os.urandom(3 * 1024 * 1024)
    with connect_tls(running.address, test_ca, timeout=30) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(upload) + upload
        )
        response = recv_response(sock)
    assert response.status == 200
    assert response.body == f"https {hashlib.sha256(upload).hexdigest()}".encode()
    get_tls_ok(running.address, test_ca, body=None)
