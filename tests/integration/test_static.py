"""Static files over real sockets: safety, types, conditionals, ranges, sendfile."""

from __future__ import annotations

import email.utils
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor import App, StaticFiles
from tests.conftest import Parsed, ReactorProcess, Running, connect, exchange, parse_responses, recv_response

Serve = Callable[..., Running]
ROOT_DIR = Path(__file__).resolve().parents[2]
SECRET = b"TOP SECRET: outside the root"
DATA = bytes(range(256)) * 40  # 10240 bytes, every offset recognisable

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A root with files, dotfiles, links in and out, and a secret beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"Hello, static!\n")
    (root / "data.bin").write_bytes(DATA)
    (root / "empty.txt").write_bytes(b"")
    (root / "style.css").write_text("body { color: red; }\n")
    (root / "app.js").write_text("console.log(1);\n")
    (root / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>\n')
    (root / "notes.unknownext").write_bytes(b"?")
    (root / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    (root / "café.txt").write_text("accent\n")
    (root / "<script>.txt").write_text("xss\n")
    (root / ".hidden").write_text("dot\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<p>sub index</p>\n")
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text("# a\n")
    (root / "evil.example").mkdir()
    (root / "evil.example" / "index.html").write_text("not evil\n")
    (root / "%2e%2e").mkdir()  # a literal name: what %252e%252e decodes to, once
    (root / "%2e%2e" / "x.txt").write_text("literal\n")
    (root / "link-in.txt").symlink_to(root / "hello.txt")
    (root / "link-out.txt").symlink_to(outside / "secret.txt")
    (root / "dir-out").symlink_to(outside)
    (root / "to-dotfile").symlink_to(root / ".hidden")
    return root


def static_app(root: Path, prefix: str = "/", **options: Any) -> App:
    app = App()

    @app.route("/api/ping")
    def ping(request: object) -> str:
        return "pong"

    app.static(prefix, root, **options)
    return app


@pytest.fixture
def site(serve: Serve, tree: Path) -> Running:
    return serve(static_app(tree))


def get(
    running: Running, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(running.host, running.port, timeout=5)
    try:
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def raw(running: Running, target: str, method: str = "GET") -> Parsed:
    """One request sent byte for byte as given, on a connection that then closes."""
    data = exchange(
        running.address,
        f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode("latin-1"),
    )
    return parse_responses(data, head_only=method == "HEAD")[0]


def open_paths(under: Path) -> list[str]:
    """Files under ``under`` that this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)):
            found.append(target)
    return found


def wait_closed(under: Path, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while open_paths(under) and time.monotonic() < deadline:
        time.sleep(0.02)
    return open_paths(under)


# -- safety ----------------------------------------------------------------------

TRAVERSALS = [
    "/../outside/secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/%2E%2E/etc/passwd",
    "/..%2foutside/secret.txt",
    "/..%2Foutside%2Fsecret.txt",
    "/%2e%2e%2foutside%2fsecret.txt",
    "/..%5coutside%5csecret.txt",
    "/..\\outside\\secret.txt",
    "/sub/../../outside/secret.txt",
    "/sub/%2e%2e/%2e%2e/outside/secret.txt",
    "/./../outside/secret.txt",
    "//etc/passwd",
    "///etc/passwd",
    "/etc/passwd",
    "/%2Fetc%2Fpasswd",
    "/link-out.txt",
    "/dir-out/secret.txt",
    "/dir-out/",
    "/hello.txt%00.png",
    "/%00",
    "/%252e%252e/outside/secret.txt",
    "/%c0%ae%c0%ae/outside/secret.txt",
    "http://t/../outside/secret.txt",
    "http://t/%2e%2e/outside/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_leaves_the_root(site: Running, tree: Path, target: str) -> None:
    response = raw(site, target)
    assert response.status in (400, 404), response
    assert SECRET not in response.body
    assert b"root:" not in response.body  # /etc/passwd


def test_absolute_paths_name_files_under_the_root(site: Running, tree: Path) -> None:
    secret = tree.parent / "outside" / "secret.txt"
    response = raw(site, str(secret))  # "/tmp/.../outside/secret.txt", joined under the root
    assert response.status == 404 and SECRET not in response.body
    response = raw(site, "/" + str(secret))
    assert response.status == 404 and SECRET not in response.body


@needs_curl
def test_traversal_with_curl_path_as_is(site: Running) -> None:
    base = f"http://{site.host}:{site.port}"
    for target in ("/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/..%2f..%2fetc/passwd"):
        result = subprocess.run(
            ["curl", "-sS", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", f"{base}{target}"],
            capture_output=True,
            check=True,
        )
        body, _, code = result.stdout.rpartition(b"\n")
        assert code == b"404", (target, result.stdout)
        assert SECRET not in body


def test_percent_decoding_happens_exactly_once(site: Running) -> None:
    # %252e%252e decodes once to the literal name "%2e%2e", a directory inside the root.
    response = raw(site, "/%252e%252e/x.txt")
    assert (response.status, response.body) == (200, b"literal\n")


def test_symlink_inside_the_root_is_served(site: Running) -> None:
    status, _, body = get(site, "/link-in.txt")
    assert (status, body) == (200, b"Hello, static!\n")


def test_dotfiles_are_hidden_unless_asked_for(serve: Serve, tree: Path) -> None:
    hidden = serve(static_app(tree))
    for target in ("/.hidden", "/.git/config", "/.git/", "/%2ehidden", "/to-dotfile"):
        assert raw(hidden, target).status == 404, target
    shown = serve(static_app(tree, show_dotfiles=True))
    assert raw(shown, "/.hidden").body == b"dot\n"
    assert raw(shown, "/.git/config").body == b"[core]\n"
    assert raw(shown, "/to-dotfile").body == b"dot\n"
    # ".." is never a dotfile to show.
    assert raw(shown, "/.git/../../outside/secret.txt").status == 404


def test_a_file_with_a_trailing_slash_is_not_found(site: Running) -> None:
    assert raw(site, "/hello.txt/").status == 404


# -- directories -------------------------------------------------------------------


def test_directory_without_slash_redirects_to_the_slashed_path(site: Running) -> None:
    response = raw(site, "/sub")
    assert response.status == 301
    assert response.header("location") == "/sub/"
    assert response.body == b""
    response = raw(site, "/sub?a=1&b=2")
    assert response.header("location") == "/sub/?a=1&b=2"
    response = raw(site, "/sub/")
    assert (response.status, response.body) == (200, b"<p>sub index</p>\n")
    assert response.header("content-type") == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    "target", ["//evil.example", "///evil.example", "/%2F%2Fevil.example", "/%2fevil.example"]
)
def test_redirect_never_names_another_host(site: Running, target: str) -> None:
    response = raw(site, target)
    assert response.status == 301
    location = response.header("location")
    assert location == "/evil.example/", location
    assert not location.startswith("//") and "\\" not in location


def test_open_redirect_with_dot_dot_is_refused(site: Running) -> None:
    for target in ("//evil.example/..", "//evil.example/%2e%2e", "/\\evil.example"):
        response = raw(site, target)
        assert response.status == 404, (target, response)
        assert response.header("location") is None


def test_redirect_quotes_what_it_echoes(site: Running, tree: Path) -> None:
    (tree / "a b<c>").mkdir()
    response = raw(site, "/a%20b%3Cc%3E")
    assert response.status == 301
    assert response.header("location") == "/a%20b%3Cc%3E/"


def test_prefix_mount(serve: Serve, tree: Path) -> None:
    running = serve(static_app(tree, "/static/"))
    assert raw(running, "/api/ping").body == b"pong"
    assert raw(running, "/static/hello.txt").body == b"Hello, static!\n"
    response = raw(running, "/static")
    assert (response.status, response.header("location")) == (301, "/static/")
    response = raw(running, "/static/sub")
    assert (response.status, response.header("location")) == (301, "/static/sub/")
    assert raw(running, "/static/sub/").body == b"<p>sub index</p>\n"
    assert raw(running, "/hello.txt").status == 404
    for target in ("/static/../outside/secret.txt", "/static/..%2foutside/secret.txt", "/static/%2e%2e/"):
        response = raw(running, target)
        assert response.status == 404 and SECRET not in response.body


def test_directory_without_index_is_404_unless_listing(site: Running) -> None:
    assert raw(site, "/docs/").status == 404


def test_listing_escapes_every_name(serve: Serve, tree: Path) -> None:
    running = serve(static_app(tree, listing=True))
    response = raw(running, "/")
    assert response.status == 200
    assert response.header("content-type") == "text/html; charset=utf-8"
    assert response.header("x-content-type-options") == "nosniff"
    page = response.body.decode()
    assert "<script>" not in page
    assert '<a href="%3Cscript%3E.txt">&lt;script&gt;.txt</a>' in page
    assert '<a href="caf%C3%A9.txt">café.txt</a>' in page
    assert '<a href="sub/">sub/</a>' in page
    assert ".hidden" not in page and ".git" not in page
    assert raw(running, "/%3Cscript%3E.txt").body == b"xss\n"
    listing = raw(running, "/docs/").body.decode()
    assert '<a href="a.md">a.md</a>' in listing and '<a href="../">../</a>' in listing


# -- types and headers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/hello.txt", "text/plain; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/sub/index.html", "text/html; charset=utf-8"),
        ("/data.bin", "application/octet-stream"),
        ("/notes.unknownext", "application/octet-stream"),
        ("/archive.tar.gz", "application/gzip"),
    ],
)
def test_content_types(site: Running, name: str, expected: str) -> None:
    status, headers, _ = get(site, name)
    assert status == 200
    assert headers["content-type"] == expected
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in headers


def test_file_headers_and_body(site: Running, tree: Path) -> None:
    status, headers, body = get(site, "/data.bin")
    assert (status, body) == (200, DATA)
    st = (tree / "data.bin").stat()
    assert headers["content-length"] == str(len(DATA))
    assert headers["etag"] == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    assert headers["last-modified"] == email.utils.formatdate(int(st.st_mtime), usegmt=True)
    assert headers["accept-ranges"] == "bytes"
    assert headers["cache-control"] == "no-cache"
    assert get(site, "/caf%C3%A9.txt")[2] == b"accent\n"
    status, headers, body = get(site, "/empty.txt")
    assert (status, headers["content-length"], body) == (200, "0", b"")


def test_cache_control_is_configurable(serve: Serve, tree: Path) -> None:
    cached = serve(static_app(tree, cache_control="public, max-age=3600"))
    assert get(cached, "/hello.txt")[1]["cache-control"] == "public, max-age=3600"
    bare = serve(static_app(tree, cache_control=None))
    assert "cache-control" not in get(bare, "/hello.txt")[1]


def test_only_get_and_head(site: Running) -> None:
    # No route of a static site takes POST: 501, as RFC 9110 §9.1 asks, not 405.
    status, headers, _ = get(site, "/hello.txt", method="POST")
    assert status == 501
    assert "allow" not in headers
    status, headers, _ = get(site, "/hello.txt", method="OPTIONS")
    assert (status, headers["allow"]) == (204, "GET, HEAD, OPTIONS")


def test_head_sends_the_headers_alone_and_the_connection_goes_on(site: Running) -> None:
    with connect(site.address) as sock:
        sock.sendall(b"HEAD /data.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        sock.settimeout(5)
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"Hello, static!\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    head_end = data.index(b"\r\n\r\n") + 4
    head = parse_responses(data[:head_end], head_only=True)[0]
    assert head.status == 200 and head.header("content-length") == str(len(DATA))
    following = parse_responses(data[head_end:])[0]  # the HEAD sent no body bytes
    assert following.body == b"Hello, static!\n"


# -- conditional requests --------------------------------------------------------------


def validators(running: Running, target: str = "/data.bin") -> tuple[str, str]:
    _, headers, _ = get(running, target)
    return headers["etag"], headers["last-modified"]


def test_if_none_match_answers_304_without_a_body(site: Running) -> None:
    etag, modified = validators(site)
    for value in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        status, headers, body = get(site, "/data.bin", {"If-None-Match": value})
        assert (status, body) == (304, b""), value
        assert headers["etag"] == etag and headers["last-modified"] == modified
        assert headers["cache-control"] == "no-cache"
        assert "content-length" not in headers
    assert get(site, "/data.bin", {"If-None-Match": '"other"'})[0] == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
    assert get(site, "/data.bin", {"If-None-Match": '"other"', "If-Modified-Since": modified})[0] == 200


def test_if_modified_since(site: Running) -> None:
    _, modified = validators(site)
    assert get(site, "/data.bin", {"If-Modified-Since": modified})[0] == 304
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert get(site, "/data.bin", {"If-Modified-Since": later})[0] == 304
    earlier = "Sat, 01 Jan 2000 00:00:00 GMT"
    assert get(site, "/data.bin", {"If-Modified-Since": earlier})[0] == 200
    for invalid in ("yesterday", "", "Mon, 99 Foo 2020 00:00:00 GMT"):
        status, _, body = get(site, "/data.bin", {"If-Modified-Since": invalid})
        assert (status, body) == (200, DATA), invalid


def test_if_match_and_if_unmodified_since_answer_412(site: Running) -> None:
    etag, modified = validators(site)
    status, headers, body = get(site, "/data.bin", {"If-Match": '"stale"'})
    assert (status, body) == (412, b"")
    assert headers["content-length"] == "0"
    assert get(site, "/data.bin", {"If-Match": f"W/{etag}"})[0] == 412  # strong comparison
    assert get(site, "/data.bin", {"If-Match": etag})[0] == 200
    assert get(site, "/data.bin", {"If-Match": "*"})[0] == 200
    earlier = "Sat, 01 Jan 2000 00:00:00 GMT"
    assert get(site, "/data.bin", {"If-Unmodified-Since": earlier})[0] == 412
    assert get(site, "/data.bin", {"If-Unmodified-Since": modified})[0] == 200
    assert get(site, "/data.bin", {"If-Unmodified-Since": "garbage"})[0] == 200
    # If-Match is evaluated first and makes If-Unmodified-Since moot.
    assert get(site, "/data.bin", {"If-Match": etag, "If-Unmodified-Since": earlier})[0] == 200
    # 412 comes before 304.
    assert get(site, "/data.bin", {"If-Match": '"stale"', "If-None-Match": etag})[0] == 412


def test_entity_tag_lists_follow_the_grammar(site: Running) -> None:
    etag, _ = validators(site)
    # RFC 9110 §5.6.1: empty elements and OWS around them are allowed.
    for value in (f" , ,\t{etag} ,", f'W/"x",{etag}', f'"a,b", \t {etag}', f"W/{etag}"):
        assert get(site, "/data.bin", {"If-None-Match": value})[0] == 304, value
    for value in (f",{etag},", f'"x" , {etag}', " * "):
        assert get(site, "/data.bin", {"If-Match": value})[0] == 200, value
    # A value that breaks the grammar holds no tag: If-None-Match does not
    # match and If-Match fails, even if a valid tag appears somewhere in it.
    for value in (f'"a" {etag}', f"x, {etag}", f"{etag} x", f'{etag}, "open', "W/x", f"*, {etag}"):
        assert get(site, "/data.bin", {"If-None-Match": value})[0] == 200, value
        assert get(site, "/data.bin", {"If-Match": value})[0] == 412, value
    for value in ("", ",", " , "):  # an empty list matches nothing
        assert get(site, "/data.bin", {"If-None-Match": value})[0] == 200, value
        assert get(site, "/data.bin", {"If-Match": value})[0] == 412, value


def test_a_changed_file_gets_a_new_etag(site: Running, tree: Path) -> None:
    etag, _ = validators(site, "/hello.txt")
    (tree / "hello.txt").write_bytes(b"Hello again!\n")
    os.utime(tree / "hello.txt", ns=(1, 2_000_000_000))
    status, headers, body = get(site, "/hello.txt", {"If-None-Match": etag})
    assert (status, body) == (200, b"Hello again!\n")
    assert headers["etag"] != etag


# -- ranges ------------------------------------------------------------------------------


def test_single_ranges(site: Running) -> None:
    size = len(DATA)
    for spec, start, end in [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, size - 1),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=5000-999999", 5000, size - 1),
        ("bytes=-999999", 0, size - 1),
        ("bytes= 7-7", 7, 7),
        ("bytes=0-0,-1", None, None),  # two ranges: multipart below
    ]:
        if start is None:
            continue
        status, headers, body = get(site, "/data.bin", {"Range": spec})
        assert status == 206, spec
        assert headers["content-range"] == f"bytes {start}-{end}/{size}", spec
        assert headers["content-length"] == str(end - start + 1)
        assert body == DATA[start : end + 1], spec


def test_unsatisfiable_range_is_416(site: Running) -> None:
    size = len(DATA)
    for spec in (f"bytes={size}-", "bytes=99999-100000", "bytes=-0"):
        status, headers, body = get(site, "/data.bin", {"Range": spec})
        assert (status, body) == (416, b""), spec
        assert headers["content-range"] == f"bytes */{size}"
    assert get(site, "/empty.txt", {"Range": "bytes=0-"})[0] == 416


def test_malformed_or_foreign_ranges_are_ignored(site: Running) -> None:
    for spec in ("bytes=5-1", "bytes=abc", "bytes=", "bytes=-", "items=0-5", "bytes=1-2-3", "0-5"):
        status, headers, body = get(site, "/data.bin", {"Range": spec})
        assert (status, body) == (200, DATA), spec
        assert "content-range" not in headers


def test_range_numbers_of_any_length(site: Running) -> None:
    """Positions longer than CPython's int-digit limit keep their meaning (RFC 9110 §14.1.1)."""
    size = len(DATA)
    long = "9" * 5000  # over sys.get_int_max_str_digits() (4300): int() refuses it
    for spec, start, end in [
        (f"bytes=0-{long}", 0, size - 1),  # a last-pos past the end is the end
        (f"bytes=-{long}", 0, size - 1),  # a suffix longer than the file is the file
        (f"bytes={'0' * 3000}5-{'0' * 3000}9", 5, 9),  # leading zeros are just digits
    ]:
        status, headers, body = get(site, "/data.bin", {"Range": spec})
        assert (status, headers.get("content-range"), body) == (
            206,
            f"bytes {start}-{end}/{size}",
            DATA[start : end + 1],
        )
    # A first-pos past the end: unsatisfiable, 416 (RFC 9110 §14.2), not a 500.
    status, headers, body = get(site, "/data.bin", {"Range": f"bytes={long}-"})
    assert (status, headers["content-range"], body) == (416, f"bytes */{size}", b"")
    # last-pos below first-pos is invalid however long first-pos is: ignored.
    status, _, body = get(site, "/data.bin", {"Range": f"bytes={long}-5"})
    assert (status, body) == (200, DATA)


def test_empty_range_elements_do_not_count_toward_max_ranges(site: Running) -> None:
    status, headers, body = get(site, "/data.bin", {"Range": "bytes=" + " ,\t" * 40 + "3-5"})
    assert (status, headers["content-range"], body) == (206, f"bytes 3-5/{len(DATA)}", DATA[3:6])


def parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", content_type)
    assert boundary, content_type
    delimiter = b"--" + boundary.group(1).encode()
    assert body.endswith(delimiter + b"--\r\n")
    parts = []
    for chunk in body.split(delimiter)[1:-1]:
        assert chunk.startswith(b"\r\n")
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append(({k.lower(): v for k, v in fields.items()}, data[:-2]))
    return parts


def test_several_ranges_are_multipart_byteranges(site: Running) -> None:
    size = len(DATA)
    status, headers, body = get(site, "/data.bin", {"Range": "bytes=0-9, 100-199, -5"})
    assert status == 206
    assert "content-range" not in headers
    parts = parse_multipart(headers["content-type"], body)
    assert [p[0]["content-range"] for p in parts] == [
        f"bytes 0-9/{size}",
        f"bytes 100-199/{size}",
        f"bytes {size - 5}-{size - 1}/{size}",
    ]
    assert all(p[0]["content-type"] == "application/octet-stream" for p in parts)
    assert [p[1] for p in parts] == [DATA[0:10], DATA[100:200], DATA[-5:]]


def test_overlapping_ranges_are_coalesced(site: Running) -> None:
    size = len(DATA)
    status, headers, body = get(site, "/data.bin", {"Range": "bytes=0-99,50-149,150-199"})
    assert (status, headers["content-range"], body) == (206, f"bytes 0-199/{size}", DATA[:200])
    status, headers, body = get(site, "/data.bin", {"Range": "bytes=500-600,0-10,5-20"})
    parts = parse_multipart(headers["content-type"], body)
    assert [p[1] for p in parts] == [DATA[0:21], DATA[500:601]]


def test_too_many_ranges_get_the_whole_file(site: Running) -> None:
    spec = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))
    status, headers, body = get(site, "/data.bin", {"Range": spec})
    assert (status, body) == (200, DATA)
    assert "content-range" not in headers
    spec = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(16))
    assert get(site, "/data.bin", {"Range": spec})[0] == 206


def test_if_range(site: Running) -> None:
    etag, modified = validators(site)
    status, _, body = get(site, "/data.bin", {"Range": "bytes=0-3", "If-Range": etag})
    assert (status, body) == (206, DATA[:4])
    status, _, body = get(site, "/data.bin", {"Range": "bytes=0-3", "If-Range": '"old"'})
    assert (status, body) == (200, DATA)
    status, _, body = get(site, "/data.bin", {"Range": "bytes=0-3", "If-Range": f"W/{etag}"})
    assert (status, body) == (200, DATA)
    status, _, body = get(site, "/data.bin", {"Range": "bytes=0-3", "If-Range": modified})
    assert (status, body) == (206, DATA[:4])
    earlier = "Sat, 01 Jan 2000 00:00:00 GMT"
    status, _, body = get(site, "/data.bin", {"Range": "bytes=0-3", "If-Range": earlier})
    assert (status, body) == (200, DATA)


def test_head_ignores_range(site: Running) -> None:
    response = raw(site, "/data.bin", method="HEAD")
    assert response.status == 200 and response.header("content-length") == str(len(DATA))
    data = exchange(
        site.address, b"HEAD /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\nConnection: close\r\n\r\n"
    )
    head = parse_responses(data, head_only=True)
    assert len(head) == 1 and head[0].status == 200
    assert data.endswith(b"\r\n\r\n")


@needs_curl
def test_curl_ranges_conditionals_and_head(site: Running, tmp_path: Path) -> None:
    url = f"http://{site.host}:{site.port}/data.bin"

    def curl(*args: str) -> tuple[str, bytes]:
        headers = tmp_path / "headers"
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-D", str(headers), "-o", "-", *args, url],
            capture_output=True,
            check=True,
        )
        return headers.read_bytes().decode("latin-1"), result.stdout

    head, body = curl("-r", "10-19")
    assert head.startswith("HTTP/1.1 206 Partial Content")
    assert f"Content-Range: bytes 10-19/{len(DATA)}\r\n" in head
    assert body == DATA[10:20]
    head, body = curl("-r", "0-1,4-5")
    assert head.startswith("HTTP/1.1 206") and "multipart/byteranges" in head
    assert b"\r\n" + DATA[4:6] + b"\r\n" in body
    head, body = curl("-r", "99999-")
    assert head.startswith("HTTP/1.1 416") and body == b""
    etag = re.search(r"ETag: (\S+)\r\n", curl()[0])
    assert etag
    head, body = curl("-H", f"If-None-Match: {etag.group(1)}")
    assert head.startswith("HTTP/1.1 304") and body == b""
    head, body = curl("-H", 'If-Match: "nope"')
    assert head.startswith("HTTP/1.1 412") and body == b""
    head, body = curl("-I")
    assert head.startswith("HTTP/1.1 200") and f"Content-Length: {len(DATA)}\r\n" in head
    assert body.decode("latin-1") == head  # -I writes the headers as its output: no body came
    head, body = curl("-z", "Sat, 01 Jan 2000 00:00:00 GMT")  # If-Modified-Since
    assert head.startswith("HTTP/1.1 200") and body == DATA


# -- sending: sendfile, and the file closed on every path -------------------------------------


def test_file_bodies_go_out_with_sendfile(site: Running, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sent = real(out_fd, in_fd, offset, count)
        calls.append(sent)
        return sent

    monkeypatch.setattr(os, "sendfile", counting)
    status, _, body = get(site, "/data.bin")
    assert (status, body) == (200, DATA)
    status, _, body = get(site, "/data.bin", {"Range": "bytes=100-"})
    assert (status, body) == (206, DATA[100:])
    # The server thread counts after the bytes have left: give it a moment.
    deadline = time.monotonic() + 5
    while sum(calls) < 2 * len(DATA) - 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(calls) == 2 * len(DATA) - 100


def test_the_file_is_closed_on_every_path(site: Running, tree: Path) -> None:
    big = tree / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(32 << 20)  # sparse
    get(site, "/big.bin", method="HEAD")
    get(site, "/data.bin")
    get(site, "/data.bin", {"Range": "bytes=0-1,5-6"})
    etag, _ = validators(site)
    get(site, "/data.bin", {"If-None-Match": etag})
    get(site, "/data.bin", {"If-Match": '"x"'})
    get(site, "/data.bin", {"Range": "bytes=99999-"})
    assert wait_closed(tree) == []
    # The client leaves in the middle of a sendfile body, and of a multipart one.
    for extra in (b"", b"Range: bytes=0-1000,2000000-30000000\r\n"):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(site.address)
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 20")
        time.sleep(0.1)
        assert open_paths(tree) == [str(big)]  # being sent
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
        assert wait_closed(tree) == [], extra
    get(site, "/hello.txt")  # and the server is fine


def test_multipart_ranges_stream_as_the_socket_drains(site: Running, tree: Path) -> None:
    big = tree / "big.bin"
    pattern = os.urandom(1 << 20)
    big.write_bytes(pattern * 8)
    status, headers, body = get(site, "/big.bin", {"Range": "bytes=0-2,1048576-5242879"})
    assert status == 206
    parts = parse_multipart(headers["content-type"], body)
    assert [p[1] for p in parts] == [pattern[:3], (pattern * 8)[1048576:5242880]]


# -- the command line: --static, and a flat RSS while sending ------------------------------------


class StaticProcess(ReactorProcess):
    def __init__(self, *args: str) -> None:
        super().__init__("--no-access-log", *args)

    def memory(self, field: str) -> int:
        """A VmRSS/VmHWM figure of the server process, in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field}")


@pytest.fixture
def cli(tree: Path) -> Iterator[StaticProcess]:
    process = StaticProcess("--static", str(tree))
    yield process
    process.kill()


def download(host: str, port: int, target: str) -> int:
    """GET ``target`` and count its body bytes without keeping them."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        received = 0
        buffer = bytearray(1 << 20)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk
            head += chunk
        assert head.startswith(b"HTTP/1.1 200 "), head[:100]
        received = len(head) - head.index(b"\r\n\r\n") - 4
        while True:
            count = sock.recv_into(buffer)
            if not count:
                return received
            received += count


def test_static_flag_serves_a_directory_at_the_root(cli: StaticProcess) -> None:
    conn = http.client.HTTPConnection(cli.host, cli.port, timeout=5)
    conn.request("GET", "/hello.txt")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"Hello, static!\n")
    conn.request("GET", "/sub")
    response = conn.getresponse()
    assert (response.status, response.getheader("Location")) == (301, "/sub/")
    response.read()
    conn.request("GET", "/api/info")  # only the directory: no demo routes
    response = conn.getresponse()
    assert response.status == 404
    response.read()
    conn.request("GET", "/../outside/secret.txt")
    response = conn.getresponse()
    assert response.status == 404 and SECRET not in response.read()
    conn.close()
    assert cli.stop(signal.SIGTERM)[0] == 0


def test_static_flag_refuses_a_missing_directory_and_app_with_static(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "reactor", "--port", "0"]
    result = subprocess.run(
        [*run, "--static", str(tmp_path / "nope")],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode != 0 and "not one" in result.stderr
    result = subprocess.run(
        [*run, "--static", str(tmp_path), "--app", "loadtests.hello:app"],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_listing_flag(tree: Path) -> None:
    process = StaticProcess("--static", str(tree), "--listing", "--cache-control", "max-age=60")
    try:
        conn = http.client.HTTPConnection(process.host, process.port, timeout=5)
        conn.request("GET", "/docs/")
        response = conn.getresponse()
        assert response.status == 200 and b"a.md" in response.read()
        conn.request("GET", "/hello.txt")
        response = conn.getresponse()
        assert response.getheader("Cache-Control") == "max-age=60"
        response.read()
        conn.close()
    finally:
        process.stop()


def start_with_few_descriptors(tree: Path, nofile: int) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    """``--static tree`` in a process that may hold at most ``nofile`` descriptors."""
    code = (
        f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
        f"import runpy, sys; sys.argv = ['reactor', '--port', '0', '--static', {str(tree)!r}]; "
        "runpy.run_module('reactor', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    match = re.search(r"http://([\d.]+):(\d+)/", proc.stdout.readline())
    if not match:
        proc.kill()
        raise AssertionError(proc.communicate()[1])
    return proc, (match.group(1), int(match.group(2)))


def test_out_of_descriptors_is_a_503_to_retry_never_a_404(tree: Path) -> None:
    """Connections take the server's descriptors one by one until opening the file fails."""
    proc, address = start_with_few_descriptors(tree, 40)
    held: list[socket.socket] = []
    request = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
    try:
        for _ in range(40):
            sock = connect(address)
            sock.sendall(request)
            response = recv_response(sock)
            held.append(sock)
            if response.status != 200:
                break
        else:
            raise AssertionError("40 connections and the server never ran out of descriptors")
        assert len(held) > 1, "the very first request failed"
        assert response.status == 503, response
        assert response.header("retry-after") == "1"
        assert response.header("cache-control") == "no-store"
        assert response.header("etag") is None and response.header("last-modified") is None
        # The connection that got the 503 is still usable once descriptors are back.
        for sock in held[:-1]:
            sock.close()
        held = held[-1:]
        deadline = time.monotonic() + 5
        while True:  # until the server has seen the closes and freed their descriptors
            held[0].sendall(request)
            again = recv_response(held[0])
            if again.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (again.status, again.body) == (200, b"Hello, static!\n")
    finally:
        for sock in held:
            sock.close()
        proc.kill()
        proc.communicate()


def test_a_big_file_does_not_pass_through_python(cli: StaticProcess, tree: Path) -> None:
    size = 64 << 20
    with (tree / "big.bin").open("wb") as handle:
        handle.truncate(size)  # sparse: no disk, and no page cache in the server's RSS
    download(cli.host, cli.port, "/hello.txt")  # the code paths are warm
    before = cli.memory("VmHWM")
    threads = [threading.Thread(target=lambda: results.append(download(cli.host, cli.port, "/big.bin")))]
    results: list[int] = []
    threads.append(threading.Thread(target=lambda: results.append(download(cli.host, cli.port, "/big.bin"))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [size, size]
    grown_kib = cli.memory("VmHWM") - before
    # A copy through Python would need tens of MiB at its peak; sendfile needs none.
    assert grown_kib < 4096, f"the server's peak RSS grew by {grown_kib} KiB"


def test_static_files_handler_checks_its_arguments(tree: Path) -> None:
    with pytest.raises(ValueError, match="must start with"):
        StaticFiles(tree, prefix="static")
    with pytest.raises(NotADirectoryError):
        StaticFiles(tree / "hello.txt")
    assert StaticFiles(tree, prefix="/s/").routes() == ["/s", "/s/", "/s/{path:path}"]
    assert StaticFiles(tree).routes() == ["/", "/{path:path}"]


def test_registered_routes_win_over_the_mount(site: Running) -> None:
    assert raw(site, "/api/ping").body == b"pong"
    recv = raw(site, "/api/ping/")
    assert recv.status == 404


def test_many_requests_on_one_connection(site: Running) -> None:
    etag, _ = validators(site)
    with connect(site.address) as sock:
        for headers, status, body in [
            (b"", 200, DATA),
            (b"Range: bytes=1-2\r\n", 206, DATA[1:3]),
            (b"Range: bytes=99999-\r\n", 416, b""),
            (f"If-None-Match: {etag}\r\n".encode(), 304, b""),
            (b'If-Match: "x"\r\n', 412, b""),
            (b"", 200, DATA),
        ]:
            sock.sendall(b"GET /data.bin HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
            response = recv_response(sock)
            assert (response.status, response.body) == (status, body)
