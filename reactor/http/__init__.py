"""The sans-IO HTTP/1.1 engine: bytes in, requests out; responses in, bytes out.

Nothing here imports a socket, a selector, or anything outside this package.
"""

from .errors import LocalProtocolError, ProtocolError
from .parser import Event, RequestParser
from .request import Headers, Request
from .response import Response, encode_head

__all__ = [
    "Event",
    "Headers",
    "LocalProtocolError",
    "ProtocolError",
    "Request",
    "RequestParser",
    "Response",
    "encode_head",
]
