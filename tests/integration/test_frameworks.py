"""Flask and Django under ``python -m reactor --app ...``, each in a child process."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ReactorProcess, connect, recv_response

flask = pytest.importorskip("flask")
ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


@pytest.fixture(scope="module")
def flask_server() -> Iterator[ReactorProcess]:
    server = ReactorProcess(
        "--app", "tests.integration.flask_site:app", "--no-access-log", "--max-body", str(200 * MIB)
    )
    try:
        yield server
    finally:
        server.kill()


def test_flask_json_api(flask_server: ReactorProcess) -> None:
    status, body, response = flask_server.get("/api/items/2")
    assert status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {"id": 2, "name": "teapot"}
    conn = http.client.HTTPConnection(*flask_server.address, timeout=5)
    conn.request(
        "POST", "/api/items", body=json.dumps({"name": "cup"}), headers={"Content-Type": "application/json"}
    )
    created = conn.getresponse()
    assert created.status == 201
    assert json.loads(created.read()) == {"created": {"name": "cup"}, "script_root": ""}


def test_flask_error_pages(flask_server: ReactorProcess) -> None:
    status, body, _ = flask_server.get("/api/items/9")
    assert (status, body) == (404, b"<h1>Nothing here</h1>")
    status, body, _ = flask_server.get("/boom")
    assert status == 500
    assert b"Internal Server Error" in body  # Flask's own page, not the server's


def test_flask_streamed_response(flask_server: ReactorProcess) -> None:
    status, body, response = flask_server.get("/stream?n=20000")
    assert status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    lines = body.decode().splitlines()
    assert lines[0] == "line 0" and lines[-1] == "line 19999" and len(lines) == 20000


def test_flask_50_mib_upload_streams_with_a_bounded_rss(flask_server: ReactorProcess) -> None:
    pid = flask_server.proc.pid
    flask_server.get("/api/items/1")  # warm: the pool's first thread, Flask's first request
    before = _peak_rss(pid)
    total = 50 * MIB
    piece = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    with connect(flask_server.address, timeout=30) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % total
        )
        for _ in range(total // len(piece)):
            sock.sendall(piece)
            digest.update(piece)
        response = recv_response(sock, timeout=30)
    assert response.status == 200
    assert json.loads(response.body) == {"size": total, "sha256": digest.hexdigest()}
    grown = _peak_rss(pid) - before
    assert grown < 16 * MIB, f"the peak RSS grew by {grown / MIB:.1f} MiB for a 50 MiB upload"


# -- Django -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReactorProcess]:
    pytest.importorskip("django")
    database = tmp_path_factory.mktemp("django") / "db.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.integration.django_site.settings",
        "REACTOR_DJANGO_DB": str(database),
    }
    manage = [sys.executable, "-m", "django"]
    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; User.objects.create_superuser('admin', '', 'pw')",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )
    old = os.environ.copy()
    os.environ.update(env)  # the child inherits them
    try:
        server = ReactorProcess("--app", "tests.integration.django_site.wsgi:application", "--no-access-log")
    finally:
        os.environ.clear()
        os.environ.update(old)
    try:
        yield server
    finally:
        server.kill()


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    jar = {}
    for value in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        jar[name] = rest.split(";", 1)[0]
    return jar


def test_django_admin_login_page_and_login(django_server: ReactorProcess) -> None:
    status, body, response = django_server.get("/admin/login/")
    assert status == 200
    assert b"Django administration" in body
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert token
    cookies = _cookies(response)
    assert "csrftoken" in cookies
    conn = http.client.HTTPConnection(*django_server.address, timeout=10)
    form = f"csrfmiddlewaretoken={token.group(1).decode()}&username=admin&password=pw&next=/admin/"
    conn.request(
        "POST",
        "/admin/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
            "Referer": f"http://127.0.0.1:{django_server.port}/admin/login/",
        },
    )
    logged_in = conn.getresponse()
    logged_in.read()
    assert logged_in.status == 302  # the password was checked against the SQLite database
    assert logged_in.getheader("Location") == "/admin/"
    assert "sessionid" in _cookies(logged_in)


def test_django_form_post_needs_its_csrf_token(django_server: ReactorProcess) -> None:
    status, body, response = django_server.get("/greet/")
    assert status == 200
    token = re.search(rb'value="([^"]+)"', body)
    assert token
    cookie = _cookies(response)["csrftoken"]
    for with_token, expected in ((False, 403), (True, 200)):
        conn = http.client.HTTPConnection(*django_server.address, timeout=10)
        form = "name=Ada" + (f"&csrfmiddlewaretoken={token.group(1).decode()}" if with_token else "")
        conn.request(
            "POST",
            "/greet/",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie}"},
        )
        answer = conn.getresponse()
        text = answer.read()
        assert answer.status == expected, text[:200]
    assert text == b"Hello, Ada!"


def test_django_static_files(django_server: ReactorProcess) -> None:
    status, body, response = django_server.get("/static/site.css")
    assert status == 200
    assert body == b"body { color: #123456; }\n"
    assert response.getheader("Content-Type", "").startswith("text/css")
    started = time.monotonic()
    assert django_server.get("/static/nothing.css")[0] == 404
    assert time.monotonic() - started < 5
