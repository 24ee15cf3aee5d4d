"""The opening handshake (RFC 6455 §4.2), sans-IO: a request in, an answer out.

:func:`check` looks at a parsed :class:`~reactor.http.request.Request` that
reached a WebSocket route and either returns a :class:`Handshake` (the
upgrade is accepted: :func:`accept_head` is the ``101 Switching Protocols``
to send) or raises :class:`HandshakeError` with the status that refuses it:

==========================================================  ======
the request                                                  status
==========================================================  ======
not ``GET`` (HEAD included)                                  405
HTTP/1.0 (an upgrade needs HTTP/1.1, RFC 9110 §7.8)          400
no ``Upgrade`` field (a plain GET of a WebSocket route)      426
``Upgrade`` without the ``websocket`` token                  400
``Connection`` without the ``upgrade`` token                 400
``Sec-WebSocket-Version`` missing or not ``13``              426
``Sec-WebSocket-Key`` missing, or not base64 of 16 bytes     400
``Origin`` not in the allow-list (when there is one)         403
==========================================================  ======

A 426 carries ``Upgrade: websocket`` and ``Sec-WebSocket-Version: 13`` so
that the client learns what to send (RFC 6455 §4.4, RFC 9110 §15.5.22).

The subprotocol is the first of the route's, in the route's order of
preference, that the client offers (none if none matches: RFC 6455 §4.2.2
lets the client decide whether to go on). Extensions are negotiated by the
codec's :func:`reactor.websocket.deflate.negotiate` (permessage-deflate,
RFC 7692); an offer it cannot accept is declined, not refused.

No regex sees the client's bytes here: fields are split on commas and
compared as strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from ..http.request import Request

__all__ = ["GUID", "Handshake", "HandshakeError", "accept_head", "accept_key", "check", "parse_origins"]

#: RFC 6455 §1.3: appended to the client's key before hashing.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Where the server tells a client which version it speaks.
_VERSION_HEADERS = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]


class HandshakeError(Exception):
    """The upgrade is refused with ``status`` (and ``headers``); ``detail`` says why."""

    def __init__(self, status: int, detail: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


class Handshake:
    """An accepted upgrade: what the 101 says, and what the connection needs."""

    __slots__ = ("accept", "subprotocol", "extensions", "deflate", "origin")

    def __init__(
        self, accept: str, subprotocol: str | None, extensions: str | None, deflate: Any, origin: str | None
    ) -> None:
        self.accept = accept  # Sec-WebSocket-Accept
        self.subprotocol = subprotocol  # chosen, or None
        self.extensions = extensions  # the Sec-WebSocket-Extensions answer, or None
        self.deflate = deflate  # the codec's permessage-deflate state, or None
        self.origin = origin  # the client's Origin, or None


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_origins(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """An allow-list from ``"https://a.example, https://b.example"`` (or a list);
    None or empty: every origin is allowed."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    origins = frozenset(item.strip().lower() for item in items if item.strip())
    return origins or None


def _tokens(request: Request, name: str) -> list[str]:
    """The lower-cased comma-separated elements of every ``name`` field."""
    tokens = []
    for value in request.headers.get_all(name):
        for element in value.lower().split(","):
            element = element.strip(" \t")
            if element:
                tokens.append(element)
    return tokens


def _valid_key(key: str | None) -> bool:
    """RFC 6455 §4.2.1: the key is the base64 of 16 bytes (24 characters, canonical)."""
    if key is None or len(key) != 24 or not key.isascii():
        return False
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 16 and base64.b64encode(raw).decode("ascii") == key


def check(
    request: Request,
    *,
    subprotocols: Iterable[str] = (),
    origins: frozenset[str] | None = None,
    negotiate: Callable[[str], tuple[str, Any] | None] | None = None,
) -> Handshake:
    """Accept the upgrade ``request`` asks for, or raise :class:`HandshakeError`.

    Args:
        subprotocols: the route's subprotocols, most preferred first.
        origins: the allowed ``Origin`` values (lower-case); None allows any.
            With an allow-list, a request without ``Origin`` is refused too.
        negotiate: the permessage-deflate negotiation (None: no extension).
    """
    if request.method != "GET":
        raise HandshakeError(405, "a WebSocket handshake is a GET", [("Allow", "GET")])
    if request.version != "HTTP/1.1":
        raise HandshakeError(400, f"no WebSocket upgrade on {request.version}")
    upgrade = _tokens(request, "upgrade")
    if not upgrade:
        raise HandshakeError(426, "a WebSocket route needs an upgrade", list(_VERSION_HEADERS))
    if "websocket" not in upgrade:
        raise HandshakeError(400, "Upgrade does not name websocket")
    if "upgrade" not in _tokens(request, "connection"):
        raise HandshakeError(400, "Connection does not name upgrade")
    headers = request.headers
    version = headers.get("sec-websocket-version")
    if version is None or version.strip() != "13":
        raise HandshakeError(426, "Sec-WebSocket-Version is not 13", list(_VERSION_HEADERS))
    keys = headers.get_all("sec-websocket-key")
    key = keys[0].strip() if len(keys) == 1 else None
    if not _valid_key(key):
        raise HandshakeError(400, "Sec-WebSocket-Key is not the base64 of 16 bytes")
    assert key is not None
    origin = headers.get("origin")
    if origins is not None and (origin is None or origin.strip().lower() not in origins):
        raise HandshakeError(403, "Origin not allowed")
    chosen = None
    # Subprotocol names are compared as sent (RFC 6455 §11.5: case-sensitive).
    offered = [
        element.strip(" \t")
        for value in headers.get_all("sec-websocket-protocol")
        for element in value.split(",")
    ]
    if offered:
        for name in subprotocols:
            if name in offered:
                chosen = name
                break
    extensions = None
    deflate = None
    if negotiate is not None:
        offer = ", ".join(headers.get_all("sec-websocket-extensions"))
        if offer:
            agreed = negotiate(offer)
            if agreed is not None:
                extensions, deflate = agreed
    return Handshake(accept_key(key), chosen, extensions, deflate, origin)


def accept_head(handshake: Handshake) -> bytes:
    """The ``101 Switching Protocols`` head that accepts ``handshake``."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {handshake.accept}",
    ]
    if handshake.subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {handshake.subprotocol}")
    if handshake.extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {handshake.extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
