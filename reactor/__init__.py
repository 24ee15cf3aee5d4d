"""reactor: a one-thread selectors HTTP/1.1 server, standard library only.

The names below are imported on first use (PEP 562): ``import reactor.http``
(the sans-IO engine) loads neither ``socket`` nor ``selectors``, and
``from reactor import Server`` loads the server and what it needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App, to_response
    from .config import Config
    from .connection import Connection, State
    from .http.errors import HTTPError, ProtocolError
    from .http.fields import MultiDict
    from .http.multipart import Form, UploadedFile
    from .http.request import Headers, Request
    from .http.response import FileBody, Response
    from .loop import Loop, Timer
    from .server import Server
    from .static import StaticFiles
    from .streams import Broadcast, EventStream, PushStream, StreamClosed
    from .transport import Transport
    from .websocket.protocol import WebSocket, WebSocketClosed

__version__ = "0.1.0"

# Public name -> the module that defines it.
_HOMES = {
    "App": ".app",
    "to_response": ".app",
    "Config": ".config",
    "Connection": ".connection",
    "State": ".connection",
    "HTTPError": ".http.errors",
    "ProtocolError": ".http.errors",
    "MultiDict": ".http.fields",
    "Form": ".http.multipart",
    "UploadedFile": ".http.multipart",
    "Headers": ".http.request",
    "Request": ".http.request",
    "FileBody": ".http.response",
    "Response": ".http.response",
    "Loop": ".loop",
    "Timer": ".loop",
    "Server": ".server",
    "StaticFiles": ".static",
    "Broadcast": ".streams",
    "EventStream": ".streams",
    "PushStream": ".streams",
    "StreamClosed": ".streams",
    "Transport": ".transport",
    "WebSocket": ".websocket.protocol",
    "WebSocketClosed": ".websocket.protocol",
}

__all__ = [
    "App",
    "Broadcast",
    "Config",
    "Connection",
    "EventStream",
    "FileBody",
    "Form",
    "HTTPError",
    "Headers",
    "Loop",
    "MultiDict",
    "ProtocolError",
    "PushStream",
    "Request",
    "Response",
    "Server",
    "State",
    "StaticFiles",
    "StreamClosed",
    "Timer",
    "Transport",
    "UploadedFile",
    "WebSocket",
    "WebSocketClosed",
    "__version__",
    "to_response",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'reactor' has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__
