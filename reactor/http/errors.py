"""Errors of the HTTP engine, each carrying the status that answers it.

A :class:`ProtocolError` is the peer's fault: the connection answers it with
its ``status`` and ``Connection: close`` and reads nothing more. A
:class:`LocalProtocolError` is ours (a handler asked for something HTTP cannot
say, such as a CR in a header value): it becomes a 500 and is never blamed on
the peer.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "HeadersTooLarge",
    "LocalProtocolError",
    "NotImplementedCoding",
    "ProtocolError",
    "URITooLong",
    "VersionNotSupported",
]


class ProtocolError(Exception):
    """The peer broke the protocol; answer with ``status`` and close."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(ProtocolError):
    """400: malformed syntax or framing."""

    status = 400


class BodyTooLarge(ProtocolError):
    """413: the body is longer than the configured limit."""

    status = 413


class URITooLong(ProtocolError):
    """414: the request line is longer than the configured limit."""

    status = 414


class HeadersTooLarge(ProtocolError):
    """431: a header line, the whole head, or the header count is over its limit."""

    status = 431


class NotImplementedCoding(ProtocolError):
    """501: a transfer coding (or method form) the server does not implement."""

    status = 501


class VersionNotSupported(ProtocolError):
    """505: an HTTP version other than 1.0 and 1.1."""

    status = 505


class LocalProtocolError(Exception):
    """Our side misused HTTP (for example a handler's header holds a CR): a 500."""


def shorten(data: bytes | str, limit: int = 60) -> str:
    """``repr`` of ``data`` cut to ``limit`` characters, for error messages."""
    text = repr(data[:limit])
    return text + "..." if len(data) > limit else text
