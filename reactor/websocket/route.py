"""A WebSocket route of the handler table, and the answer that upgrades.

:meth:`reactor.app.App.websocket` registers a :class:`WebSocketRoute` as the
``GET`` handler of its path (so path parameters, 404, 405 and 501 work as for
any route). Called with the request, it runs the handshake
(:func:`reactor.websocket.handshake.check`) and answers with an
:class:`Upgrade`: either the ``101`` and what to hand the transport to, or the
refusal (400, 403, 405, 426), which the connection sends with
``Connection: close``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from sys import intern
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..http.request import Request
from ..http.response import Response, status_text
from ..log import error_log, escape
from .deflate import negotiate as deflate_negotiate
from .handshake import Handshake, HandshakeError, accept_head, check, parse_origins
from .protocol import HandshakeRequest, WebSocket

if TYPE_CHECKING:
    from .protocol import Upgraded

__all__ = ["Upgrade", "WebSocketRoute"]


# Fields of the handshake that it consumed (lower-case, as Headers keeps names).
_CONSUMED = frozenset(
    (
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    )
)


class Upgrade(Response):
    """A handler's answer that switches protocols, or refuses to.

    ``head`` is the ``101`` to write as it is; ``start(connection)`` makes
    the protocol the transport goes to. A refusal has neither: it is an
    ordinary response that closes the connection.
    """

    __slots__ = ("head", "start")

    def __init__(
        self,
        head: bytes | None = None,
        start: Callable[[Upgraded], WebSocket] | None = None,
        refusal: Response | None = None,
    ) -> None:
        if refusal is not None:
            super().__init__(refusal.body, refusal.status, headers=refusal.headers)
        else:
            super().__init__(b"", 101)
        self.head = head
        self.start = start


class WebSocketRoute:
    """The ``GET`` handler of a WebSocket path. See the module docs.

    Args:
        factory: called once per accepted socket for its handler object (a
            class, say), whose ``on_open(ws)``, ``on_message(ws, data)``,
            ``on_close(ws, code, reason)`` and ``on_drain(ws)`` are called if
            it has them.
        subprotocols: the subprotocols this route speaks, most preferred first.
        origins: allowed ``Origin`` values (None: the server's ``ws_origins``).
        max_message: the largest message in bytes (None: ``ws_max_message_bytes``).
        compression: negotiate permessage-deflate when the client offers it.
        config: the server's settings, given when the app is attached.
    """

    __slots__ = ("factory", "subprotocols", "origins", "max_message", "compression", "config")

    def __init__(
        self,
        factory: Callable[[], Any],
        subprotocols: Iterable[str] = (),
        origins: str | Iterable[str] | None = None,
        max_message: int | None = None,
        compression: bool = True,
    ) -> None:
        self.factory = factory
        self.subprotocols = tuple(subprotocols)
        self.origins = parse_origins(origins) if origins is not None else None
        if max_message is not None and max_message <= 0:
            raise ValueError(f"max_message must be positive, not {max_message!r}")
        self.max_message = max_message
        self.compression = compression
        self.config: Config | None = None

    def __call__(self, request: Request) -> Upgrade:
        config = self.config
        if config is None:  # a route called before any server took the app
            config = self.config = Config()
        origins = self.origins if self.origins is not None else parse_origins(config.ws_origins)
        negotiate = deflate_negotiate if self.compression else None
        try:
            handshake = check(request, subprotocols=self.subprotocols, origins=origins, negotiate=negotiate)
        except HandshakeError as exc:
            error_log.info(
                "%d websocket upgrade refused for %s from %s: %s",
                exc.status,
                escape(request.path),
                request.client[0] if request.client else "?",
                escape(exc.detail),
            )
            refusal = Response.text(status_text(exc.status, exc.detail), exc.status, headers=exc.headers)
            return Upgrade(refusal=refusal)
        max_message = self.max_message if self.max_message is not None else config.ws_max_message_bytes
        return Upgrade(accept_head(handshake), _Starter(self.factory, request, handshake, max_message))


class _Starter:
    """Makes the WebSocket once the 101 is queued (a callable, not a closure, to be read in a traceback)."""

    __slots__ = ("factory", "request", "handshake", "max_message")

    def __init__(self, factory: Callable[[], Any], request: Request, handshake: Handshake, max_message: int):
        self.factory = factory
        self.request = request
        self.handshake = handshake
        self.max_message = max_message

    def __call__(self, connection: Upgraded) -> WebSocket:
        handshake = self.handshake
        request = self.request
        # The socket keeps what a handler reads of its request (ws.request), but
        # not the fields the handshake consumed: what they chose is on the socket
        # itself, and an idle WebSocket should not pay a few hundred bytes for
        # them. Field names are interned: every socket shares one "host".
        kept = tuple(
            (intern(name), value) for name, value in request.headers.items() if name not in _CONSUMED
        )
        return WebSocket(
            connection,
            self.factory(),
            HandshakeRequest(request, kept),
            max_message=self.max_message,
            subprotocol=handshake.subprotocol,
            origin=handshake.origin,
            deflate=handshake.deflate,
        )
