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
    FIELD_BLOCK_RE,
    FIELD_LINE_RE,
    HEAD_RE,
    HOST_RE,
    OTHER_VERSION_RE,
    REQUEST_LINE_RE,
    TOKEN_RE,
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
# Longest chunk-size line (size plus extensions) we wait for.
_MAX_CHUNK_LINE_BYTES = 4096


class RequestParser:
    """Turns the bytes of one connection into requests. See the module docs."""

    __slots__ = (
        "limits",
        "_buf",
        "_scan_from",
        "_phase",
        "_request",
        "_left",
        "_parts",
        "_body_size",
        "_eof",
        "_error",
    )

    def __init__(self, limits: ParserLimits) -> None:
        self.limits = limits
        # Empty is the shared b"": an idle connection owns no buffer.
        self._buf: bytes | bytearray = b""
        self._scan_from = 0
        self._phase = _HEAD
        self._request: Request | None = None
        self._left = 0
        self._parts: list[bytes] | None = None
        self._body_size = 0
        self._eof = False
        self._error: ProtocolError | None = None

    # -- feeding -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer will send no more."""
        if not data:
            self._eof = True
        elif not self._buf:
            # No copy of bytes: most requests arrive in one piece. A caller's
            # bytearray is copied, since the caller may reuse it.
            self._buf = data if type(data) is bytes else bytes(data)
        elif isinstance(self._buf, bytearray):
            self._buf += data
        else:
            self._buf = bytearray(self._buf) + data

    @property
    def buffered(self) -> int:
        """How many received bytes are waiting to be parsed."""
        return len(self._buf)

    @property
    def eof(self) -> bool:
        """Whether the peer has closed its sending side."""
        return self._eof

    @property
    def in_message(self) -> bool:
        """Whether part of a request has arrived and its cycle is not over."""
        return self._phase is not _HEAD or bool(self._buf)

    @property
    def at_rest(self) -> bool:
        """Whether the last request was read whole and nothing more is buffered:
        closing now cannot leave unread input behind."""
        return self._phase is _DONE and not self._buf

    def start_next_cycle(self) -> None:
        """After the response to the current request is out, parse the next one."""
        if self._phase is not _DONE:
            raise RuntimeError(f"can't start a new cycle while reading the {self._phase.value}")
        self._phase = _HEAD
        self._request = None

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
            raise

    def _consume(self, n: int) -> None:
        buf = self._buf
        self._buf = b"" if n >= len(buf) else buf[n:]

    def _read_head(self) -> Request | Event:
        buf = self._buf
        if not buf:
            return CLOSED if self._eof else NEED_DATA
        if buf[0] == 13 and buf.startswith(b"\r\n"):
            # RFC 9112 §2.2: ignore empty lines before the request-line.
            skip = 2
            while buf.startswith(b"\r\n", skip):
                skip += 2
            self._consume(skip)
            self._scan_from = 0
            return self._read_head()

        end = buf.find(b"\r\n\r\n", self._scan_from)
        if end == -1:
            self._check_incomplete_head(buf)
            if self._eof:
                raise BadRequest("connection closed in the middle of a request head")
            return NEED_DATA

        limits = self.limits
        line_end = buf.find(b"\r\n")
        if line_end > limits.max_request_line_bytes:
            raise URITooLong(f"request line is {line_end} bytes")
        if end + 4 > limits.max_head_bytes:
            raise HeadersTooLarge(f"request head is {end + 4} bytes")
        head = buf[: end + 2].decode("latin-1")
        self._consume(end + 4)
        self._scan_from = 0

        # One fullmatch validates the request line and every field line.
        match = HEAD_RE.fullmatch(head)
        if match is None:
            raise _head_error(head, line_end, limits.max_header_line_bytes)
        method, target, major, minor, block = match.group(1, 2, 3, 4, 5)
        if major != "1" or minor not in {"1", "0"}:
            raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
        http11 = minor == "1"
        found = _parse_fields(block, limits, validated=True) if block else []

        fields: list[tuple[str, str]] = []
        framing: list[tuple[str, str]] = []
        for name, value in found:
            name = name.lower()
            value = value.rstrip(" \t")  # trailing OWS; only SP and HTAB
            fields.append((name, value))
            if name in _FRAMING_FIELDS:
                framing.append((name, value))

        # Defaults: HTTP/1.1 persists unless told otherwise; 1.0 only if asked.
        keep_alive = http11
        content_length: int | None = None
        codings: list[str] | None = None
        hosts = 0
        expect_continue = False
        for name, value in framing:
            if name == "content-length":
                content_length = _content_length(value, content_length)
            elif name == "transfer-encoding":
                if codings is None:
                    codings = []
                codings.extend(_list_elements(value))
            elif name == "host":
                hosts += 1
                if HOST_RE.fullmatch(value) is None:
                    raise BadRequest(f"invalid Host {shorten(value)}")
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
            raw_path, query = _split_target(method, target)

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
            Headers(fields),
            keep_alive,
            expect_continue,
            content_length,
            chunked,
        )
        self._request = request
        if chunked:
            self._phase = _CHUNK_SIZE
            self._parts = []
            self._body_size = 0
        elif content_length:
            self._phase = _BODY
            self._left = content_length
            self._parts = []
        else:
            request.expect_continue = False  # nothing to continue with
            self._phase = _COMPLETE
        return request

    def _check_incomplete_head(self, buf: bytes | bytearray) -> None:
        """Enforce the head's limits and refuse bare LF before it is complete."""
        limits = self.limits
        start = max(self._scan_from - 1, 0)
        lf = buf.find(b"\n", start)
        while lf != -1:
            if lf == 0 or buf[lf - 1] != 13:
                raise BadRequest("bare LF in request head")
            lf = buf.find(b"\n", lf + 1)
        # A CR at the very end may be the first half of a CRLF: not counted.
        size = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        line_end = buf.find(b"\r\n")
        if line_end == -1:
            if size > limits.max_request_line_bytes:
                raise URITooLong(f"request line over {limits.max_request_line_bytes} bytes")
        else:
            if line_end > limits.max_request_line_bytes:
                raise URITooLong(f"request line is {line_end} bytes")
            last = buf.rfind(b"\r\n")
            if size - last - 2 > limits.max_header_line_bytes:
                raise HeadersTooLarge(f"header line over {limits.max_header_line_bytes} bytes")
        if len(buf) > limits.max_head_bytes:
            raise HeadersTooLarge(f"request head over {limits.max_head_bytes} bytes")
        self._scan_from = max(len(buf) - 3, 0)

    def _read_body(self) -> Event:
        while True:
            phase = self._phase
            buf = self._buf
            if phase is _BODY:
                left = self._left
                if left:
                    if not buf:
                        return self._need_body()
                    assert self._parts is not None
                    if len(buf) <= left:
                        self._parts.append(bytes(buf))
                        self._buf = b""
                        self._left = left - len(buf)
                        if self._left:
                            return self._need_body()
                    else:
                        self._parts.append(bytes(buf[:left]))
                        self._consume(left)
                        self._left = 0
                return self._finish()
            if phase is _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end == -1:
                    if b"\n" in buf:
                        raise BadRequest("bare LF in chunk size line")
                    if len(buf) > _MAX_CHUNK_LINE_BYTES:
                        raise BadRequest("chunk size line too long")
                    return self._need_body()
                line = buf[:end].decode("latin-1")
                match = CHUNK_LINE_RE.fullmatch(line)
                if match is None:
                    raise BadRequest(f"invalid chunk size line {shorten(line)}")
                size = int(match.group(1), 16)
                self._consume(end + 2)
                if size == 0:
                    self._phase = _TRAILERS
                    continue
                self._body_size += size
                if self._body_size > self.limits.max_body_bytes:
                    raise BodyTooLarge(f"chunked body over {self.limits.max_body_bytes} bytes")
                self._left = size
                self._phase = _CHUNK_DATA
            elif phase is _CHUNK_DATA:
                if not buf:
                    return self._need_body()
                assert self._parts is not None
                take = min(self._left, len(buf))
                self._parts.append(bytes(buf[:take]))
                self._consume(take)
                self._left -= take
                if self._left:
                    return self._need_body()
                self._phase = _CHUNK_CRLF
            elif phase is _CHUNK_CRLF:
                if len(buf) < 2:
                    if buf and buf != b"\r":
                        raise BadRequest("chunk data not followed by CRLF")
                    return self._need_body()
                if not buf.startswith(b"\r\n"):
                    raise BadRequest("chunk data not followed by CRLF")
                self._consume(2)
                self._phase = _CHUNK_SIZE
            else:  # _TRAILERS
                return self._read_trailers()

    def _need_body(self) -> Event:
        if self._eof:
            raise BadRequest("connection closed in the middle of a request body")
        return NEED_DATA

    def _read_trailers(self) -> Event:
        # RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
        buf = self._buf
        if buf.startswith(b"\r\n"):
            self._consume(2)
            return self._finish()
        end = buf.find(b"\r\n\r\n")
        limits = self.limits
        if end == -1:
            if len(buf) > limits.max_head_bytes:
                raise HeadersTooLarge("trailer section too large")
            if len(buf) >= 2 and b"\n" in buf.replace(b"\r\n", b""):
                raise BadRequest("bare LF in trailer section")
            return self._need_body()
        if end + 4 > limits.max_head_bytes:
            raise HeadersTooLarge("trailer section too large")
        block = buf[: end + 2].decode("latin-1")
        self._consume(end + 4)
        found = _parse_fields(block, limits)
        assert self._request is not None
        self._request.trailers = Headers([(name.lower(), value.rstrip(" \t")) for name, value in found])
        return self._finish()

    def _finish(self) -> Event:
        request = self._request
        assert request is not None
        parts = self._parts
        if parts:
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = None
        self._phase = _DONE
        return END_OF_MESSAGE


def _parse_fields(block: str, limits: ParserLimits, validated: bool = False) -> list[tuple[str, str]]:
    """Validate a header or trailer block (lines ending in CRLF); its fields.

    The whole block is checked with one fullmatch (unless the caller's match
    already did); only when that fails are the lines walked to say what is
    wrong.
    """
    if not validated and FIELD_BLOCK_RE.fullmatch(block) is None:
        raise _field_error(block, limits.max_header_line_bytes)
    found: list[tuple[str, str]] = FIELD_LINE_RE.findall(block)  # values keep trailing OWS
    if len(found) > limits.max_header_count:
        raise HeadersTooLarge(f"{len(found)} header fields")
    if len(block) > limits.max_header_line_bytes:
        for line in block.split("\r\n"):
            if len(line) > limits.max_header_line_bytes:
                raise HeadersTooLarge(f"header line of {len(line)} bytes")
    return found


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


def _split_target(method: str, target: str) -> tuple[str, str]:
    """The raw path and query string of a request-target (RFC 9112 §3.2)."""
    if "#" in target:
        raise BadRequest("fragment in request target")
    if target[0] == "/":
        rest = target  # origin-form
    elif target == "*":
        if method != "OPTIONS":
            raise BadRequest("asterisk-form is only for OPTIONS")
        return "*", ""
    else:
        match = ABSOLUTE_FORM_RE.match(target)
        if match is None:
            if method == "CONNECT":
                raise NotImplementedCoding("CONNECT is not implemented")
            raise BadRequest(f"invalid request target {shorten(target)}")
        rest = target[match.end() :]
        if not rest.startswith("/"):
            rest = "/" + rest
    query_at = rest.find("?")
    if query_at == -1:
        return rest, ""
    return rest[:query_at], rest[query_at + 1 :]


def _head_error(head: str, line_end: int, max_line: int) -> ProtocolError:
    """Say what is wrong with a head that did not match: its line, or a field."""
    line = head[:line_end]
    match = REQUEST_LINE_RE.fullmatch(line)
    if match is None:
        return _request_line_error(line)
    major, minor = match.group(3, 4)
    if major != "1" or minor not in {"1", "0"}:
        return VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
    return _field_error(head[line_end + 2 :], max_line)


def _request_line_error(line: str) -> ProtocolError:
    if "\n" in line or "\r" in line:
        return BadRequest("bare CR or LF in request line")
    if OTHER_VERSION_RE.fullmatch(line):
        return VersionNotSupported(f"unsupported version in {shorten(line)}")
    return BadRequest(f"invalid request line {shorten(line)}")


def _field_error(block: str, max_line: int) -> ProtocolError:
    """Say precisely what is wrong with a header block that did not match."""
    for line in block.split("\r\n")[:-1]:
        if len(line) > max_line:
            return HeadersTooLarge(f"header line of {len(line)} bytes")
        if FIELD_LINE_RE.fullmatch(line + "\r\n"):
            continue
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
    return BadRequest("malformed header block")
