"""A sans-IO, streaming ``multipart/form-data`` parser (RFC 7578, RFC 2046 §5.1).

:class:`MultipartParser` is fed the body in pieces of any size
(:meth:`~MultipartParser.feed`) and hands back events: a :class:`PartStart`
with the part's headers, :class:`PartData` with some of its bytes, a
:class:`PartEnd`. It reads no socket and keeps at most one part's header
block and a delimiter's length of body bytes. :func:`read_form` drives it over
a whole body, spooling files to :class:`tempfile.SpooledTemporaryFile`.

Linear time, whatever the input: each part's delimiter (CRLF ``--``
boundary) is found with ``bytes.find`` from where the last search stopped,
each header block with ``find(b"\\r\\n\\r\\n")`` likewise, and no regex runs
over the body. A failed search rules out every start position that leaves a
full delimiter before the end of the buffer, so the next search begins at the
first position not yet ruled out: each body byte is a candidate once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO, Any, NamedTuple
from urllib.parse import unquote

from .errors import HTTPError
from .fields import MAX_FIELDS, MultiDict

__all__ = [
    "Form",
    "MultipartParser",
    "PartData",
    "PartEnd",
    "PartStart",
    "UploadedFile",
    "parse_boundary",
    "parse_options",
    "read_form",
]

#: A part's header block at most (its lines and the blank line).
MAX_PART_HEADER_BYTES = 8192
#: Files larger than this move from memory to a temporary file on disk.
SPOOL_BYTES = 1048576
#: One text field's value at most (a file has no limit but the body's).
MAX_FIELD_BYTES = 1048576

# RFC 2046 §5.1.1 bchars: the characters a boundary may use (space not last).
# A control character but HTAB, as in an HTTP field line. One character class,
# searched once: each character is tested once, so linear time.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


@dataclass(slots=True)
class PartStart:
    """A part begins: its header fields (names lower-cased), and what its
    ``Content-Disposition`` and ``Content-Type`` say."""

    headers: list[tuple[str, str]]
    name: str
    filename: str | None
    content_type: str | None


@dataclass(slots=True)
class PartData:
    """Some bytes of the current part's body (a part may have many)."""

    data: bytes


@dataclass(slots=True)
class PartEnd:
    """The current part has ended."""


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)


def parse_options(text: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="a"; filename="b;c.txt"'`` as
    ``("form-data", {"name": "a", "filename": "b;c.txt"})``.

    Parameter names are lower-cased and the first of a repeated name wins. A
    quoted value may hold ``;``; ``\\"`` and ``\\\\`` in it are escapes, any
    other backslash is kept (browsers send file names unescaped). Linear time:
    each ``find`` looks only inside the current parameter, and a quoted value
    is read once, character by character.
    """
    main, _, rest = text.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        if rest[i] in " \t;":
            i += 1
            continue
        semi = rest.find(";", i)
        end = n if semi < 0 else semi
        eq = rest.find("=", i, end)
        if eq < 0:  # a parameter without a value: skipped
            i = end + 1
            continue
        name = rest[i:eq].strip(" \t").lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            out = []
            while i < n:
                char = rest[i]
                if char == "\\" and i + 1 < n and rest[i + 1] in '"\\':
                    out.append(rest[i + 1])
                    i += 2
                elif char == '"':
                    i += 1
                    break
                else:
                    out.append(char)
                    i += 1
            value = "".join(out)
            semi = rest.find(";", i)  # whatever follows the closing quote is dropped
            i = n if semi < 0 else semi + 1
        else:
            semi = rest.find(";", i)
            end = n if semi < 0 else semi
            value = rest[i:end].strip(" \t")
            i = end + 1
        params.setdefault(name, value)
    return main.strip(" \t").lower(), params


def parse_boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, checked.

    Raises:
        HTTPError: 400 when there is none, or it is not 1 to 70 bchars
            (RFC 2046 §5.1.1).
    """
    _, params = parse_options(content_type)
    boundary = params.get("boundary")
    if boundary is None:
        raise HTTPError(400, "multipart/form-data without a boundary")
    if not 1 <= len(boundary) <= 70 or boundary.endswith(" ") or not _BCHARS.issuperset(boundary):
        raise HTTPError(400, "a multipart boundary is 1 to 70 letters, digits or '()+_,-./:=? (RFC 2046)")
    return boundary.encode("ascii")


class MultipartParser:
    """Bytes of a ``multipart/form-data`` body in, events out.

    Args:
        boundary: the boundary from the Content-Type (see :func:`parse_boundary`).
        max_parts: parts at most; one more is 413.
        max_header_bytes: one part's header block at most; over it, 413.

    Call :meth:`feed` with each piece of the body as it arrives, then
    :meth:`close`. A malformed body raises :class:`HTTPError` 400.
    """

    __slots__ = (
        "_delimiter",
        "_buffer",
        "_search_from",
        "_state",
        "_parts",
        "max_parts",
        "max_header_bytes",
    )

    def __init__(
        self,
        boundary: bytes,
        *,
        max_parts: int = MAX_FIELDS,
        max_header_bytes: int = MAX_PART_HEADER_BYTES,
    ) -> None:
        if not 1 <= len(boundary) <= 70:
            raise HTTPError(400, "a multipart boundary is 1 to 70 characters (RFC 2046)")
        self._delimiter = b"\r\n--" + boundary
        # The first delimiter may begin the body, with no CRLF before it:
        # a CRLF put in front lets one search find every delimiter.
        self._buffer = bytearray(b"\r\n")
        self._search_from = 0
        self._state = _PREAMBLE
        self._parts = 0
        self.max_parts = max_parts
        self.max_header_bytes = max_header_bytes

    @property
    def done(self) -> bool:
        """Whether the final delimiter has been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[Event]:
        """Take the next piece of the body; return the events it completes."""
        if self._state == _DONE:
            return []  # the epilogue, ignored (RFC 2046 §5.1.1)
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        pos = 0
        delimiter = self._delimiter
        while True:
            state = self._state
            if state in (_PREAMBLE, _BODY):
                at = buffer.find(delimiter, max(pos, self._search_from))
                if at < 0:
                    # Every start before here leaves no room for a whole delimiter.
                    keep = max(pos, len(buffer) - len(delimiter) + 1)
                    if state == _BODY and keep > pos:
                        events.append(PartData(bytes(buffer[pos:keep])))
                    pos = keep
                    self._search_from = keep
                    break
                if state == _BODY:
                    if at > pos:
                        events.append(PartData(bytes(buffer[pos:at])))
                    events.append(PartEnd())
                pos = at + len(delimiter)
                self._search_from = pos
                self._state = _AFTER_DELIMITER
            elif state == _AFTER_DELIMITER:
                # "--" ends the body; else optional padding, then CRLF.
                if len(buffer) - pos < 2:
                    break
                if buffer[pos : pos + 2] == b"--":
                    self._state = _DONE
                    pos = len(buffer)
                    break
                line_end = buffer.find(b"\r\n", pos, pos + 66)
                if line_end < 0:
                    if len(buffer) - pos >= 66:
                        raise HTTPError(400, "a multipart delimiter is not followed by CRLF")
                    break
                if buffer[pos:line_end].strip(b" \t"):
                    raise HTTPError(400, "a multipart delimiter is not followed by CRLF")
                self._parts += 1
                if self._parts > self.max_parts:
                    raise HTTPError(413, f"more than {self.max_parts} parts in the multipart body")
                pos = line_end + 2
                self._search_from = pos
                self._state = _HEADERS
            elif state == _HEADERS:
                limit = pos + self.max_header_bytes  # the block and its blank line end by here
                if buffer[pos : pos + 2] == b"\r\n":  # no header fields at all
                    end = pos
                else:
                    # The search resumes 3 bytes back ("\r\n\r\n" may straddle
                    # pieces) and stops at the limit, so no byte past it is read.
                    end = buffer.find(b"\r\n\r\n", max(pos, self._search_from - 3), limit)
                    if end < 0:
                        if len(buffer) >= limit:
                            raise HTTPError(
                                413, f"a multipart part's headers exceed {self.max_header_bytes} bytes"
                            )
                        if len(buffer) - pos < 2:
                            break  # the blank line may yet come first
                        self._search_from = len(buffer)
                        break
                    end += 2
                if end + 2 > limit:
                    raise HTTPError(413, f"a multipart part's headers exceed {self.max_header_bytes} bytes")
                events.append(_part_start(bytes(buffer[pos:end])))
                pos = end + 2
                self._search_from = pos
                self._state = _BODY
        del buffer[:pos]
        self._search_from -= pos
        return events

    def close(self) -> None:
        """The body has ended.

        Raises:
            HTTPError: 400 when the final delimiter has not been read.
        """
        if self._state != _DONE:
            raise HTTPError(400, "the multipart body ends before its final boundary")


def _part_start(block: bytes) -> PartStart:
    """A part's header block (lines ending in CRLF) as a :class:`PartStart`."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = block.decode("latin-1")
    headers: list[tuple[str, str]] = []
    for line in text.split("\r\n"):
        if not line:
            continue
        if _CONTROL.search(line) is not None:  # a bare CR or LF, NUL, ESC, ...
            raise HTTPError(400, "a multipart part's header has a control character")
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip(" \t"):
            raise HTTPError(400, "a multipart part has a malformed header line")
        headers.append((name.lower(), value.strip(" \t")))
    disposition = next((value for key, value in headers if key == "content-disposition"), None)
    if disposition is None:
        raise HTTPError(400, "a multipart part has no Content-Disposition")
    kind, params = parse_options(disposition)
    if kind != "form-data" or "name" not in params:
        raise HTTPError(400, "a multipart part's Content-Disposition is not form-data with a name")
    filename = params.get("filename")
    extended = params.get("filename*")  # RFC 5987: charset'language'percent-encoded
    if extended is not None and extended.count("'") >= 2:
        charset, _, encoded = extended.split("'", 2)
        if charset.lower() in ("utf-8", "iso-8859-1"):
            filename = unquote(encoded, encoding=charset, errors="replace")
    content_type = next((value for key, value in headers if key == "content-type"), None)
    return PartStart(headers, params["name"], filename, content_type)


class UploadedFile:
    """A file from a ``multipart/form-data`` body.

    Attributes:
        name: the form field's name.
        filename: the name the client gave (its own choice: never use it as
            a path).
        content_type: the part's ``Content-Type``, or None.
        headers: the part's header fields, names lower-cased.
        size: its length in bytes.
        file: a binary file object holding it, at position 0: a
            :class:`tempfile.SpooledTemporaryFile`, in memory up to the spool
            size and on disk past it.
    """

    __slots__ = ("name", "filename", "content_type", "headers", "size", "file")

    def __init__(
        self,
        name: str,
        filename: str,
        content_type: str | None,
        headers: list[tuple[str, str]],
        file: IO[bytes],
        size: int,
    ) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.headers = headers
        self.file = file
        self.size = size

    def read(self) -> bytes:
        """The whole content (from the start, whatever has been read before)."""
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        """Close the file (deleting it from disk if it was spooled there)."""
        self.file.close()

    def __repr__(self) -> str:
        return f"<UploadedFile {self.name!r} {self.filename!r} {self.size} bytes>"


class Form(NamedTuple):
    """A parsed form: text fields and uploaded files, each name possibly repeated.

    ``fields, files = request.form()`` unpacks it.
    """

    fields: MultiDict[str]
    files: MultiDict[UploadedFile]

    def close(self) -> None:
        """Close every uploaded file."""
        for _, upload in self.files.multi_items():
            upload.close()


def read_form(
    pieces: Any,
    boundary: bytes,
    *,
    max_parts: int = MAX_FIELDS,
    max_header_bytes: int = MAX_PART_HEADER_BYTES,
    max_field_bytes: int = MAX_FIELD_BYTES,
    spool_bytes: int = SPOOL_BYTES,
) -> Form:
    """Parse a ``multipart/form-data`` body given as an iterable of ``bytes``.

    A part with a ``filename`` becomes an :class:`UploadedFile`, spooled to
    disk past ``spool_bytes``; any other part is a text field, decoded as UTF-8.

    Raises:
        HTTPError: 400 for a malformed body or a field that is not UTF-8;
            413 for too many parts, a part header block over
            ``max_header_bytes``, or a text field over ``max_field_bytes``.
    """
    parser = MultipartParser(boundary, max_parts=max_parts, max_header_bytes=max_header_bytes)
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, UploadedFile]] = []
    start: PartStart | None = None
    value = bytearray()
    spool: Any = None
    size = 0
    try:
        for piece in pieces:
            for event in parser.feed(piece):
                if isinstance(event, PartData):
                    size += len(event.data)
                    if spool is not None:
                        spool.write(event.data)
                    elif size > max_field_bytes:
                        raise HTTPError(413, f"a form field exceeds {max_field_bytes} bytes")
                    else:
                        value += event.data
                elif isinstance(event, PartStart):
                    start, size = event, 0
                    value.clear()
                    if event.filename is not None:
                        # Imported here: tempfile brings shutil, bz2, lzma and zlib,
                        # which a server that never takes an upload need not hold.
                        import tempfile  # noqa: PLC0415

                        spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115  # the UploadedFile owns it
                elif start is not None:  # PartEnd
                    if spool is not None:
                        spool.seek(0)
                        upload = UploadedFile(
                            start.name, start.filename or "", start.content_type, start.headers, spool, size
                        )
                        files.append((start.name, upload))
                        spool = None
                    else:
                        try:
                            fields.append((start.name, value.decode("utf-8")))
                        except UnicodeDecodeError as exc:
                            raise HTTPError(
                                400, f"form field {start.name[:40]!r} is not UTF-8 (byte {exc.start})"
                            ) from None
        parser.close()
    except BaseException:
        if spool is not None:
            spool.close()
        for _, upload in files:
            upload.close()
        raise
    return Form(MultiDict(fields), MultiDict(files))
