"""A sans-IO HTTP/1.1 request parser: bytes in, events out.

Theory of operation
-------------------
The connection hands over whatever ``recv()`` returned with
:meth:`RequestParser.receive_data` (``b""`` means the peer closed its side),
then calls :meth:`RequestParser.next_event` until it answers
:data:`Event.NEED_DATA`. One request cycle yields, in order:

1. a :class:`~reactor.http.request.Request` once the head is complete and
   valid (``request.has_body`` says whether a body follows);
2. :data:`Event.END_OF_MESSAGE` once the body is complete (at once when there
   is none); the body is then in ``request.body``;
3. :data:`Event.PAUSED` until the connection calls
   :meth:`RequestParser.start_next_cycle`, after the response is written.

Pausing is what keeps pipelined requests in order: bytes of the next request
wait in the buffer, unparsed, until the current response is out.
:data:`Event.CLOSED` means the peer closed cleanly between requests.

Any violation raises a :class:`~reactor.http.errors.ProtocolError` whose
``status`` is the answer (400, 413, 414, 431, 501, 505). After that the parser
is broken for good: every later call raises the same error, so nothing that
follows a framing error is ever parsed.

Limits are enforced across partial reads: a head that is not complete yet is
still measured, so a client cannot make the buffer grow past the limits by
sending a little at a time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from .errors import (
    BadRequest,
    BodyTooLarge,
    HeadersTooLarge,
    NotImplementedCoding,
    ProtocolError,
    URITooLong,
    VersionNotSupported,
    shorten,
)
from .grammar import (
    ABSOLUTE_FORM_RE,
    CHUNK_LINE_RE,
    CONTENT_LENGTH_RE,
    FIELD_LINE_RE,
    FRAMING_FIELDS_RE,
    HOST_RE,
    OTHER_VERSION_RE,
    REQUEST_LINE_RE,
    REQUEST_START,
    TOKEN_RE,
    WHOLE_HEAD_RE,
)
from .request import Headers, Request

__all__ = ["Event", "ParserLimits", "RequestParser"]


class Event(enum.Enum):
    """What :meth:`RequestParser.next_event` returns besides a ``Request``."""

    NEED_DATA = "need data"
    END_OF_MESSAGE = "end of message"
    PAUSED = "paused"
    CLOSED = "closed"


NEED_DATA = Event.NEED_DATA
END_OF_MESSAGE = Event.END_OF_MESSAGE
PAUSED = Event.PAUSED
CLOSED = Event.CLOSED


class ParserLimits(Protocol):
    """The limits the parser enforces (the server's config satisfies this)."""

    @property
    def max_request_line_bytes(self) -> int: ...
    @property
    def max_header_line_bytes(self) -> int: ...
    @property
    def max_head_bytes(self) -> int: ...
    @property
    def max_header_count(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...


class _Phase(enum.Enum):
    HEAD = "head"
    BODY = "body"  # Content-Length framing
    CHUNK_SIZE = "chunk size line"
    CHUNK_DATA = "chunk data"
    CHUNK_CRLF = "CRLF after chunk data"
    TRAILERS = "trailer section"
    COMPLETE = "complete"  # a request without a body: END_OF_MESSAGE is next
    DONE = "done"
    ERROR = "error"


_HEAD = _Phase.HEAD
_BODY = _Phase.BODY
_CHUNK_SIZE = _Phase.CHUNK_SIZE
_CHUNK_DATA = _Phase.CHUNK_DATA
_CHUNK_CRLF = _Phase.CHUNK_CRLF
_TRAILERS = _Phase.TRAILERS
_COMPLETE = _Phase.COMPLETE
_DONE = _Phase.DONE
_ERROR = _Phase.ERROR

# Header fields the parser itself must understand to frame the message.
_FRAMING_FIELDS = frozenset(("content-length", "transfer-encoding", "host", "connection", "expect"))
# Longest chunk-size line (size, extensions and CRLF) we wait for.
_MAX_CHUNK_LINE_BYTES = 4096


class RequestParser:
    """Turns the bytes of one connection into requests. See the module docs."""

    __slots__ = (
        "limits",
        "_buf",
        "_pos",
        "_scan_from",
        "_line_start",
        "_phase",
        "_request",
        "_left",
        "_body",
        "_counted",
        "eof",
        "_error",
        "_head",
        "body_sink",
    )

    def __init__(self, limits: ParserLimits) -> None:
        self.limits = limits
        # Received bytes; those before _pos are parsed already. Empty is the
        # shared b"": an idle connection owns no buffer.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        # Where the next search for a line end resumes, and where the line
        # being received began (both counted from _pos), so that bytes
        # trickled in are each looked at once.
        self._scan_from = 0
        self._line_start = 0
        self._phase = _HEAD
        self._request: Request | None = None
        self._left = 0  # body or chunk data still to come
        self._body: bytes | bytearray = b""
        self._counted = 0  # bytes of the chunked body so far, framing included
        #: Whether the peer has closed its sending side (read it; the parser sets it).
        self.eof = False
        self._error: ProtocolError | None = None
        self._head: str | None = None  # this cycle's head, once its request line matched
        #: Set, it takes each piece of the body as it is parsed (a streamed
        #: body: reactor/pool.py), and ``request.body`` stays empty.
        self.body_sink: Callable[[bytes], object] | None = None

    # -- feeding -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer will send no more."""
        if not data:
            self.eof = True
            return
        buf = self._buf
        if not buf:
            # No copy of bytes: most requests arrive in one piece. A caller's
            # bytearray is copied, since the caller may reuse it.
            self._buf = data if type(data) is bytes else bytes(data)
            return
        # Parsed bytes are dropped now, when new ones arrive, and not each
        # time a request or chunk is consumed: consuming only moves _pos.
        pos = self._pos
        if isinstance(buf, bytes):
            grown = bytearray(memoryview(buf)[pos:])  # what is left, copied once
            grown += data
            self._buf = grown
        else:
            if pos:
                del buf[:pos]  # O(1): CPython moves a bytearray's start
            buf += data
        self._pos = 0

    @property
    def buffered(self) -> int:
        """How many received bytes are waiting to be parsed."""
        return len(self._buf) - self._pos

    @property
    def in_message(self) -> bool:
        """Whether part of a request has arrived and its cycle is not over."""
        return self._phase is not _HEAD or bool(self._buf)

    @property
    def at_rest(self) -> bool:
        """Whether the last request was read whole and nothing more is buffered:
        closing now cannot leave unread input behind."""
        return self._phase is _DONE and not self._buf

    def start_next_cycle(self) -> bool:
        """After the response to the current request is out, parse the next
        one; whether some of it is buffered already (as :attr:`buffered`
        would say, without another call)."""
        if self._phase is not _DONE:
            raise RuntimeError(f"can't start a new cycle while reading the {self._phase.value}")
        self._phase = _HEAD
        self._request = None
        self._head = None
        return len(self._buf) > self._pos

    def take_rest(self) -> bytes:
        """Hand over the received bytes not parsed yet, and forget them: after
        an upgrade they are the new protocol's first bytes."""
        rest = bytes(memoryview(self._buf)[self._pos :])
        self._buf = b""
        self._pos = 0
        return rest

    # -- events ------------------------------------------------------------

    def next_event(self) -> Request | Event:
        """The next event; raises :class:`ProtocolError` on bad input."""
        phase = self._phase
        if phase is _ERROR:
            assert self._error is not None
            raise self._error
        try:
            if phase is _HEAD:
                return self._read_head()
            if phase is _COMPLETE:
                self._phase = _DONE
                return END_OF_MESSAGE
            if phase is _DONE:
                return PAUSED
            return self._read_body()
        except ProtocolError as exc:
            self._phase = _ERROR
            self._error = exc
            # The request line, if it matched: the first line of the head.
            exc.request_line = None if self._head is None else self._head.partition("\r\n")[0]
            raise

    def _consume(self, n: int) -> None:
        """Mark ``n`` more bytes as parsed: O(1), nothing is copied."""
        pos = self._pos + n
        if pos >= len(self._buf):
            self._buf = b""  # the buffer is released at once
            self._pos = 0
        else:
            self._pos = pos

    def _read_head(self) -> Request | Event:
        buf = self._buf
        if not buf:
            return CLOSED if self.eof else NEED_DATA
        pos = self._pos
        first = buf[pos]
        if not REQUEST_START[first]:
            # Not the start of a request line: say so at once, not when the
            # header timeout runs out.
            raise _not_a_request(buf, pos)
        if first == 13 and buf.startswith(b"\r\n", pos):
            # RFC 9112 §2.2: ignore empty lines before the request-line.
            skip = pos + 2
            while buf.startswith(b"\r\n", skip):
                skip += 2
            self._consume(skip - pos)
            self._scan_from = self._line_start = 0
            return self._read_head()

        seen = self._scan_from
        # Resume 3 bytes back: "\r\n\r" may have ended the last read.
        scan = pos + seen - 3 if seen > 3 else pos
        end = buf.find(b"\r\n\r\n", scan) if scan else buf.find(b"\r\n\r\n")
        if end == -1:
            self._check_incomplete_head(buf, pos, pos + seen)
            if self.eof:
                raise BadRequest("connection closed in the middle of a request head")
            return NEED_DATA

        limits = self.limits
        size = end + 4 - pos
        if size > limits.max_head_bytes:
            line_end = buf.find(b"\r\n", pos) - pos
            if line_end > limits.max_request_line_bytes:
                raise URITooLong(f"request line is {line_end} bytes")
            raise HeadersTooLarge(f"request head is {size} bytes")
        text = buf[pos:end].decode("latin-1")  # every octet is one code point
        if end + 4 < len(buf):
            self._pos = end + 4
        else:
            self._buf = b""  # consumed: the buffer is released at once
            self._pos = 0
        if seen:
            self._scan_from = self._line_start = 0

        # A head too small for any line to reach a limit is matched whole, in
        # one call; any other head, and one that does not match, line by line.
        match = (
            WHOLE_HEAD_RE.fullmatch(text)
            if size <= limits.max_request_line_bytes
            and size <= limits.max_header_line_bytes
            # A field line takes 4 bytes or more: only a longer head may have too many.
            and (size <= 4 * limits.max_header_count or text.count("\r\n") <= limits.max_header_count)
            else None
        )
        if match is not None:
            method, target, major, minor, block = match.groups()
            self._head = text
            if major != "1" or minor not in {"1", "0"}:
                raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
            framing = FRAMING_FIELDS_RE.findall(block)
            headers = Headers(None, block)
        else:
            method, target, major, minor, fields = self._read_lines(text, size)
            framing = [field for field in fields if field[0] in _FRAMING_FIELDS]
            headers = Headers(fields)
        http11 = minor == "1"

        # Defaults: HTTP/1.1 persists unless told otherwise; 1.0 only if asked.
        keep_alive = http11
        content_length: int | None = None
        codings: list[str] | None = None
        hosts = 0
        host = ""
        expect_continue = False
        for name, value in framing:
            name = name.lower()
            value = value.rstrip(" \t")  # trailing OWS; only SP and HTAB
            if name == "host":  # the one in every request, so tested first
                hosts += 1
                if HOST_RE.fullmatch(value) is None:
                    raise BadRequest(f"invalid Host {shorten(value)}")
                host = value
            elif name == "content-length":
                content_length = _content_length(value, content_length)
            elif name == "transfer-encoding":
                if codings is None:
                    codings = []
                codings.extend(_list_elements(value))
            elif name == "connection":
                tokens = _list_elements(value)
                if "close" in tokens:
                    keep_alive = False
                elif not http11 and "keep-alive" in tokens:
                    keep_alive = True
            else:  # expect, RFC 9110 §10.1.1
                if value.lower() != "100-continue":
                    raise ProtocolError(f"unsupported expectation {shorten(value)}", 417)
                expect_continue = http11

        # RFC 9112 §3.2: exactly one Host in HTTP/1.1; at most one in 1.0.
        if hosts > 1 or (http11 and hosts == 0):
            raise BadRequest("HTTP/1.1 needs exactly one Host header" if http11 else "duplicate Host")

        if target[0] == "/" and "#" not in target:
            # origin-form, by far the most common: path and query.
            query_at = target.find("?")
            if query_at == -1:
                raw_path, query = target, ""
            else:
                raw_path, query = target[:query_at], target[query_at + 1 :]
        else:
            raw_path, query, authority = _split_target(method, target)
            if authority is not None:
                # RFC 9112 §3.2.2: the target's authority, not Host, names
                # the host (Host was still checked above, as §3.2 asks).
                host = authority

        chunked = False
        if codings is not None:
            # RFC 9112 §6.1, §6.3: only chunked, once, last; never with
            # Content-Length (a smuggling vector); never in HTTP/1.0.
            if not http11:
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            if content_length is not None:
                raise BadRequest("both Content-Length and Transfer-Encoding")
            _check_codings(codings)
            chunked = True
        elif content_length is not None and content_length > limits.max_body_bytes:
            raise BodyTooLarge(f"Content-Length {content_length}")

        request = Request(
            method,
            target,
            raw_path,
            query,
            "HTTP/1.1" if http11 else "HTTP/1.0",
            headers,
            keep_alive,
            expect_continue,
            content_length,
            chunked,
            b"",
            host,
        )
        self._request = request
        if chunked:
            self._phase = _CHUNK_SIZE
            self._counted = 0
        elif content_length:
            self._phase = _BODY
            self._left = content_length
        else:
            request.expect_continue = False  # nothing to continue with
            self._phase = _COMPLETE
        return request

    def _read_lines(self, text: str, size: int) -> tuple[str, str, str, str, list[tuple[str, str]]]:
        """The request line's parts and the fields of a head, line by line:
        each line's length, then its form, then the field count, checked as
        each line is reached, so that the first fault names the error."""
        limits = self.limits
        # Split on exactly CRLF, nothing else (str.splitlines() would also
        # split on \x0b, \x85...).
        lines = text.split("\r\n")
        line = lines[0]
        if len(line) > limits.max_request_line_bytes:
            raise URITooLong(f"request line is {len(line)} bytes")
        match = REQUEST_LINE_RE.fullmatch(line)
        if match is None:
            raise _request_line_error(line)
        method, target, major, minor = match.groups()
        self._head = text
        if major != "1" or minor not in {"1", "0"}:
            raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
        fields: list[tuple[str, str]] = []
        count = len(lines) - 1
        if count:
            max_count = limits.max_header_count
            if count > max_count:
                del lines[max_count + 2 :]  # the lines after the first one too many
            max_line = limits.max_header_line_bytes
            long_lines = size > max_line  # else no line can be over the limit
            field_line = FIELD_LINE_RE.fullmatch
            for line in lines[1:]:
                if long_lines and len(line) > max_line:
                    raise HeadersTooLarge(f"header line of {len(line)} bytes")
                match = field_line(line)
                if match is None:
                    raise _field_error(line)
                name, value = match.groups()
                fields.append((name.lower(), value.rstrip(" \t")))  # trailing OWS; only SP and HTAB
            if count > max_count:
                raise HeadersTooLarge(f"more than {max_count} header fields")
        return method, target, major, minor, fields

    def _check_incomplete_head(self, buf: bytes | bytearray, pos: int, scan: int) -> None:
        """Enforce the head's limits and refuse bare LF before it is complete.

        Only the bytes that arrived since the last call are searched: each
        line end is found once, and each finished line is measured once.
        """
        limits = self.limits
        line_start = pos + self._line_start
        lf = buf.find(b"\n", scan)  # only the bytes that are new
        while lf != -1:
            if lf == pos or buf[lf - 1] != 13:
                raise BadRequest("bare LF in request head")
            length = lf - 1 - line_start
            if line_start == pos:
                if length > limits.max_request_line_bytes:
                    raise URITooLong(f"request line is {length} bytes")
            elif length > limits.max_header_line_bytes:
                raise HeadersTooLarge(f"header line of {length} bytes")
            line_start = lf + 1
            lf = buf.find(b"\n", line_start)
        # A CR at the very end may be the first half of a CRLF: not counted.
        size = len(buf) - 1 if buf[-1] == 13 else len(buf)
        if line_start == pos:
            if size - pos > limits.max_request_line_bytes:
                raise URITooLong(f"request line over {limits.max_request_line_bytes} bytes")
        elif size - line_start > limits.max_header_line_bytes:
            raise HeadersTooLarge(f"header line over {limits.max_header_line_bytes} bytes")
        if len(buf) - pos > limits.max_head_bytes:
            raise HeadersTooLarge(f"request head over {limits.max_head_bytes} bytes")
        self._line_start = line_start - pos
        self._scan_from = len(buf) - pos

    def _read_body(self) -> Event:
        while True:
            phase = self._phase
            buf = self._buf
            pos = self._pos
            have = len(buf) - pos
            if phase is _BODY:
                left = self._left
                if left:
                    if not have:
                        return self._need_body()
                    if have <= left:
                        # All that is buffered is body: taken without a copy
                        # when it is the whole buffer (ours, in either type).
                        self._add_body(buf[pos:] if pos else buf)
                        self._buf = b""
                        self._pos = 0
                        self._left = left - have
                        if self._left:
                            return self._need_body()
                    else:
                        self._add_body(buf[pos : pos + left])
                        self._consume(left)
                        self._left = 0
                return self._finish()
            if phase is _CHUNK_SIZE:
                self._read_chunk_line(buf, pos, have)
                if self._phase is _CHUNK_SIZE:
                    return self._need_body()
            elif phase is _CHUNK_DATA:
                left = self._left
                if have >= left + 2:
                    # The common case: the data and its CRLF are both here.
                    if buf[pos + left] != 13 or buf[pos + left + 1] != 10:
                        raise BadRequest("chunk data not followed by CRLF")
                    self._add_body(buf[pos : pos + left])
                    self._consume(left + 2)
                    self._phase = _CHUNK_SIZE
                    continue
                if not have:
                    return self._need_body()
                take = self._left if self._left < have else have
                self._add_body(buf[pos : pos + take])
                self._consume(take)
                self._left -= take
                if self._left:
                    return self._need_body()
                self._phase = _CHUNK_CRLF
            elif phase is _CHUNK_CRLF:
                if have < 2:
                    if have and buf[pos] != 13:
                        raise BadRequest("chunk data not followed by CRLF")
                    return self._need_body()
                if not buf.startswith(b"\r\n", pos):
                    raise BadRequest("chunk data not followed by CRLF")
                self._consume(2)
                self._phase = _CHUNK_SIZE
            else:  # _TRAILERS
                return self._read_trailers()

    def _read_chunk_line(self, buf: bytes | bytearray, pos: int, have: int) -> None:
        """Parse a chunk-size line if it is complete; else check what has come.

        Every byte of a chunked body counts toward ``max_body_bytes``: the
        size lines and their extensions, the data, and the CRLF after the
        data (the trailer section counts toward the head limits instead).
        One line is also bounded by ``_MAX_CHUNK_LINE_BYTES``, CRLF included.
        """
        room = self.limits.max_body_bytes - self._counted
        seen = self._scan_from
        # Resume 1 byte back: a CR may have ended the last read.
        end = buf.find(b"\r\n", pos + seen - 1 if seen else pos)
        if end == -1:
            if buf.find(b"\n", pos + seen) != -1:
                raise BadRequest("bare LF in chunk size line")
            _check_chunk_line(have, room)
            self._scan_from = have
            return
        length = end + 2 - pos
        _check_chunk_line(length, room)
        match = CHUNK_LINE_RE.fullmatch(buf, pos, end)  # on the bytes: no copy
        if match is None:
            raise BadRequest(f"invalid chunk size line {shorten(bytes(buf[pos:end]))}")
        size = int(match.group(1), 16)
        self._consume(length)
        if seen:
            self._scan_from = 0
        if size == 0:
            self._counted += length
            self._phase = _TRAILERS
            return
        # The data and its CRLF are counted as soon as they are announced.
        counted = self._counted + length + size + 2
        if counted > self.limits.max_body_bytes:
            raise BodyTooLarge(f"chunked body over {self.limits.max_body_bytes} bytes")
        self._counted = counted
        self._left = size
        self._phase = _CHUNK_DATA

    def _add_body(self, piece: bytes | bytearray) -> None:
        """Append to the body: one buffer, however small the pieces.

        A body that arrives in one piece is kept as it is (no copy); from
        the second piece on, pieces are appended to one ``bytearray``, so a
        body of a million tiny chunks costs what its bytes cost.
        """
        sink = self.body_sink
        if sink is not None:
            sink(piece if type(piece) is bytes else bytes(piece))
            return
        body = self._body
        if not body:
            self._body = piece
        elif type(body) is bytes:
            grown = bytearray(body)
            grown += piece
            self._body = grown
        else:
            body += piece

    def _need_body(self) -> Event:
        if self.eof:
            raise BadRequest("connection closed in the middle of a request body")
        return NEED_DATA

    def _read_trailers(self) -> Event:
        # RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
        # The section is held to the head's limits: line, size and count.
        buf = self._buf
        if not buf:
            return self._need_body()
        pos = self._pos
        if buf.startswith(b"\r\n", pos):
            self._consume(2)
            return self._finish()
        limits = self.limits
        seen = self._scan_from
        end = buf.find(b"\r\n\r\n", pos + seen - 3 if seen > 3 else pos)
        if end == -1:
            line_start = pos + self._line_start
            lf = buf.find(b"\n", pos + seen)
            while lf != -1:
                if lf == pos or buf[lf - 1] != 13:
                    raise BadRequest("bare LF in trailer section")
                if lf - 1 - line_start > limits.max_header_line_bytes:
                    raise HeadersTooLarge(f"trailer line of {lf - 1 - line_start} bytes")
                line_start = lf + 1
                lf = buf.find(b"\n", line_start)
            size = len(buf) - 1 if buf[-1] == 13 else len(buf)
            if size - line_start > limits.max_header_line_bytes:
                raise HeadersTooLarge(f"trailer line over {limits.max_header_line_bytes} bytes")
            if len(buf) - pos > limits.max_head_bytes:
                raise HeadersTooLarge("trailer section too large")
            self._line_start = line_start - pos
            self._scan_from = len(buf) - pos
            return self._need_body()
        if end + 4 - pos > limits.max_head_bytes:
            raise HeadersTooLarge("trailer section too large")
        block = buf[pos:end].decode("latin-1")
        self._consume(end + 4 - pos)
        self._scan_from = self._line_start = 0
        assert self._request is not None
        self._request.trailers = Headers(_field_lines(block, limits))
        return self._finish()

    def _finish(self) -> Event:
        request = self._request
        assert request is not None
        body = self._body
        if body:
            request.body = body if type(body) is bytes else bytes(body)
            self._body = b""
        self._phase = _DONE
        return END_OF_MESSAGE


def _check_chunk_line(length: int, room: int) -> None:
    """Refuse a chunk-size line of ``length`` bytes so far, if it is too long.

    Of the two bounds (what is left of the body limit, and the longest line)
    the smaller is hit first, however the line arrives, and names the error.
    """
    if length > room or length > _MAX_CHUNK_LINE_BYTES:
        if room <= _MAX_CHUNK_LINE_BYTES:
            raise BodyTooLarge("chunked body over its limit (chunk-size lines count)")
        raise BadRequest(f"chunk size line over {_MAX_CHUNK_LINE_BYTES} bytes")


def _field_lines(block: str, limits: ParserLimits) -> list[tuple[str, str]]:
    """The fields of a trailer section's lines (CRLFs removed, joined by CRLF).

    The same rules as the head's field lines, checked in the same order:
    each line's length, then its form, then the field count, line by line.
    Names are lower-cased, trailing OWS is trimmed.
    """
    fields: list[tuple[str, str]] = []
    room = limits.max_header_count
    for line in block.split("\r\n"):
        if len(line) > limits.max_header_line_bytes:
            raise HeadersTooLarge(f"header line of {len(line)} bytes")
        match = FIELD_LINE_RE.fullmatch(line)
        if match is None:
            raise _field_error(line)
        if not room:
            raise HeadersTooLarge(f"more than {limits.max_header_count} header fields")
        room -= 1
        name, value = match.groups()
        fields.append((name.lower(), value.rstrip(" \t")))
    return fields


def _not_a_request(buf: bytes | bytearray, pos: int) -> ProtocolError:
    """The error for a first octet that cannot begin a request line."""
    first = buf[pos]
    if first == 10:
        return BadRequest("bare LF in request head")
    if first == 0x16 and buf[pos + 1 : pos + 2] in (b"", b"\x03"):
        # A TLS record of type handshake (22), version 3.x: a ClientHello.
        return BadRequest("TLS handshake on a plain-HTTP port (this server speaks HTTP without TLS)")
    return BadRequest(f"not an HTTP request: first byte 0x{first:02x} cannot start a request line")


def _list_elements(value: str) -> list[str]:
    """Lower-cased elements of a comma-separated list (RFC 9110 §5.6.1).

    Empty elements are dropped, as the RFC asks recipients to accept them.
    """
    elements = []
    for element in value.lower().split(","):
        element = element.strip(" \t")
        if element:
            elements.append(element)
    return elements


def _content_length(value: str, previous: int | None) -> int:
    """Validate one Content-Length field; repeats must agree (RFC 9110 §8.6)."""
    length = previous
    for element in value.split(","):
        element = element.strip(" \t")
        if CONTENT_LENGTH_RE.fullmatch(element) is None:
            raise BadRequest(f"invalid Content-Length {shorten(value)}")
        number = int(element)
        if length is not None and number != length:
            raise BadRequest("conflicting Content-Length values")
        length = number
    assert length is not None
    return length


def _check_codings(codings: list[str]) -> None:
    if not codings:
        raise BadRequest("empty Transfer-Encoding")
    for coding in codings:
        if TOKEN_RE.fullmatch(coding) is None:
            raise BadRequest(f"invalid transfer coding {shorten(coding)}")
    if codings.count("chunked") > 1:
        raise BadRequest("chunked applied more than once")
    if "chunked" in codings and codings[-1] != "chunked":
        raise BadRequest("chunked is not the final transfer coding")
    if codings != ["chunked"]:
        other = next(coding for coding in codings if coding != "chunked")
        raise NotImplementedCoding(f"transfer coding {shorten(other)} is not implemented")


def _split_target(method: str, target: str) -> tuple[str, str, str | None]:
    """The raw path, query string and authority of a request-target (RFC 9112 §3.2).

    The authority is None unless the target is in absolute-form.
    """
    if "#" in target:
        raise BadRequest("fragment in request target")
    authority = None
    if target[0] == "/":
        rest = target  # origin-form
    elif target == "*":
        if method != "OPTIONS":
            raise BadRequest("asterisk-form is only for OPTIONS")
        return "*", "", None
    else:
        match = ABSOLUTE_FORM_RE.match(target)
        if match is None:
            if method == "CONNECT":
                raise NotImplementedCoding("CONNECT is not implemented")
            raise BadRequest(f"invalid request target {shorten(target)}")
        authority = match.group(1)
        if "@" in authority:
            # RFC 9110 §4.2.4: userinfo in an http URI is refused.
            raise BadRequest(f"userinfo in the request target {shorten(target)}")
        if HOST_RE.fullmatch(authority) is None:
            raise BadRequest(f"invalid authority in the request target {shorten(target)}")
        if authority[:1] in ("", ":"):
            # RFC 9110 §4.2.1: an http URI with an empty host is invalid.
            raise BadRequest(f"no host in the request target {shorten(target)}")
        rest = target[match.end() :]
        if not rest.startswith("/"):
            rest = "/" + rest
    query_at = rest.find("?")
    if query_at == -1:
        return rest, "", authority
    return rest[:query_at], rest[query_at + 1 :], authority


def _request_line_error(line: str) -> ProtocolError:
    if "\n" in line or "\r" in line:
        return BadRequest("bare CR or LF in request line")
    if OTHER_VERSION_RE.fullmatch(line):
        return VersionNotSupported(f"unsupported version in {shorten(line)}")
    return BadRequest(f"invalid request line {shorten(line)}")


def _field_error(line: str) -> ProtocolError:
    """Say precisely what is wrong with a field line that did not match."""
    if line[:1] in (" ", "\t"):
        return BadRequest(f"obsolete line folding {shorten(line)}")
    if "\n" in line or "\r" in line:
        return BadRequest(f"bare CR or LF in {shorten(line)}")
    colon = line.find(":")
    if colon == -1:
        return BadRequest(f"header line without a colon {shorten(line)}")
    name = line[:colon]
    if name[-1:] in (" ", "\t"):
        return BadRequest(f"whitespace before the colon in {shorten(line)}")
    if TOKEN_RE.fullmatch(name) is None:
        return BadRequest(f"invalid header name {shorten(name)}")
    return BadRequest(f"invalid character in header value {shorten(line)}")
