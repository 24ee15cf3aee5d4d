"""tests/unit has no sockets: making one here fails the test, which belongs in tests/integration."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(self: socket.socket, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a unit test made a socket: it belongs in tests/integration")

    monkeypatch.setattr(socket.socket, "__init__", refuse)
    yield
