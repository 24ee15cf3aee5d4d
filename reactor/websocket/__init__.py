"""The sans-IO WebSocket engine (RFC 6455, RFC 7692): bytes in, events out; messages in, frames out.

Nothing here imports a socket, a selector, or anything outside this package.
"""

from .deflate import Deflate, negotiate
from .frames import (
    Close,
    CloseCode,
    Event,
    Message,
    Opcode,
    Ping,
    Pong,
    Reader,
    WebSocketError,
    binary,
    close_frame,
    encode_message,
    frame,
    ping,
    pong,
    text,
)

__all__ = [
    "Close",
    "CloseCode",
    "Deflate",
    "Event",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "Reader",
    "WebSocketError",
    "binary",
    "close_frame",
    "encode_message",
    "frame",
    "negotiate",
    "ping",
    "pong",
    "text",
]
