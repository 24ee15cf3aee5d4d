"""A Flask application for the WSGI tests: run as ``--app tests.integration.flask_site:app``.

Wrapped in ``wsgiref.validate.validator``, so that every exchange is checked
against PEP 3333 on both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from wsgiref.validate import validator

from flask import Flask, Response, abort, jsonify, request, stream_with_context

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

flask_app = Flask(__name__)

ITEMS = {1: {"id": 1, "name": "kettle"}, 2: {"id": 2, "name": "teapot"}}


@flask_app.get("/api/items/<int:item_id>")
def item(item_id: int) -> object:
    if item_id not in ITEMS:
        abort(404)
    return jsonify(ITEMS[item_id])


@flask_app.post("/api/items")
def create() -> object:
    data = request.get_json()
    return jsonify({"created": data, "script_root": request.script_root}), 201


@flask_app.post("/upload")
def upload() -> object:
    """Read the body as it arrives, 64 KiB at a time, never all of it at once."""
    digest = hashlib.sha256()
    size = 0
    stream = request.stream
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        digest.update(piece)
        size += len(piece)
    return jsonify({"size": size, "sha256": digest.hexdigest()})


@flask_app.get("/stream")
def stream() -> Response:
    count = int(request.args.get("n", "100"))

    def lines() -> Iterator[str]:
        for index in range(count):
            yield f"line {index}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@flask_app.get("/boom")
def boom() -> object:
    raise RuntimeError("the handler broke")


@flask_app.errorhandler(404)
def not_found(error: Exception) -> tuple[str, int]:
    return "<h1>Nothing here</h1>", 404


class _SizedReads:
    """Werkzeug reads ``wsgi.input`` with ``read()`` and no size when the
    server sets ``wsgi.input_terminated``; PEP 3333's ``read`` takes a size,
    and the validator holds the application to that. This reads to the end
    in 64 KiB sizes instead, so that the validator still checks every call."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        read = self._stream.read  # type: ignore[attr-defined]
        if size is not None and size >= 0:
            return read(size)  # type: ignore[no-any-return]
        pieces = []
        while piece := read(65536):
            pieces.append(piece)
        return b"".join(pieces)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _sized_reads(app: WSGIApplication) -> WSGIApplication:
    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"] = _SizedReads(environ["wsgi.input"])
        return app(environ, start_response)

    return application


app = validator(_sized_reads(flask_app))
