"""WSGI (PEP 3333): run Flask, Django or any WSGI callable under reactor.

``python -m reactor --app module:application`` finds a WSGI callable (anything
callable without a ``handle`` method) and wraps it in a :class:`WSGIApp`.
Every WSGI request runs in the server's thread pool (:mod:`reactor.pool`):
the loop keeps the socket, parses the request, and hands the worker an
``environ`` whose ``wsgi.input`` streams the body as it arrives; the worker
calls the application and pulls its response iterable, and the loop sends
what it yields. Neither side holds more than a few high-water marks of a
body in memory, whatever its size (see docs/wsgi.md).

What the server does, as PEP 3333 asks:

* ``environ``: ``SCRIPT_NAME`` is ``Config.root_path`` (``--root-path``), and
  ``PATH_INFO`` the path after it, percent-decoded to bytes and read as
  ISO-8859-1 ("bytes as latin-1"); ``HTTP_*`` for each header, except names
  with an underscore (``X_Forwarded_For`` would otherwise pass for
  ``X-Forwarded-For``: gunicorn and uvicorn drop them too);
  ``wsgi.url_scheme`` is ``request.scheme`` (``https`` when a trusted proxy
  says so); ``wsgi.input_terminated`` is True (``read()`` returns ``b""`` at
  the end of the body, chunked bodies included).
* ``start_response``: called once, or again with ``exc_info`` (which re-raises
  once the head has been sent); headers are not sent until the first
  non-empty piece of the body (or the first ``write()``). Hop-by-hop headers
  (``Connection``, ``Transfer-Encoding``, ``Keep-Alive``...) are refused: the
  application raised, so the client gets 500 and the log says why.
  ``Content-Length`` from the application frames the body (the server never
  sends more than it says, and closes the connection if it sends less).
* The response iterable's ``close()`` is always called: at its end, on an
  error, and when the client leaves.
* ``wsgi.file_wrapper``: a wrapped regular file is sent with ``sendfile``.
* ``HEAD``: the head alone; the iterable is closed without being read further.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from .http.request import Request
from .http.response import FileBody, Response
from .log import error_log, escape
from .pool import Handoff, Offload

if TYPE_CHECKING:
    from types import TracebackType

    from .server import Server

__all__ = ["HOP_BY_HOP", "FileWrapper", "WSGIApp", "WSGIInput", "is_wsgi"]

WSGICallable = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: RFC 9110 §7.6.1 and PEP 3333: connection-specific fields an application
#: may not set (the server owns the connection and the framing).
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    )
)
# Fields the server writes itself: the application's copy is dropped.
_SERVER_OWNED = frozenset(("date", "server"))

# The standard reason phrases: an application's "200 OK" frames like Response's own 200.
_PHRASES = {status.value: status.phrase for status in HTTPStatus}

# Pieces read by readline() when no newline is buffered.
_LINE_READ = 65536


def is_wsgi(app: object) -> bool:
    """Whether ``app`` is taken for a WSGI callable: callable, and no reactor
    :class:`~reactor.app.App` (which has ``handle``)."""
    return callable(app) and not hasattr(app, "handle")


class WSGIInput:
    """``wsgi.input``: the request body, read as it arrives from the client.

    A read waits for the bytes (``body_timeout_s`` at most between them);
    ``b""`` is the end of the body. A client that leaves makes the next read
    raise :class:`~reactor.pool.ClientDisconnected` (an ``OSError``).
    """

    __slots__ = ("_handoff", "_buffer")

    def __init__(self, handoff: Handoff) -> None:
        self._handoff = handoff
        self._buffer = b""  # read ahead by readline()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data, self._buffer = self._buffer + self._handoff.read(-1), b""
            return data
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            if len(data) == size:
                return data
            return data + self._handoff.read(size - len(data))
        return self._handoff.read(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line
            if 0 <= limit <= len(self._buffer):
                line, self._buffer = self._buffer[:limit], self._buffer[limit:]
                return line
            more = self._handoff.read(_LINE_READ, partial=True)
            if not more:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += more

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _Errors:
    """``wsgi.errors``: what the application writes goes to ``reactor.error``, a line at a time."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            error_log.error("wsgi.errors: %s", escape(line))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            error_log.error("wsgi.errors: %s", escape(self._partial))
            self._partial = ""


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server sends with ``sendfile`` when it
    is a regular file, or reads in ``block_size`` pieces otherwise."""

    __slots__ = ("filelike", "block_size")

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.block_size)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class WSGIApp:
    """A WSGI callable as a reactor application: every request runs in the pool.

    Args:
        application: the WSGI callable (``application(environ, start_response)``).
    """

    #: Every request with a body is handed to the pool at its head.
    at_head = True

    def __init__(self, application: WSGICallable) -> None:
        self.application = application
        self.root_path = ""
        self.multiprocess = False
        # The server's bound addresses (its list, filled when it listens) and
        # its configured address: not the server itself, which holds this app.
        self._addresses: list[tuple[str, int]] = []
        self._configured = ("localhost", "80")
        self._base: dict[str, Any] | None = None  # see _make_base

    def attach(self, server: Server) -> None:
        """Called by the server: read its root path, process model and address."""
        config = server.config
        self.root_path = config.root_path
        self.multiprocess = config.workers > 0
        self._addresses = server.addresses
        self._configured = (config.uds or config.host, str(config.port))
        self._base = None

    # -- what the connection calls -------------------------------------------

    def handle(self, request: Request) -> Response:
        """A request without a body: run the application in the pool."""
        raise Offload(self._work(request))

    def stream_body(self, request: Request) -> Callable[[Handoff], None]:
        """A request with a body: the worker starts at once and reads the body
        from ``wsgi.input`` while it arrives."""
        return self._work(request)

    def respond_early(self, request: Request) -> Response | None:
        return None

    def knows(self, method: str) -> bool:
        return True  # the application decides what it answers

    # -- the worker's side ----------------------------------------------------

    def _work(self, request: Request) -> Callable[[Handoff], None]:
        def work(handoff: Handoff) -> None:
            _Call(self, request, handoff).run()

        return work

    def environ(self, request: Request, handoff: Handoff) -> dict[str, Any]:
        """The PEP 3333 ``environ`` for ``request``."""
        environ = (self._base or self._make_base()).copy()
        path = request.raw_path
        # raw_path is the target as sent, read as ISO-8859-1: without a
        # percent sign it is PATH_INFO's "bytes as latin-1" already.
        path_info = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        script_name = self.root_path
        if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
            path_info = path_info[len(script_name) :]
        client = request.client or ("", 0)
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = path_info
        environ["QUERY_STRING"] = request.query_string
        environ["SERVER_PROTOCOL"] = request.version
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
        environ["wsgi.url_scheme"] = request.scheme
        environ["wsgi.input"] = WSGIInput(handoff)
        environ["wsgi.errors"] = _Errors()
        keys = _HTTP_KEYS
        for name, value in request.headers.items():
            key = keys.get(name)
            if key is None:
                key = _http_key(name)
                if key is None:
                    continue  # X_Forwarded_For must not pass for X-Forwarded-For
            if key in environ:
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                environ[key] = value
        return environ

    def _make_base(self) -> dict[str, Any]:
        """What every request's ``environ`` shares, made once the server's
        address is known (until then, for each request)."""
        server_name, server_port = self._server_address()
        base: dict[str, Any] = {
            "SCRIPT_NAME": self.root_path,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "wsgi.version": (1, 0),
            "wsgi.input_terminated": True,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self.multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        if self._addresses:
            self._base = base
        return base

    def _server_address(self) -> tuple[str, str]:
        if self._addresses:
            host, port = self._addresses[0]
            return host, str(port)
        return self._configured


#: Header name (lower-cased, as the parser gives it) -> its environ key; for
#: the names seen so far, up to :data:`_HTTP_KEYS_MAX` of them (the names are
#: the client's to choose: the table must not grow without bound).
_HTTP_KEYS: dict[str, str] = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
_HTTP_KEYS_MAX = 512


def _http_key(name: str) -> str | None:
    """``HTTP_`` and the name upper-cased with ``_`` for ``-``; None for a
    name with an underscore (dropped: it would pass for one with a dash)."""
    if "_" in name:
        return None
    key = "HTTP_" + name.upper().replace("-", "_")
    if len(_HTTP_KEYS) < _HTTP_KEYS_MAX:
        _HTTP_KEYS[name] = key
    return key


class _Call:
    """One WSGI call in a worker: ``start_response``, ``write`` and the iterable."""

    __slots__ = ("app", "request", "handoff", "status", "reason", "headers", "length", "sent_head")

    def __init__(self, app: WSGIApp, request: Request, handoff: Handoff) -> None:
        self.app = app
        self.request = request
        self.handoff = handoff
        self.status = 0  # start_response not called yet
        self.reason: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.length: int | None = None
        self.sent_head = False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent_head:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback
        elif self.status:
            raise AssertionError("start_response called a second time without exc_info")
        parsed = _STATUSES.get(status) if type(status) is str else None
        if parsed is None:
            parsed = _parse_status(status)
        status_code, phrase = parsed
        fields = []
        length = None
        kinds = _FIELD_KINDS
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI header names and values must be str: {name!r}: {value!r}")
            kind = kinds.get(name)
            if kind is None:
                kind = _field_kind(name)
            if kind is _KEEP:
                fields.append((name, value))
            elif kind is _LENGTH:
                if not value.isdigit():
                    raise ValueError(f"the application's Content-Length is not a number: {value!r}")
                length = int(value)
            elif kind is _HOP:
                raise ValueError(f"the application set the hop-by-hop header {name!r}")
        self.status, self.reason, self.headers, self.length = status_code, phrase, fields, length
        return self.write

    def _response(self, body: Any = b"") -> Response:
        return Response(body, self.status, headers=self.headers, reason=self.reason)

    def _begin(self) -> None:
        if not self.sent_head:
            self.sent_head = True
            self.handoff.begin(self._response(), self.length)

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: the head goes with the first bytes."""
        if not self.status:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not data:
            return
        self._begin()
        self.handoff.send(data)

    def run(self) -> None:
        handoff = self.handoff
        environ = self.app.environ(self.request, handoff)
        result: Any = self.app.application(environ, self.start_response)
        try:
            if self.status and type(result) is FileWrapper:
                file_body = _file_body(result, self.length)
                if file_body is not None:
                    result = None  # the connection owns the file now, and closes it
                    handoff.respond(self._response(file_body))
                    return
            pieces = iter(result)
            # start_response may come with the first piece (a generator calls
            # it when first pulled), and the head waits for the first bytes.
            pulled, done = _gather(pieces, handoff.high_water_bytes)
            if not self.status:
                raise AssertionError("the application returned without calling start_response")
            if done and not self.sent_head:
                # The whole body is in hand: one piece, framed with its length.
                body = b"".join(pulled)
                if self.length is not None:
                    if len(body) < self.length:
                        raise ValueError(
                            f"the body has {len(body)} bytes, its Content-Length says {self.length}"
                        )
                    body = body[: self.length]
                handoff.respond(self._response(body))
                return
            self._begin()
            for piece in pulled:
                if piece:
                    handoff.send(piece)
            for piece in pieces:
                if handoff.stopped and not handoff.gone:
                    break  # HEAD, 204, 304: no body is sent, so none is pulled
                if type(piece) is not bytes:
                    raise TypeError(f"a WSGI body yielded {type(piece).__name__}, not bytes")
                if piece:
                    handoff.send(piece)
            handoff.end()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


# What start_response does with a header field, by its name as the application
# spelled it: kept, the framing's Content-Length, dropped (the server writes
# it), or refused (hop-by-hop). For the names seen so far, up to 512.
_KEEP, _LENGTH, _DROP, _HOP = "keep", "length", "drop", "hop"
_FIELD_KINDS: dict[str, str] = {}
# Status strings seen so far ("200 OK"), up to 512: their code, and their
# reason phrase, or None for the standard one.
_STATUSES: dict[str, tuple[int, str | None]] = {}
_SEEN_MAX = 512


def _field_kind(name: str) -> str:
    lower = name.lower()
    if lower in HOP_BY_HOP:
        kind = _HOP
    elif lower == "content-length":
        kind = _LENGTH
    elif lower in _SERVER_OWNED:
        kind = _DROP
    else:
        kind = _KEEP
    if len(_FIELD_KINDS) < _SEEN_MAX:
        _FIELD_KINDS[name] = kind
    return kind


def _parse_status(status: object) -> tuple[int, str | None]:
    if type(status) is not str:
        raise TypeError(f"the WSGI status must be a str, not {type(status).__name__}")
    code, _, reason = status.partition(" ")
    if len(code) != 3 or not code.isdigit() or not reason:
        raise ValueError(f"the WSGI status must be like '200 OK', not {status!r}")
    status_code = int(code)
    # The standard phrase: the status line made once serves (None).
    parsed = status_code, None if _PHRASES.get(status_code) == reason else reason
    if len(_STATUSES) < _SEEN_MAX:
        _STATUSES[status] = parsed
    return parsed


def _gather(pieces: Iterator[Any], limit: int) -> tuple[list[bytes], bool]:
    """Pull pieces until their bytes pass ``limit`` or the iterable ends:
    ``(pieces, ended)``."""
    out: list[bytes] = []
    size = 0
    for piece in pieces:
        if type(piece) is not bytes:
            raise TypeError(f"a WSGI body yielded {type(piece).__name__}, not bytes")
        out.append(piece)
        size += len(piece)
        if size > limit:
            return out, False
    return out, True


def _file_body(wrapper: FileWrapper, length: int | None) -> FileBody | None:
    """The wrapped file as a :class:`FileBody`, if it is a regular file."""
    filelike = wrapper.filelike
    try:
        fd = filelike.fileno()
        info = os.fstat(fd)
        offset = filelike.tell()
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    count = max(0, info.st_size - offset)
    if length is not None:
        count = min(count, length)
    return FileBody(filelike, offset, count)
