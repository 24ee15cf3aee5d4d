"""A mixed site: a JSON API, downloads with Range and 304, 404s and a large body.

Against ``loadtests.site:app``. Each user thinks 50 to 200 ms between requests
and picks a task by weight:

==========  ======  ===========================================================
task        weight  request and what is checked
==========  ======  ===========================================================
list        4       ``GET /api/items?offset=&limit=20``: 200, 20 items
get         6       ``GET /api/items/{1-100}``: 200, the same id
create      2       ``POST /api/items`` with a JSON body: 201, ``Location``,
                    the item echoed; then ``GET`` it back
bad post    1       ``POST /api/items`` with a broken body: 400
missing     1       an unknown item and an unrouted path: 404
download    3       ``GET /files/{name}``: 200, every byte, the ``ETag``
range       2       ``GET /files/{name}`` with one random ``Range``: 206, the
                    ``Content-Range`` and exactly those bytes
cached      2       ``GET /files/{name}`` with ``If-None-Match``: 304, no body
stream      1       ``GET /stream``: 200, 256 KiB
==========  ======  ===========================================================

On start, each user sends ``HEAD /files/{name}`` for the three ETags (200, an
``ETag``, no body). The expected bytes come from importing
:mod:`loadtests.site`, which generates its files from fixed seeds. Downloads
pick ``small.bin`` (4 KiB) most often and ``large.bin`` (1 MiB) least.
"""

from __future__ import annotations

import json
import random
from typing import Any

from locust import FastHttpUser, between, task

from loadtests import site
from loadtests.locustfiles import shapes
from loadtests.locustfiles.common import expect_status

# name -> weight: a download is mostly small, sometimes 1 MiB.
FILE_WEIGHTS = {"small.bin": 6, "medium.bin": 3, "large.bin": 1}


def _json(content: bytes | None) -> Any:
    try:
        return json.loads(content or b"")
    except ValueError:
        return None


class SiteUser(FastHttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.etags: dict[str, str] = {}
        for name in site.FILES:
            # HEAD: the ETag without the body (a HEAD is answered by the GET handler).
            with self.client.head(f"/files/{name}", name="/files/[name]", catch_response=True) as response:
                etag = response.headers.get("ETag") if response.headers else None
                if expect_status(response, 200) and not etag:
                    response.failure("no ETag")
                self.etags[name] = etag or ""

    def _pick_file(self) -> str:
        return self.rng.choices(list(FILE_WEIGHTS), weights=list(FILE_WEIGHTS.values()))[0]

    # -- the JSON API --------------------------------------------------------

    @task(4)
    def list_items(self) -> None:
        offset = self.rng.randrange(0, site.SEEDED - 20)
        path = f"/api/items?offset={offset}&limit=20"
        with self.client.get(path, name="/api/items", catch_response=True) as response:
            if not expect_status(response, 200):
                return
            data = _json(response.content)
            if not isinstance(data, dict) or len(data.get("items", ())) != 20:
                response.failure(f"expected 20 items, got {response.content[:80]!r}")

    @task(6)
    def get_item(self) -> None:
        item_id = self.rng.randint(1, site.SEEDED)
        with self.client.get(
            f"/api/items/{item_id}", name="/api/items/[id]", catch_response=True
        ) as response:
            if not expect_status(response, 200):
                return
            data = _json(response.content)
            if not isinstance(data, dict) or data.get("id") != item_id:
                response.failure(f"expected item {item_id}, got {response.content[:80]!r}")

    @task(2)
    def create_item(self) -> None:
        body = {"name": f"load-{self.rng.randrange(1 << 30)}", "price_cents": self.rng.randrange(10_000)}
        with self.client.post("/api/items", json=body, name="/api/items", catch_response=True) as response:
            if not expect_status(response, 201):
                return
            data = _json(response.content)
            location = response.headers.get("Location") if response.headers else None
            if not isinstance(data, dict) or data.get("name") != body["name"]:
                response.failure(f"the item was not echoed: {response.content[:80]!r}")
                return
            if location != f"/api/items/{data.get('id')}":
                response.failure(f"bad Location {location!r}")
                return
        with self.client.get(location, name="/api/items/[id] (created)", catch_response=True) as response:
            if expect_status(response, 200) and _json(response.content) != data:
                response.failure(f"read back {response.content[:80]!r}, not {data!r}")

    @task(1)
    def bad_post(self) -> None:
        headers = {"Content-Type": "application/json"}
        with self.client.post(
            "/api/items", data='{"name": ', headers=headers, name="/api/items (bad JSON)", catch_response=True
        ) as response:
            expect_status(response, 400)

    @task(1)
    def missing(self) -> None:
        for path, name in (("/api/items/0", "/api/items/[missing]"), ("/no/such/page", "/[unrouted]")):
            with self.client.get(path, name=name, catch_response=True) as response:
                expect_status(response, 404)

    # -- downloads -------------------------------------------------------------

    @task(3)
    def download(self) -> None:
        name = self._pick_file()
        with self.client.get(f"/files/{name}", name=f"/files/{name}", catch_response=True) as response:
            if not expect_status(response, 200):
                return
            if response.content != site.FILES[name]:
                response.failure(f"body differs ({len(response.content or b'')} bytes)")
            elif response.headers.get("ETag") != self.etags[name]:
                response.failure("the ETag changed")

    @task(2)
    def download_range(self) -> None:
        name = self._pick_file()
        data = site.FILES[name]
        start = self.rng.randrange(len(data))
        end = min(len(data) - 1, start + self.rng.randrange(1, 16 << 10))
        headers = {"Range": f"bytes={start}-{end}"}
        with self.client.get(
            f"/files/{name}", headers=headers, name="/files/[name] Range", catch_response=True
        ) as response:
            if not expect_status(response, 206):
                return
            content_range = response.headers.get("Content-Range")
            if content_range != f"bytes {start}-{end}/{len(data)}":
                response.failure(f"bad Content-Range {content_range!r} for {start}-{end}")
            elif response.content != data[start : end + 1]:
                response.failure("the range's bytes differ")

    @task(2)
    def download_cached(self) -> None:
        name = self._pick_file()
        headers = {"If-None-Match": self.etags[name]}
        with self.client.get(
            f"/files/{name}", headers=headers, name="/files/[name] If-None-Match", catch_response=True
        ) as response:
            if expect_status(response, 304) and response.content:
                response.failure(f"a 304 with a body of {len(response.content)} bytes")

    # -- a large body --------------------------------------------------------------

    @task(1)
    def stream(self) -> None:
        with self.client.get("/stream", catch_response=True) as response:
            if expect_status(response, 200) and response.content != site.STREAM_BODY:
                response.failure(f"body differs ({len(response.content or b'')} bytes)")


# The load shape $LOADTEST_SHAPE names, or None for a constant load.
Shape = shapes.selected()
