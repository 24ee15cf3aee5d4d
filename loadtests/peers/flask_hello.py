"""The WSGI benchmark's application: Flask, the same under every server.

``GET /`` answers ``Hello, World!`` (text/plain); ``GET /row`` reads one row
from an SQLite database (one connection per thread, as a Flask app using
sqlite3 directly would) and answers its text, also ``Hello, World!``.
``WSGI_BENCH_DB`` names the database file; it is made (one table, 1,000 rows)
if it does not exist.

Run: ``python -m reactor --app loadtests.peers.flask_hello:app``,
``waitress-serve loadtests.peers.flask_hello:app``,
``gunicorn -k gthread --threads 4 loadtests.peers.flask_hello:app``, or
``python -m loadtests.peers.cheroot_run loadtests.peers.flask_hello:app``.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading

from flask import Flask, Response

DB = os.environ.get("WSGI_BENCH_DB") or os.path.join(tempfile.gettempdir(), "reactor-wsgi-bench.sqlite3")
HELLO = "Hello, World!"


def _make_db(path: str) -> None:
    """One table of 1,000 rows, written to a temporary name and moved into place."""
    if os.path.exists(path):
        return
    partial = f"{path}.{os.getpid()}"
    with sqlite3.connect(partial) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        db.executemany("INSERT INTO items VALUES (?, ?)", ((i, HELLO) for i in range(1, 1001)))
    db.close()
    os.replace(partial, path)


_make_db(DB)
_local = threading.local()
app = Flask(__name__)


def _db() -> sqlite3.Connection:
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, check_same_thread=True)
    return db


@app.get("/")
def hello() -> Response:
    return Response(HELLO, mimetype="text/plain")


@app.get("/row")
def row() -> Response:
    (text,) = _db().execute("SELECT text FROM items WHERE id = ?", (500,)).fetchone()
    return Response(text, mimetype="text/plain")
