"""gzip for handlers' responses, when the client accepts it.

:class:`Gzip` is the hook :class:`~reactor.app.App` runs on every response a
handler returns (when ``Config.gzip`` is on); ``docs/compression.md`` explains
each rule and the figures behind the defaults. In order, cheapest first:

* a ``bytes`` body under ``Config.gzip_min_bytes`` is left alone, and gets no
  ``Vary``: it is never compressed, whatever the client sends. This is the
  only test most small answers pay for;
* a push stream (:class:`reactor.streams.PushStream`) is never compressed,
  nor a status without a body, nor a 206 (its ``Content-Range`` counts bytes
  of the identity body), nor a response that has a ``Content-Encoding``
  already, nor a type that is not text (:func:`compressible`);
* ``text/event-stream`` is never compressed: an event stream lives for hours
  with an event now and then, and a compressor holds zlib's state (256 KiB
  reserved, 91 KiB resident after one event) for all that time, where an
  idle reactor connection costs about a kilobyte; each event would also have
  to be flushed on its own, which saves next to nothing on small events;
* from here on the response varies with ``Accept-Encoding`` and says so
  (``Vary``), compressed or not, so that a cache never hands a gzip body to a
  client that cannot read it;
* a request with ``Range`` gets the identity body, and so does a client that
  does not accept gzip (:func:`accepts_gzip`);
* a ``bytes`` body is compressed whole (the connection counts the new
  ``Content-Length``), unless that does not make it shorter; a file
  (:class:`~reactor.http.response.FileBody`) or an iterator is compressed
  piece by piece as the connection pulls it (:class:`GzipStream`), chunked;
* a strong ``ETag`` becomes weak (RFC 9110 §8.8.1: a strong tag names one
  sequence of bytes; nginx does the same).

A HEAD request goes through the same steps as a GET, so that its headers are
the GET's (its ``Content-Length`` is the compressed one); the connection then
sends no body.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from typing import Any

from .http.request import Request
from .http.response import FileBody, Response

__all__ = ["Gzip", "GzipStream", "accepts_gzip", "compressible"]

# Types worth compressing (text); anything else is taken as compressed
# already (images, audio, video, fonts, archives) or unknown.
_TEXT_TYPES = frozenset(
    (
        "application/json",
        "application/javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/manifest+json",
        "application/wasm",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    )
)
# Types under text/ that must not be compressed (see the module docs).
_NEVER = frozenset(("text/event-stream",))

# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
# Alternatives that start with different digits and bounded repeats: one way
# to match, in linear time (at most 5 characters are ever looked at).
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_OWS = " \t"

# Where a piece of a file is read and compressed (as the multipart reader does).
_FILE_PIECE = 65536
# gzip's framing (RFC 1952): zlib's window bits plus 16.
_GZIP_WBITS = 16 + zlib.MAX_WBITS

# A type's answer is the same every time: remember it. Bounded, as the
# response module's caches are.
_compressible: dict[str, bool] = {}


def compressible(content_type: str) -> bool:
    """Whether a body of ``content_type`` is worth compressing.

    ``text/*`` except ``text/event-stream``; JSON, JavaScript, XML and SVG;
    any ``+json`` or ``+xml`` type (RFC 6839). Parameters (``charset``) are
    ignored; case is not significant.
    """
    known = _compressible.get(content_type)
    if known is not None:
        return known
    kind = content_type.partition(";")[0].strip(_OWS).lower()
    answer = (
        (kind.startswith("text/") and kind not in _NEVER)
        or kind in _TEXT_TYPES
        or kind.endswith(("+json", "+xml"))
    )
    if len(_compressible) < 256:
        _compressible[content_type] = answer
    return answer


def accepts_gzip(values: list[str]) -> bool:
    """Whether ``Accept-Encoding`` (every field's value, in order) accepts gzip.

    RFC 9110 §12.5.3: a list of codings, each with an optional ``;q=``
    weight. ``gzip`` (or its old name ``x-gzip``, §8.4.1.3) with a weight
    above 0 accepts; ``gzip;q=0`` refuses, whatever ``*`` says; without a
    ``gzip`` element, ``*`` with a weight above 0 accepts. No field, an empty
    one, or only ``identity`` accepts nothing but identity. An element whose
    weight breaks the grammar is skipped. One pass over the elements with
    ``split`` and ``partition``: linear in the length of the value.
    """
    gzip: bool | None = None
    star: bool | None = None
    for value in values:
        for element in value.split(","):
            coding, _, parameters = element.partition(";")
            coding = coding.strip(_OWS).lower()
            if coding not in ("gzip", "x-gzip", "*"):
                continue
            weight = _weight(parameters)
            if weight is None:
                continue
            if coding == "*":
                star = weight
            elif gzip is None or not weight:
                gzip = weight  # a refusal wins over an acceptance listed with it
    if gzip is not None:
        return gzip
    return bool(star)


def _weight(parameters: str) -> bool | None:
    """Whether a coding's parameters give it a weight above 0; None if malformed."""
    if not parameters:
        return True
    name, equals, q = parameters.partition("=")
    if not equals or name.strip(_OWS).lower() != "q":
        return None
    q = q.strip(_OWS)
    if _QVALUE_RE.fullmatch(q) is None:
        return None
    return q.strip("0.") != ""  # "0", "0.0", "0.000" are zero; "0.001" is not


class GzipStream:
    """A streamed body compressed as the connection pulls it.

    Each piece of an iterator is compressed and flushed at once
    (``Z_SYNC_FLUSH``), so the client can read it as soon as it arrives: a
    stream that sends a line now and then is not held back until zlib's
    buffer fills. A file is read in 64 KiB pieces and flushed only at its end.
    :meth:`close` closes what it reads (the connection calls it on every
    path, the client gone included).
    """

    __slots__ = ("_source", "_file", "_offset", "_end", "_compressor", "_done")

    def __init__(self, source: Iterator[bytes | str] | FileBody, level: int) -> None:
        if isinstance(source, FileBody):
            self._file: FileBody | None = source
            self._source: Iterator[bytes | str] | None = None
            self._offset = source.offset
            self._end = source.offset + source.length
        else:
            self._file = None
            self._source = iter(source)
            self._offset = self._end = 0
        self._compressor: Any = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while not self._done:
            out = self._file_piece() if self._file is not None else self._iterator_piece()
            if out:
                return out
        raise StopIteration

    def _iterator_piece(self) -> bytes:
        assert self._source is not None
        try:
            piece = next(self._source)
        except StopIteration:
            return self._finish()
        if piece.__class__ is not bytes:
            piece = piece.encode() if isinstance(piece, str) else bytes(piece)
        if not piece:
            return b""
        compressor = self._compressor
        return compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)  # type: ignore[no-any-return]

    def _file_piece(self) -> bytes:
        assert self._file is not None
        if self._offset >= self._end:
            return self._finish()
        count = min(_FILE_PIECE, self._end - self._offset)
        data = os.pread(self._file.file.fileno(), count, self._offset)
        if not data:
            # The file shrank under us: the body cannot be completed.
            self.close()
            raise OSError(f"{self._file!r} ended before byte {self._offset}")
        self._offset += len(data)
        return self._compressor.compress(data)  # type: ignore[no-any-return]

    def _finish(self) -> bytes:
        tail: bytes = self._compressor.flush()
        self.close()
        return tail

    def close(self) -> None:
        """Let go of the source and of zlib's state (idempotent)."""
        self._done = True
        self._compressor = None
        source, self._source = self._source or self._file, None
        self._file = None
        close = getattr(source, "close", None)
        if close is not None:
            close()


class Gzip:
    """The compression hook: ``gzip(request, response)`` returns the response to send.

    Args:
        level: zlib's compression level, 1 (fastest) to 9 (smallest).
        min_bytes: a body shorter than this is sent as it is.
    """

    __slots__ = ("level", "min_bytes")

    def __init__(self, level: int = 1, min_bytes: int = 1024) -> None:
        if not 1 <= level <= 9:
            raise ValueError(f"gzip level must be 1 to 9, not {level!r}")
        self.level = level
        self.min_bytes = min_bytes

    def __repr__(self) -> str:
        return f"<Gzip level={self.level} min_bytes={self.min_bytes}>"

    def __call__(self, request: Request, response: Response) -> Response:
        body = response.body
        if body.__class__ is bytes:
            if len(body) < self.min_bytes:
                return response  # the hot path: most small answers stop here
        elif isinstance(body, FileBody):
            if body.length < self.min_bytes:
                return response
        elif hasattr(type(body), "attach"):
            return response  # a push stream: written to later, never compressed
        status = response.status
        if status == 206 or status < 200 or status in {204, 304}:
            return response
        kind = None
        etag = -1
        vary = -1
        headers = response.headers
        for index, (name, value) in enumerate(headers):
            lower = name.lower()
            if lower == "content-type":
                kind = value
            elif lower == "content-encoding":
                return response
            elif lower == "etag":
                etag = index
            elif lower == "vary":
                vary = index
        if kind is None or not compressible(kind):
            return response
        headers = list(headers)  # the handler may hand out the same response again
        if vary < 0:
            headers.append(("Vary", "Accept-Encoding"))
        elif not _lists(headers[vary][1], "accept-encoding"):
            headers[vary] = ("Vary", headers[vary][1] + ", Accept-Encoding")
        request_headers = request.headers
        if "range" in request_headers or not accepts_gzip(request_headers.get_all("accept-encoding")):
            return _copy(response, body, headers)
        if body.__class__ is bytes:
            # compressobj, not zlib.compress: its wbits argument is Python 3.11's.
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
            compressed = compressor.compress(body) + compressor.flush()
            if len(compressed) >= len(body):
                return _copy(response, body, headers)
            body = compressed
        else:
            body = GzipStream(body, self.level)
        headers.append(("Content-Encoding", "gzip"))
        if etag >= 0:
            name, value = headers[etag]
            if value.startswith('"'):
                headers[etag] = (name, "W/" + value)
        return _copy(response, body, headers)


def _lists(value: str, token: str) -> bool:
    """Whether the comma list ``value`` holds ``token`` (case-insensitive) or ``*``."""
    for element in value.split(","):
        element = element.strip(_OWS).lower()
        if element in (token, "*"):
            return True
    return False


def _copy(response: Response, body: Any, headers: list[tuple[str, str]]) -> Response:
    """A response like ``response`` with ``body`` and ``headers``."""
    return Response(body, response.status, headers=headers, reason=response.reason)
