"""REDbot ("lint for HTTP") finds nothing to warn about in the demo's answers.

REDbot fetches a URL, then checks the answer against the HTTP RFCs: caching
(is the answer explicit about whether and how long a cache may keep it?),
validators and conditional requests, ranges, content negotiation, the syntax
of every header. Each of the demo's URLs below must draw no note at the
``WARN`` or ``BAD`` level.

REDbot runs in a child process (``_DRIVER``): its event loop (thor) is
process-wide, and one run lints every URL at once. It only fetches the URLs it
is given, all on 127.0.0.1: it is built without ``descend`` (which would
follow the links in HTML), so it requests no linked resource, and its other
requests (the conditional, ranged and gzip checks) go to the same URL.

Left out: the event streams (``/events/clock``, ``/events/chat``,
``/_reactor/events``). They never end, and REDbot reports only once an answer
is complete, so it would wait until its own timeout and then report a fetch
error, not notes on the headers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ReactorProcess

pytest.importorskip(
    "redbot.resource", reason="redbot is not installed (pip install redbot; it needs Python >= 3.11)"
)

# (method, path, request body, expected status): every kind of answer the demo gives.
URLS = [
    ("GET", "/", b"", 200),
    ("GET", "/index.html", b"", 200),
    ("GET", "/style.css", b"", 200),
    ("GET", "/app.js", b"", 200),
    ("GET", "/logo.svg", b"", 200),
    ("GET", "/api/info", b"", 200),
    ("GET", "/api/time", b"", 200),
    ("GET", "/hello/world", b"", 200),
    ("POST", "/api/echo", b"echo this", 200),
    ("GET", "/api/echo", b"", 405),  # the route is POST only
    ("POST", "/chat", b"hello, chat", 200),
    ("GET", "/_reactor/", b"", 200),
    ("GET", "/_reactor/stats", b"", 200),
    ("GET", "/_reactor/metrics", b"", 200),
    ("GET", "/no/such/file", b"", 404),
]

# Reads [[method, url, body], ...] as JSON on stdin; writes one JSON object per
# URL: its status, fetch error and every note (level, subject, summary, with
# the notes under it).
_DRIVER = r"""
import configparser, json, sys, urllib.parse
import thor
from redbot.resource import HttpResource

requests = json.load(sys.stdin)
parser = configparser.ConfigParser()
# enable_local_access: REDbot refuses private and loopback addresses unless told.
parser.read_dict({"redbot": {"enable_local_access": "True"}})
config = parser["redbot"]
resources = []
for method, url, body in requests:
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", url
    resource = HttpResource(config, descend=False)
    headers = [("Content-Type", "text/plain; charset=utf-8")] if body else []
    resource.set_request(url, method=method, headers=headers, content=body.encode())
    resources.append(resource)
left = [len(resources)]

def done():
    left[0] -= 1
    if left[0] == 0:
        thor.stop()

for resource in resources:
    resource.on("check_done", done)
    resource.check()
thor.run()

def note(n):
    return {"level": n.level.name, "subject": n.subject, "summary": str(n.summary),
            "subnotes": [note(s) for s in n.subnotes]}

for (method, url, _), resource in zip(requests, resources):
    print(json.dumps({
        "request": f"{method} {url}",
        "status": resource.response.status_code,
        "error": str(resource.fetch_error) if resource.fetch_error else None,
        "headers": resource.response.headers.text,
        "notes": [note(n) for n in resource.response.notes],
    }))
"""


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[str, dict[str, Any]]]:
    """REDbot's report on each of URLS, keyed by ``"METHOD /path"``."""
    demo = ReactorProcess()
    try:
        base = f"http://{demo.host}:{demo.port}"
        todo = [[method, base + path, body.decode()] for method, path, body, _ in URLS]
        run = subprocess.run(
            [sys.executable, "-c", _DRIVER],
            input=json.dumps(todo),
            capture_output=True,
            text=True,
            # Below pytest-timeout's 120 s: a hung run ends here, and the finally kills the demo.
            timeout=90,
            check=False,
        )
        assert run.returncode == 0, f"REDbot failed:\n{run.stderr}"
        found = [json.loads(line) for line in run.stdout.splitlines()]
        yield {report["request"].replace(base, ""): report for report in found}
    finally:
        demo.kill()


def _objections(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notes at WARN or BAD level, at any depth."""
    found = []
    for note in notes:
        if note["level"] in ("WARN", "BAD"):
            found.append(note)
        else:
            found.extend(_objections(note["subnotes"]))
    return found


def _lines(notes: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    out = []
    for note in notes:
        out.append(f"{indent}{note['level']} [{note['subject']}] {note['summary']}")
        out.extend(_lines(note["subnotes"], indent + "    "))
    return out


@pytest.mark.parametrize(("method", "path", "body", "status"), URLS, ids=[f"{m} {p}" for m, p, _, _ in URLS])
def test_redbot_has_no_warning(
    reports: dict[str, dict[str, Any]], method: str, path: str, body: bytes, status: int
) -> None:
    report = reports[f"{method} {path}"]
    assert report["error"] is None, f"REDbot could not fetch {method} {path}: {report['error']}"
    assert report["status"] == status
    objections = _objections(report["notes"])
    headers = "\n".join(f"  {name}:{value}" for name, value in report["headers"])
    assert not objections, (
        f"REDbot objects to {method} {path} ({report['status']}):\n"
        + "\n".join(_lines(objections))
        + f"\nresponse headers:\n{headers}\nall notes:\n"
        + "\n".join(_lines(report["notes"]))
    )
