"""reactor: a one-thread selectors HTTP/1.1 server, standard library only."""

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

__version__ = "0.1.0"

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
    "UploadedFile",
    "__version__",
    "to_response",
]
