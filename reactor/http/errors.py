"""Errors of the HTTP engine, each carrying the status that answers it.

A :class:`ProtocolError` is the peer's fault: the connection answers it with
its ``status`` and ``Connection: close`` and reads nothing more. A
:class:`LocalProtocolError` is ours (a handler asked for something HTTP cannot
say, such as a CR in a header value): it becomes a 500 and is never blamed on
the peer. An :class:`HTTPError` is neither: a handler raises it to answer its
own request with a 4xx or 5xx, and the connection goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "HTTPError",
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
        #: The request line, when the error came after it was read (for the
        #: access log); the parser sets it.
        self.request_line: str | None = None


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


class HTTPError(Exception):
    """Raised by a handler to answer its request with ``status`` (4xx or 5xx).

    The app turns it into a short ``text/plain`` response (``404 Not Found:
    no such item``) with ``headers`` added, such as ``Allow`` for a 405 or
    ``WWW-Authenticate`` for a 401, and logs one line at DEBUG (4xx) or INFO
    (5xx), not a traceback: it is an answer, not a crash. The request was
    read whole, so the connection stays open.

    Args:
        status: the status code, 400 to 599.
        detail: a short text for the client, after the reason phrase.
        headers: extra header fields, ``(name, value)`` pairs or a mapping;
            checked like any response's.

    Raises:
        ValueError: ``status`` is not in 400..599 (for other statuses, return
            a :class:`~reactor.http.response.Response`).
    """

    def __init__(
        self,
        status: int,
        detail: str = "",
        headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"HTTPError takes a 4xx or 5xx status, not {status!r}")
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        if headers is None:
            self.headers: list[tuple[str, str]] = []
        elif isinstance(headers, Mapping):
            self.headers = list(headers.items())
        else:
            self.headers = list(headers)

    def __str__(self) -> str:
        return f"{self.status} {self.detail}" if self.detail else str(self.status)


class LocalProtocolError(Exception):
    """Our side misused HTTP (for example a handler's header holds a CR): a 500."""


def shorten(data: bytes | str, limit: int = 60) -> str:
    """``repr`` of ``data`` cut to ``limit`` characters, for error messages."""
    text = repr(data[:limit])
    return text + "..." if len(data) > limit else text
