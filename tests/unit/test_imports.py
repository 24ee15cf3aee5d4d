"""The import structure: the sans-IO engine stands alone, observers never import the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import reactor

ROOT = Path(__file__).resolve().parents[2]


WATCHED = ("socket", "selectors", "reactor.server")


def _loaded_after(statement: str) -> str:
    """Whether each WATCHED module is loaded after ``statement``, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; {statement}; print(*(m in sys.modules for m in {WATCHED!r}))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_importing_the_http_engine_loads_no_socket_or_selector() -> None:
    assert _loaded_after("import reactor.http") == "False False False"
    engine = "import reactor.http.bodies, reactor.connection, reactor.streams"
    assert _loaded_after(engine) == "False False False"


def test_observers_do_not_import_the_server() -> None:
    assert _loaded_after("import reactor.metrics, reactor.trace, reactor.live").endswith("False")


def test_every_public_name_resolves_lazily() -> None:
    for name in reactor.__all__:
        assert getattr(reactor, name) is not None, name
    assert _loaded_after("from reactor import Server") == "True True True"
