"""Responses and their serialization: response in, bytes out.

The server owns the framing: :func:`frame` decides how each body is
delimited (RFC 9112 §6.3), from its status, the request's version and the
body's length when it is known:

======================  =====================================  ==========
the response            framing                                 body sent
======================  =====================================  ==========
1xx, 204, 304           :data:`Framing.NONE` (no length field)  never
a known length          :data:`Framing.LENGTH` (Content-Length) not HEAD
streamed, HTTP/1.1      :data:`Framing.CHUNKED`                 not HEAD
streamed, HTTP/1.0      :data:`Framing.CLOSE` (ends at close)   not HEAD
======================  =====================================  ==========

A close-delimited body forbids keep-alive; :func:`encode_chunk` and
:data:`LAST_CHUNK` frame a chunked one. The server writes the status line (always ``HTTP/1.1``),
``Server``, ``Date``, ``Content-Length`` and ``Connection``. A handler supplies
the status, its own header fields and the body. Anything a handler supplies is
checked when the :class:`Response` is built, so the handler's own traceback
points at the bad line: a header name that is not a token, a value or reason
phrase with a control character other than HTAB (CR, LF, NUL, ESC, DEL, ...)
or a character outside ISO-8859-1, or a status outside 100..999, raises
:class:`~reactor.http.errors.LocalProtocolError`, so a handler that echoes user
input into a header can never split the response; a body of the wrong type
raises ``TypeError``. :func:`encode_head` checks the fields again (they may be
changed after the response is built) before a byte is written.
"""

from __future__ import annotations

import enum
import json as _json
import re
import time
from collections.abc import Iterable
from datetime import datetime
from http import HTTPStatus
from typing import Any

from .cookies import delete_cookie_header, set_cookie_header
from .errors import LocalProtocolError, shorten
from .grammar import TOKEN_RE

__all__ = [
    "LAST_CHUNK",
    "Body",
    "FileBody",
    "Framing",
    "Response",
    "encode_chunk",
    "encode_head",
    "frame",
    "http_date",
    "informational",
    "status_text",
]

SERVER = "reactor"

# Fields the server writes itself; a handler's copy would contradict them.
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "date", "server"))


def _status_lines() -> dict[int, bytes]:
    return {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


_STATUS_LINES = _status_lines()
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


def status_text(status: int, detail: str = "") -> str:
    """The one-line text body of a server-made answer: ``404 Not Found``, or
    ``404 Not Found: no such item`` with a ``detail``."""
    phrase = _PHRASES.get(status, "Error")
    return f"{status} {phrase}: {detail}\n" if detail else f"{status} {phrase}\n"


# Names and short values already checked: most repeat (``Content-Type:
# text/plain; charset=utf-8``), and a set look-up (the hash of a str is kept in
# the str) costs less than scanning it again. Bounded: at most 1024 of each, and
# only values of up to 64 characters.
_valid_names: set[str] = set()
_valid_values: set[str] = set()
_CACHED_VALUE_CHARS = 64


class FileBody:
    """A response body that is a range of an open file, sent with ``os.sendfile``.

    The connection owns the file once the response is handed over and closes
    it on every path: sent, failed, or the client gone.

    Args:
        file: an open binary file (anything with ``fileno()`` and ``close()``).
        offset: where the range starts.
        length: how many bytes to send.
    """

    __slots__ = ("file", "offset", "length")

    def __init__(self, file: Any, offset: int, length: int) -> None:
        self.file = file
        self.offset = offset
        self.length = length

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __repr__(self) -> str:
        return f"<FileBody {getattr(self.file, 'name', '?')!r} [{self.offset}:+{self.length}]>"


# RFC 9110 §5.5 and RFC 9112 §4: a field value and a reason phrase are made of
# HTAB, SP, VCHAR and obs-text (%x80-FF). One character class, searched once:
# each character is tested once and nothing is retried, so linear time. Also
# refuses what ISO-8859-1 cannot encode (above %xFF).
_BAD_TEXT_CHAR = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


def _check_value(name: str, value: str) -> None:
    """Refuse a header value that would corrupt the framing (callers look in
    ``_valid_values`` first), and remember a short one that passes."""
    if not (value.__class__ is str and value.isascii() and value.isprintable()):
        _check_text(f"value of header {name!r}", value)
    if len(value) <= _CACHED_VALUE_CHARS and len(_valid_values) < 1024 and value.__class__ is str:
        _valid_values.add(value)


def _check_text(what: str, text: str) -> None:
    """Refuse a header value or reason phrase that would corrupt the framing.

    Callers try ``text.isascii() and text.isprintable()`` first: two C loops,
    cheaper than a regex search, and true for nearly every value (a control
    character is never printable); only a value with HTAB, obs-text, a
    control character or a character above U+007F gets here.
    """
    if not isinstance(text, str):
        raise LocalProtocolError(f"{what} is a {type(text).__name__}, not a str")
    bad = _BAD_TEXT_CHAR.search(text)
    if bad is not None:
        kind = "a control character" if bad.group() <= "\x7f" else "a character outside ISO-8859-1"
        raise LocalProtocolError(f"{kind} ({bad.group()!r}) in {what}: {shorten(text)}")


def _check_body(body: object) -> None:
    """Refuse a body that is none of the kinds the connection can send.

    A push stream (:class:`reactor.streams.PushStream`, which this package
    does not import) is known by its ``attach``. ``bytearray`` and
    ``memoryview`` are refused although they are iterable: they iterate as
    ints, and a buffer the handler still holds could change while it is sent.
    """
    if isinstance(body, FileBody) or hasattr(type(body), "attach"):
        return
    if isinstance(body, (bytearray, memoryview)) or not isinstance(body, Iterable):
        raise TypeError(
            f"a response body is bytes, str, None, an iterable of bytes or str, a FileBody"
            f" or a PushStream, not {type(body).__name__}"
        )


#: What a response body may be: bytes; an iterable of bytes or str pulled as
#: the socket drains (a generator, say); a file range; or a push stream
#: (:class:`reactor.streams.PushStream`), written to later.
Body = Any


class Response:
    """An HTTP response: status, header fields and a body.

    Args:
        body: the body; ``str`` is encoded as UTF-8. Besides bytes it may be
            an iterable of bytes or str (streamed: chunked for HTTP/1.1
            clients, close-delimited for HTTP/1.0), a :class:`FileBody`, or a
            :class:`reactor.streams.PushStream`.
        status: the status code.
        headers: extra header fields as ``(name, value)`` pairs or a mapping.
        content_type: shorthand for a ``Content-Type`` field.
        reason: the reason phrase (the standard one by default).

    Raises:
        LocalProtocolError: a header name that is not a token or that the
            server writes itself, a header value or reason phrase with a
            control character other than HTAB or a character outside
            ISO-8859-1, or a status outside 100..999.
        TypeError: a body of another type (``bytearray`` and ``memoryview``
            included: pass ``bytes(...)``).
    """

    __slots__ = ("status", "headers", "body", "reason")

    def __init__(
        self,
        body: Body = b"",
        status: int = 200,
        headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
        content_type: str | None = None,
        reason: str | None = None,
    ) -> None:
        if status not in _STATUS_LINES and not (isinstance(status, int) and 100 <= status <= 999):
            raise LocalProtocolError(f"invalid status code {status!r}")
        self.status = status
        if body.__class__ is not bytes:
            if isinstance(body, str):
                body = body.encode()
            elif body is None:
                body = b""
            else:
                _check_body(body)
        self.body: Body = body
        if headers is None:
            # The common case (Response.text and friends): no list to copy or
            # walk, and the name is known to be good.
            if content_type is None:
                self.headers: list[tuple[str, str]] = []
            else:
                if content_type.__class__ is not str or content_type not in _valid_values:
                    _check_value("Content-Type", content_type)
                self.headers = [("Content-Type", content_type)]
        else:
            fields = list(headers.items()) if isinstance(headers, dict) else list(headers)
            if content_type is not None:
                fields.append(("Content-Type", content_type))
            valid_names = _valid_names
            valid_values = _valid_values
            for name, value in fields:
                if name not in valid_names:
                    _check_name(name)
                if value.__class__ is not str or value not in valid_values:
                    _check_value(name, value)
            self.headers = fields
        if reason is not None and not (reason.__class__ is str and reason.isascii() and reason.isprintable()):
            _check_text("reason phrase", reason)
        self.reason = reason

    @classmethod
    def text(cls, text: str, status: int = 200, **kwargs: Any) -> Response:
        """A ``text/plain; charset=utf-8`` response."""
        return cls(text.encode(), status, content_type="text/plain; charset=utf-8", **kwargs)

    @classmethod
    def html(cls, html: str, status: int = 200, **kwargs: Any) -> Response:
        """A ``text/html; charset=utf-8`` response."""
        return cls(html.encode(), status, content_type="text/html; charset=utf-8", **kwargs)

    @classmethod
    def json(cls, data: Any, status: int = 200, **kwargs: Any) -> Response:
        """An ``application/json`` response of ``data`` serialized compactly."""
        body = _json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(body, status, content_type="application/json", **kwargs)

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> Response:
        """A redirect to ``location`` (303 See Other by default)."""
        return cls(b"", status, headers=[("Location", location)])

    def get_header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def __repr__(self) -> str:
        size = f"{len(self.body)} bytes" if isinstance(self.body, bytes) else type(self.body).__name__
        return f"<Response {self.status} {size}>"

    def set_cookie(
        self,
        name: str,
        value: str,
        max_age: int | None = None,
        expires: datetime | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "Lax",
    ) -> None:
        """Add a ``Set-Cookie`` field (RFC 6265 §4.1); one per call.

        ``expires`` is an aware ``datetime`` or a Unix time.

        Raises:
            ValueError: a name that is not a token, a value that is not
                cookie-octets (encode anything else first: base64url, say), a path
                or domain with ``;`` or a control character, or
                ``samesite="None"`` without ``secure``.
        """
        self.headers.append(
            (
                "Set-Cookie",
                set_cookie_header(
                    name,
                    value,
                    max_age=max_age,
                    expires=expires,
                    path=path,
                    domain=domain,
                    secure=secure,
                    httponly=httponly,
                    samesite=samesite,
                ),
            )
        )

    def delete_cookie(self, name: str, path: str | None = "/", domain: str | None = None) -> None:
        """Add a ``Set-Cookie`` field that makes the client drop cookie ``name``
        (give the ``path`` and ``domain`` it was set with)."""
        self.headers.append(("Set-Cookie", delete_cookie_header(name, path=path, domain=domain)))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imf_fixdate(now: float) -> str:
    """``Sun, 06 Nov 1994 08:49:37 GMT`` (RFC 9110 §5.6.7), whatever the locale.

    Written here rather than taken from ``email.utils.formatdate``, which
    imports ``socket``: this package stays free of it.
    """
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class _DateCache:
    """The ``Date`` field, formatted at most once a second (RFC 9110 §6.6.1)."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.line = f"Server: {SERVER}\r\nDate: {imf_fixdate(now)}\r\n".encode()
        return self.line


_date = _DateCache()


def http_date() -> bytes:
    """The ``Server`` and ``Date`` lines for a response sent now."""
    return _date.get()


def _status_line(status: int, reason: str | None) -> bytes:
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
        if not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid status code {status!r}")
        reason = ""
    elif not (reason.__class__ is str and reason.isascii() and reason.isprintable()):
        _check_text("reason phrase", reason)
    if not (isinstance(status, int) and 100 <= status <= 999):
        raise LocalProtocolError(f"invalid status code {status!r}")
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def _check_name(name: str) -> None:
    """Refuse a header name that is not a token or that the server owns."""
    if not isinstance(name, str) or TOKEN_RE.fullmatch(name) is None:
        raise LocalProtocolError(f"invalid header name {shorten(name)}")
    if name.lower() in _FRAMING:
        raise LocalProtocolError(f"{name} is set by the server, not by a handler")
    if len(_valid_names) < 1024:
        _valid_names.add(name)  # most names repeat: check each once


#: The parts of common heads, by their one field ``(name, value)``: at 0, that
#: field's line (encoded), and by status, the status line. A field gets here
#: only once it has been checked, so a head made from these parts needs no
#: check. Bounded; what is kept are the handlers' own fields, the same for
#: every client (the ``Date`` line is added to each head as it is sent).
_heads: dict[tuple[str, str], dict[int, bytes]] = {}
_MAX_HEADS = 256


def _remember_head(field: tuple[str, str], status: int, status_line: bytes, line: str) -> None:
    if field.__class__ is not tuple or field[1].__class__ is not str or len(field[1]) > _CACHED_VALUE_CHARS:
        return
    try:
        encoded = line.encode("latin-1")
    except UnicodeEncodeError:
        return  # refused by the caller, below
    parts = _heads.setdefault(field, {0: encoded})
    parts[status] = status_line


def encode_head(
    response: Response,
    content_length: int | None,
    *,
    keep_alive: bool,
    http10_keep_alive: bool = False,
    chunked: bool = False,
) -> bytes:
    """The response's status line and header block, ready to send.

    Args:
        response: the response to frame.
        content_length: the ``Content-Length`` to send, or None to send none
            (for 1xx, 204 and 304 responses, or close-delimited bodies).
        keep_alive: False adds ``Connection: close``.
        http10_keep_alive: True adds ``Connection: keep-alive`` (an HTTP/1.0
            client that asked for persistence must be told it got it).
        chunked: True adds ``Transfer-Encoding: chunked``.

    Raises:
        LocalProtocolError: a header name, value or reason that would corrupt
            the framing.
    """
    headers = response.headers
    if len(headers) == 1 and content_length is not None and not http10_keep_alive:
        # The common answer (one field, a length) from parts made once: the
        # status line and that field line, checked then.
        field = headers[0]
        parts = _heads.get(field) if response.reason is None and field[1].__class__ is str else None
        if parts is not None:
            status_line = parts.get(response.status)
            if status_line is not None:
                return b"%b%b%bContent-Length: %d\r\n%b\r\n" % (
                    status_line,
                    _date.get(),
                    parts[0],
                    content_length,
                    b"" if keep_alive else b"Connection: close\r\n",
                )
    status_line = _STATUS_LINES.get(response.status) if response.reason is None else None
    if status_line is None:
        status_line = _status_line(response.status, response.reason)
    fields = []
    valid_names = _valid_names
    valid_values = _valid_values
    for name, value in headers:
        if name not in valid_names:
            _check_name(name)
        if value.__class__ is not str or value not in valid_values:
            _check_value(name, value)
        fields.append(f"{name}: {value}\r\n")
    if (
        len(fields) == 1
        and content_length is not None
        and not http10_keep_alive
        and response.reason is None
        and status_line is _STATUS_LINES.get(response.status)
        and len(_heads) < _MAX_HEADS
    ):
        _remember_head(headers[0], response.status, status_line, fields[0])
    if content_length is not None:
        fields.append(f"Content-Length: {content_length}\r\n")
    elif chunked:
        fields.append("Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        fields.append("Connection: close\r\n")
    elif http10_keep_alive:
        fields.append("Connection: keep-alive\r\n")
    fields.append("\r\n")
    try:
        block = "".join(fields).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"header text outside ISO-8859-1: {exc}") from None
    return b"".join((status_line, _date.get(), block))


def informational(status: int) -> bytes:
    """A complete 1xx response, such as ``100 Continue``."""
    return _STATUS_LINES[status] + b"\r\n"


def body_allowed(status: int) -> bool:
    """Whether a response with ``status`` may carry a body (RFC 9110 §6.4.1)."""
    return status >= 200 and status not in {204, 304}


# -- framing -----------------------------------------------------------------


class Framing(enum.Enum):
    """How a response body is delimited."""

    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # the body ends when the connection closes
    NONE = "none"  # no body at all (1xx, 204, 304)

    __hash__ = object.__hash__


LENGTH = Framing.LENGTH
CHUNKED = Framing.CHUNKED
CLOSE = Framing.CLOSE
NONE = Framing.NONE


def frame(status: int, version: str, length: int | None) -> Framing:
    """How to delimit the body of a ``status`` response to a ``version``
    request; ``length`` is the body's size, or None when it is streamed."""
    # RFC 9110 §6.4.1: 1xx, 204 and 304 responses have no body (the same
    # rule as body_allowed, inline: this runs for every response).
    if status < 200 or status in {204, 304}:
        return NONE
    if length is not None:
        return LENGTH
    return CHUNKED if version == "HTTP/1.1" else CLOSE


# Pieces up to this size are copied into their chunk framing (one buffer);
# larger ones are framed around, not copied.
_COPY_BYTES = 16384

#: The chunk that ends a chunked body (with no trailer fields).
LAST_CHUNK = b"0\r\n\r\n"


def encode_chunk(piece: bytes) -> tuple[bytes, ...]:
    """``piece`` as one chunk: the buffers to send, in order (never empty
    ``piece``: an empty chunk would end the body)."""
    if len(piece) <= _COPY_BYTES:
        return (b"%x\r\n%b\r\n" % (len(piece), piece),)
    return (b"%x\r\n" % len(piece), piece, b"\r\n")
