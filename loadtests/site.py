"""The app of the ``mixed`` load test: ``python -m reactor --app loadtests.site:app``.

=========================  ==========================================================
``GET /``                  a JSON index of the routes below
``GET /api/items``         a page of items: ``?offset=0&limit=20`` (limit 1 to 100)
``POST /api/items``        create an item from ``{"name": str, "price_cents": int}``:
                           201 with ``Location``, or 400 with ``{"error": ...}``
``GET /api/items/{id}``    one item, or 404 with ``{"error": ...}``
``GET /files/{name}``      an in-memory file (:data:`FILES`) with ``ETag``:
                           ``If-None-Match`` gives 304, one ``Range: bytes=``
                           range gives 206 (or 416), honouring ``If-Range``
``GET /stream``            :data:`STREAM_BODY`, 256 KiB of octets in one body
=========================  ==========================================================

Any other path is the router's 404. Handlers run on the server's one thread,
so the item table needs no lock. It is bounded: past :data:`CREATED_MAX`
created items, the oldest created one is dropped (the seeded items stay).

The files are generated at import from fixed seeds, so a load generator that
imports this module knows every byte the server sends and can check ranges.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections import deque
from typing import Any

from reactor import App, Request, Response

__all__ = ["CREATED_MAX", "FILES", "ITEMS", "SEEDED", "STREAM_BODY", "app", "etag_of", "single_range"]

app = App()

SEEDED = 100
CREATED_MAX = 10_000
ITEMS: dict[int, dict[str, Any]] = {
    i: {"id": i, "name": f"item-{i}", "price_cents": 100 + (i * 37) % 900} for i in range(1, SEEDED + 1)
}
_created: deque[int] = deque()
_next_id = itertools.count(SEEDED + 1)

FILES: dict[str, bytes] = {
    name: random.Random(name).randbytes(size)
    for name, size in (("small.bin", 4 << 10), ("medium.bin", 64 << 10), ("large.bin", 1 << 20))
}


def etag_of(data: bytes) -> str:
    """A strong entity tag for ``data``: a quoted prefix of its SHA-256."""
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


ETAGS = {name: etag_of(data) for name, data in FILES.items()}

STREAM_CHUNK_BYTES = 16 << 10
STREAM_BODY = b"".join(bytes([65 + i % 26]) * STREAM_CHUNK_BYTES for i in range(16))


def _error(status: int, message: str) -> Response:
    return Response.json({"error": message}, status)


@app.route("/")
def index(request: Request) -> dict[str, Any]:
    return {
        "routes": ["/api/items", "/api/items/{id}", "/files/{name}", "/stream"],
        "files": {name: len(data) for name, data in FILES.items()},
    }


# -- the JSON API ------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    """Query parameter ``name`` as an int clamped to [low, high]; None if not an int."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        return None
    return max(low, min(high, int(text)))


@app.route("/api/items", methods=["GET", "POST"])
def items(request: Request) -> Response | dict[str, Any]:
    if request.method == "POST":
        return create_item(request)
    offset = _int_param(request, "offset", 0, 0, 1 << 31)
    limit = _int_param(request, "limit", 20, 1, 100)
    if offset is None or limit is None:
        return _error(400, "offset and limit must be non-negative integers")
    page = list(itertools.islice(ITEMS.values(), offset, offset + limit))
    return {"items": page, "offset": offset, "limit": limit, "total": len(ITEMS)}


def create_item(request: Request) -> Response:
    try:
        data = request.json()
    except (UnicodeDecodeError, ValueError):
        return _error(400, "the body is not JSON")
    if not isinstance(data, dict):
        return _error(400, "the body must be a JSON object")
    name = data.get("name")
    price = data.get("price_cents")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        return _error(400, "name must be a string of 1 to 100 characters")
    if not isinstance(price, int) or isinstance(price, bool) or price < 0:
        return _error(400, "price_cents must be a non-negative integer")
    item_id = next(_next_id)
    item = {"id": item_id, "name": name, "price_cents": price}
    ITEMS[item_id] = item
    _created.append(item_id)
    if len(_created) > CREATED_MAX:
        del ITEMS[_created.popleft()]
    return Response.json(item, 201, headers=[("Location", f"/api/items/{item_id}")])


@app.route("/api/items/{id}")
def item(request: Request) -> Response | dict[str, Any]:
    text = request.params["id"]
    found = ITEMS.get(int(text)) if text.isascii() and text.isdigit() else None
    if found is None:
        return _error(404, f"no item {text}")
    return found


# -- downloads: ETag, If-None-Match, Range -------------------------------------

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    """A syntactically valid range that starts past the end (416)."""


def single_range(value: str, size: int) -> tuple[int, int] | None:
    """The first and last byte positions that a ``Range`` value selects.

    Returns None when the range must be ignored and the whole file sent
    (RFC 9110 §14.2 lets a server ignore any Range): another range unit,
    several ranges, or invalid syntax.

    Raises:
        RangeNotSatisfiable: the range starts at or after ``size``, or is
            the empty suffix ``-0``.
    """
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None
        if start >= size:
            raise RangeNotSatisfiable
        return start, min(int(last), size - 1) if last else size - 1
    if not last:
        return None
    suffix = int(last)
    if suffix == 0:
        raise RangeNotSatisfiable
    return max(0, size - suffix), size - 1


def _none_match(header: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value matches ``etag`` (weak comparison)."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


@app.route("/files/{name}")
def download(request: Request) -> Response:
    data = FILES.get(request.params["name"])
    if data is None:
        return _error(404, "no such file")
    etag = ETAGS[request.params["name"]]
    headers = [("ETag", etag), ("Accept-Ranges", "bytes")]
    # Preconditions come before Range (RFC 9110 §13.2.2).
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and _none_match(if_none_match, etag):
        return Response(b"", 304, headers=[("ETag", etag)])
    range_value = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    # Range applies to GET only; If-Range needs a strong match, and we have no
    # Last-Modified, so a date never matches.
    if range_value is not None and request.method == "GET" and (if_range is None or if_range == etag):
        size = len(data)
        try:
            selected = single_range(range_value, size)
        except RangeNotSatisfiable:
            return Response.text(
                "416 Range Not Satisfiable\n", 416, headers=[*headers, ("Content-Range", f"bytes */{size}")]
            )
        if selected is not None:
            start, end = selected
            return Response(
                data[start : end + 1],
                206,
                headers=[*headers, ("Content-Range", f"bytes {start}-{end}/{size}")],
                content_type="application/octet-stream",
            )
    return Response(data, headers=headers, content_type="application/octet-stream")


# -- a large body --------------------------------------------------------------


@app.route("/stream")
def stream(request: Request) -> Response:
    # One bytes body with a Content-Length, so that the scenario measures a large
    # body and nothing else. A handler can stream instead: returning an iterator
    # of the 16 chunks would send them chunked, pulled as the client reads (see
    # docs/streaming.md); the locustfile checks the bytes, not the framing.
    return Response(STREAM_BODY, content_type="application/octet-stream")
