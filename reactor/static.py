"""Static files: a directory served the way nginx serves one, safely.

:class:`StaticFiles` is a handler; :meth:`reactor.app.App.static` mounts one
under a path prefix, and ``python -m reactor --static DIR`` serves a directory
at ``/``. ``docs/static.md`` explains every rule below and why it is there.

Safety
    The path is taken from ``request.raw_path`` and percent-decoded exactly
    once (``%252e`` stays the literal ``%2e``), as UTF-8, strictly. A path with
    NUL or a backslash, or with a ``.`` or ``..`` segment, is refused; empty
    segments (``//``) are dropped, so no segment can make the join absolute.
    The file is opened first and checked afterwards, on the descriptor: its
    real path (``/proc/self/fd``) must lie inside the real path of the root,
    so a symlink that leaves the root is a 404, and there is no window between
    a check and the open. Dotfiles are hidden unless ``show_dotfiles``. Every
    refusal is a plain 404 that says nothing about why. Running out of file
    descriptors is not a refusal: it answers 503 with ``Retry-After`` and
    ``Cache-Control: no-store``, so that no cache keeps a 404 for a file that
    exists.

Answers
    A directory without a trailing slash redirects (301) to the slashed path,
    rebuilt from the decoded segments, so the ``Location`` always starts with
    exactly one ``/`` and cannot name another host. A directory is served by
    its ``index`` file, else by a listing when ``listing`` is on (every name
    escaped), else 404. Types come from :mod:`mimetypes`; text types get
    ``charset=utf-8``, unknown ones ``application/octet-stream``, and every
    answer ``X-Content-Type-Options: nosniff``.

Validators and conditionals
    A strong ``ETag`` made of the modification time in nanoseconds and the
    size, and ``Last-Modified``. ``If-Match`` and ``If-Unmodified-Since``
    answer 412, ``If-None-Match`` and ``If-Modified-Since`` 304, in the order
    of RFC 9110 §13.2.2. Entity-tag lists are read in one pass, left to
    right; a list that does not follow the grammar holds no tag (so
    ``If-Match`` fails and ``If-None-Match`` does not match).

Ranges
    One range answers 206 with ``Content-Range``; a range set that no byte of
    the file satisfies answers 416. Several ranges are sorted and coalesced
    (overlapping or adjacent ones merge); if more than one remains the answer
    is ``multipart/byteranges``, read through Python in 64 KiB pieces. More
    than ``max_ranges`` ranges, or a malformed ``Range``, answer the whole file
    (200), as nginx does; empty list elements do not count. A position has
    no length limit: every position at or past the end of the file means the
    same, so a long one is compared by its digits, never converted whole.
    ``If-Range`` lets the range through only if it holds
    the current strong ``ETag`` or the exact ``Last-Modified`` date. ``Range``
    is honoured for GET only (RFC 9110 §14.2); a HEAD gets the 200 headers.

Sending
    A file (or a single range of one) is a :class:`~reactor.http.response.FileBody`:
    the connection sends it with ``os.sendfile`` as the socket drains and
    closes it on every path, so its bytes never pass through Python.

Precompressed files
    With ``gzip_static`` (the default), a text file's ``name.gz`` that is not
    older than it is sent instead, the same way, to a client that accepts
    gzip and asks for no range, with ``Content-Encoding: gzip``, the
    original's type and its own ``ETag``; every answer for a text file says
    ``Vary: Accept-Encoding``. ``docs/compression.md`` has the rules.
"""

from __future__ import annotations

import errno
import html
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import Iterator
from datetime import timezone
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from .compress import accepts_gzip, compressible
from .http.request import Request
from .http.response import FileBody, Response

__all__ = ["StaticFiles", "content_type_for"]

# Pieces of a multipart/byteranges body, read with pread().
_MULTIPART_PIECE = 65536
# Types whose mimetypes answer varies between Python versions and systems.
_WEB_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
    ".webp": "image/webp",
    ".wasm": "application/wasm",
    ".txt": "text/plain",
    ".md": "text/markdown",
}
# A compressed file is served as what it is, never with Content-Encoding: the
# client asked for the file, not for its contents.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}
# Types that are text without being text/*: they get a charset too.
_TEXT_TYPES = frozenset(
    ("application/javascript", "application/xml", "application/xhtml+xml", "image/svg+xml")
)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
# RFC 9110 §8.8.3: etagc = %x21 / %x23-7E / obs-text. One character class
# under one star: each character is taken or the match ends, so linear time.
_ETAGC_RE = re.compile(r"[\x21\x23-\x7e\x80-\xff]*")
# RFC 9110 §14.1.1: int-range = first-pos "-" [ last-pos ]; suffix-range =
# "-" suffix-length. Neither digit run can take the "-", so there is only one
# way to match: linear time.
_RANGE_SPEC_RE = re.compile(r"([0-9]*)-([0-9]*)")
_OWS = " \t"
# Runs of OWS, and of list separators (OWS and commas): one character class
# under one star each, so one way to match and linear time.
_OWS_RE = re.compile(r"[ \t]*")
_SEPARATORS_RE = re.compile(r"[ \t,]*")
# Out of descriptors (per process, or in the whole system): try again later.
_NO_DESCRIPTORS = frozenset((errno.EMFILE, errno.ENFILE))
_RETRY_AFTER_S = 1
_NOSNIFF = ("X-Content-Type-Options", "nosniff")


def content_type_for(name: str) -> str:
    """The ``Content-Type`` to send for a file called ``name``."""
    extension = os.path.splitext(name)[1].lower()
    kind: str | None = _WEB_TYPES.get(extension)
    if kind is None:
        kind, encoding = mimetypes.guess_type(name, strict=False)
        if encoding is not None:
            kind = _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
        elif kind is None:
            kind = "application/octet-stream"
    if kind.startswith("text/") or kind in _TEXT_TYPES:
        return f"{kind}; charset=utf-8"
    return kind


class _NotFound(Exception):
    """The request names nothing this handler may serve."""


class _Unavailable(Exception):
    """The process has no file descriptor to spare: the file may well exist."""


def _refuse_open(exc: OSError) -> Exception:
    """What a failed open() means for the answer: 503 when out of descriptors, else 404."""
    return _Unavailable() if exc.errno in _NO_DESCRIPTORS else _NotFound()


class _Multipart:
    """A ``multipart/byteranges`` body, pulled by the connection as the socket drains.

    It owns the file and closes it when it ends or when the connection lets go
    of it (the connection calls :meth:`close` on every path).
    """

    __slots__ = ("_file", "_parts", "_boundary", "_kind", "_size", "_part", "_offset", "_end", "_done")

    def __init__(self, file: Any, ranges: list[tuple[int, int]], boundary: str, kind: str, size: int) -> None:
        self._file = file
        self._parts = ranges
        self._boundary = boundary
        self._kind = kind
        self._size = size
        self._part = -1  # the part being read
        self._offset = 0
        self._end = 0  # one past its last byte
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        if self._offset < self._end:
            count = min(_MULTIPART_PIECE, self._end - self._offset)
            piece = os.pread(self._file.fileno(), count, self._offset)
            if not piece:
                # The file shrank under us: the framing cannot be kept.
                self.close()
                raise OSError(f"{self._file.name!r} ended before byte {self._offset}")
            self._offset += len(piece)
            return piece
        self._part += 1
        lead = b"" if self._part == 0 else b"\r\n"
        if self._part == len(self._parts):
            self.close()
            return lead + f"--{self._boundary}--\r\n".encode()
        start, end = self._parts[self._part]
        self._offset, self._end = start, end + 1
        return lead + (
            f"--{self._boundary}\r\nContent-Type: {self._kind}\r\n"
            f"Content-Range: bytes {start}-{end}/{self._size}\r\n\r\n"
        ).encode("latin-1")

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._done = True
        self._file.close()


class StaticFiles:
    """A handler that serves the files under ``directory``.

    Args:
        directory: the root; everything served lies inside its real path.
        prefix: the path it is mounted at (``"/"``, or ``"/static"``); the
            rest of the request path names the file.
        index: the file that serves a directory (None: none does).
        listing: list a directory that has no index file (off by default).
        show_dotfiles: serve names that start with ``.`` (off by default).
        cache_control: the ``Cache-Control`` of files; None sends none. The
            default ``no-cache`` lets clients keep copies but revalidate them
            (a cheap 304 thanks to the ``ETag``).
        max_ranges: more ranges than this in one ``Range`` answer the whole file.
        gzip_static: send ``name.gz``, when it lies beside a text file and is
            not older, to a client that accepts gzip (on by default; off when
            the server's ``Config.gzip`` is).

    Raises:
        ValueError: ``prefix`` does not start with ``/``.
        NotADirectoryError: ``directory`` is not a directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str = "/",
        index: str | None = "index.html",
        listing: bool = False,
        show_dotfiles: bool = False,
        cache_control: str | None = "no-cache",
        max_ranges: int = 16,
        gzip_static: bool = True,
    ) -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"prefix must start with '/': {prefix!r}")
        self.root = os.path.realpath(directory)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"not a directory: {os.fspath(directory)!r}")
        # "/static/" and "/static" mount the same; "/" is stored as "".
        self.prefix = "/" + "/".join(part for part in prefix.split("/") if part)
        if self.prefix == "/":
            self.prefix = ""
        self.index = index
        self.listing = listing
        self.show_dotfiles = show_dotfiles
        self.cache_control = cache_control
        self.max_ranges = max_ranges
        self.gzip_static = gzip_static

    def __repr__(self) -> str:
        return f"<StaticFiles {self.prefix or '/'} -> {self.root!r}>"

    def routes(self) -> list[str]:
        """The route paths that reach this handler (for :meth:`App.static`)."""
        if not self.prefix:
            return ["/", "/{path:path}"]
        return [self.prefix, self.prefix + "/", self.prefix + "/{path:path}"]

    # -- the handler -----------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        try:
            segments, slashed = self._segments(request.raw_path)
            return self._serve(request, segments, slashed)
        except _NotFound:
            return _error(404)
        except PermissionError:
            return _error(403)
        except _Unavailable:
            return _error(503)

    def _segments(self, raw_path: str) -> tuple[list[str], bool]:
        """The path segments below the mount point, and whether a slash ends them."""
        try:
            path = unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise _NotFound from None
        if "\x00" in path or "\\" in path:
            raise _NotFound
        if path == self.prefix:
            rest = ""
        elif path.startswith(self.prefix + "/"):
            rest = path[len(self.prefix) :]
        else:
            raise _NotFound
        segments = [segment for segment in rest.split("/") if segment]
        for segment in segments:
            if segment in (".", "..") or (segment[0] == "." and not self.show_dotfiles):
                raise _NotFound
        return segments, rest.endswith("/")

    def _serve(self, request: Request, segments: list[str], slashed: bool) -> Response:
        fd, st = self._open(os.path.join(self.root, *segments))
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            if not slashed:
                return self._redirect_to_directory(request, segments)
            return self._serve_directory(request, segments)
        if slashed:
            os.close(fd)
            raise _NotFound  # "file.txt/" names a directory that is not there
        return self._serve_file(request, fd, st, os.path.join(self.root, *segments))

    def _open(self, path: str) -> tuple[int, os.stat_result]:
        """Open ``path`` and check, on the descriptor, that it may be served."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except PermissionError:
            # 403 only for a file inside the root: the answer must not tell
            # what lies beyond a symlink that leaves it.
            if not self._inside(os.path.realpath(path)):
                raise _NotFound from None
            raise
        except OSError as exc:
            raise _refuse_open(exc) from None
        except ValueError:
            raise _NotFound from None
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise _NotFound
            self._check_inside(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _check_inside(self, fd: int, path: str) -> None:
        """Refuse a file whose real path leaves the root or passes a dotfile."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(path)  # no /proc: resolve the name instead
        if not self._inside(real):
            raise _NotFound

    def _inside(self, real: str) -> bool:
        """Whether the real path ``real`` is the root or below it (and shown)."""
        if real == self.root:
            return True
        root = self.root if self.root.endswith(os.sep) else self.root + os.sep
        if not real.startswith(root):
            return False
        # A dotfile reached through a symlink with a plain name is still hidden.
        return self.show_dotfiles or not any(part.startswith(".") for part in real[len(root) :].split(os.sep))

    def _redirect_to_directory(self, request: Request, segments: list[str]) -> Response:
        # Rebuilt from the decoded segments: one leading "/", every segment
        # quoted, so the Location can never read as "//host" or "/\host".
        location = self.prefix + "/" + "".join(quote(segment) + "/" for segment in segments)
        if request.query_string:
            location += "?" + request.query_string
        return Response(b"", 301, headers=[("Location", location), _NOSNIFF])

    def _serve_directory(self, request: Request, segments: list[str]) -> Response:
        directory = os.path.join(self.root, *segments)
        if self.index is not None:
            try:
                fd, st = self._open(os.path.join(directory, self.index))
            except _NotFound:
                pass
            else:
                if stat.S_ISREG(st.st_mode):
                    return self._serve_file(request, fd, st, os.path.join(directory, self.index))
                os.close(fd)
        if not self.listing:
            raise _NotFound
        return self._listing(directory, segments)

    def _listing(self, directory: str, segments: list[str]) -> Response:
        entries = []
        try:
            with os.scandir(directory) as scan:
                for entry in scan:
                    if entry.name.startswith(".") and not self.show_dotfiles:
                        continue
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        continue
                    entries.append((not is_dir, entry.name, is_dir))
        except OSError as exc:
            raise _refuse_open(exc) from None
        entries.sort()
        shown = self.prefix + "/" + "".join(segment + "/" for segment in segments)
        title = html.escape(_printable(shown))
        lines = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Index of {title}</title></head>",
            f"<body><h1>Index of {title}</h1><ul>",
        ]
        if segments:
            lines.append('<li><a href="../">../</a></li>')
        for _, name, is_dir in entries:
            slash = "/" if is_dir else ""
            href = quote(name, errors="surrogateescape") + slash
            lines.append(f'<li><a href="{html.escape(href)}">{html.escape(_printable(name))}{slash}</a></li>')
        lines.append("</ul></body></html>\n")
        headers = [_NOSNIFF, ("Cache-Control", "no-cache")]
        return Response("\n".join(lines), 200, headers=headers, content_type="text/html; charset=utf-8")

    # -- one file ----------------------------------------------------------------

    def _serve_file(self, request: Request, fd: int, st: os.stat_result, path: str) -> Response:
        try:
            kind = content_type_for(os.path.basename(path))
            vary = self.gzip_static and compressible(kind)
            encoding = None
            if vary:
                precompressed = self._precompressed(request, path, st)
                if precompressed is not None:
                    os.close(fd)
                    (fd, st), encoding = precompressed, "gzip"
            return self._answer_file(request, fd, st, kind, vary, encoding)
        except BaseException:
            os.close(fd)
            raise

    def _precompressed(
        self, request: Request, path: str, st: os.stat_result
    ) -> tuple[int, os.stat_result] | None:
        """The open ``path + ".gz"`` and its status, if it is to be sent instead.

        As nginx's ``gzip_static``: only to a client that accepts gzip, and
        only if the ``.gz`` is a regular file, not empty, and not older than
        the file (an older one may hold a previous version). Never for a
        request with ``Range``: its byte positions count in the identity
        file, which is what it gets. The ``.gz`` passes the same checks as
        any file served (inside the root, no dotfile on the way).
        """
        headers = request.headers
        if "range" in headers or not accepts_gzip(headers.get_all("accept-encoding")):
            return None
        try:
            fd, gz = self._open(path + ".gz")
        except (_NotFound, _Unavailable, PermissionError):
            return None
        if not stat.S_ISREG(gz.st_mode) or not gz.st_size or gz.st_mtime_ns < st.st_mtime_ns:
            os.close(fd)
            return None
        return fd, gz

    def _answer_file(
        self, request: Request, fd: int, st: os.stat_result, kind: str, vary: bool, encoding: str | None
    ) -> Response:
        """The response for an open regular file; it owns ``fd`` unless it raises.

        ``kind`` is its type; ``vary``: the answer depends on Accept-Encoding;
        ``encoding``: the file is the gzip of the one named (its own ETag).
        """
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        mtime = int(st.st_mtime)
        validators = [("ETag", etag), ("Last-Modified", formatdate(mtime, usegmt=True))]
        if self.cache_control is not None:
            validators.append(("Cache-Control", self.cache_control))
        validators.append(_NOSNIFF)
        if vary:
            # On a 304 too (RFC 9110 §15.4.5: the fields a 200 would have).
            validators.append(("Vary", "Accept-Encoding"))
        status = _precondition(request, etag, mtime)
        if status:
            os.close(fd)
            return Response(b"", status, headers=validators)
        headers = [("Content-Type", kind), ("Accept-Ranges", "bytes"), *validators]
        if encoding is not None:
            headers.append(("Content-Encoding", encoding))
        ranges = None
        if request.method == "GET" and _if_range_holds(request, etag, mtime):
            ranges = _parse_range(request.headers.get_all("range"), size, self.max_ranges)
        if ranges == []:
            os.close(fd)
            headers = [("Content-Range", f"bytes */{size}"), *validators]
            return Response(b"", 416, headers=headers)
        if not size:
            os.close(fd)  # nothing for sendfile to send
            return Response(b"", 200, headers=headers)
        file = open(fd, "rb", buffering=0)  # noqa: SIM115  # the connection closes it
        if ranges is None:
            return Response(FileBody(file, 0, size), 200, headers=headers)
        if len(ranges) == 1:
            start, end = ranges[0]
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            return Response(FileBody(file, start, end - start + 1), 206, headers=headers)
        boundary = secrets.token_hex(12)
        headers[0] = ("Content-Type", f"multipart/byteranges; boundary={boundary}")
        return Response(_Multipart(file, ranges, boundary, kind, size), 206, headers=headers)


def _error(status: int) -> Response:
    if status == 503:
        # Nothing is wrong with the request: a cache must not keep this answer.
        headers = [("Retry-After", str(_RETRY_AFTER_S)), ("Cache-Control", "no-store"), _NOSNIFF]
        return Response.text("503 Service Unavailable\n", 503, headers=headers)
    text = "404 Not Found\n" if status == 404 else "403 Forbidden\n"
    return Response.text(text, status, headers=[_NOSNIFF])


def _printable(name: str) -> str:
    """A file name as text, whatever bytes it holds."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- conditional requests (RFC 9110 §13) ---------------------------------------


def _etags(value: str) -> list[tuple[bool, str]] | None:
    """The ``(weak, opaque-tag)`` list of an If-Match/If-None-Match value; None for ``*``.

    RFC 9110 §8.8.3 and §13.1.1-2: ``"*" / #entity-tag``, where
    ``entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`` and the list may hold
    empty elements and OWS (§5.6.1). One pass, left to right: every character
    is looked at a bounded number of times, so the cost is linear in the
    value. A value that breaks the grammar holds no tag.
    """
    end = len(value)
    at = _skip(_OWS_RE, value, 0)
    if value.startswith("*", at) and _skip(_OWS_RE, value, at + 1) == end:
        return None
    tags: list[tuple[bool, str]] = []
    while True:
        at = _skip(_SEPARATORS_RE, value, at)  # empty elements are allowed
        if at == end:
            return tags
        weak = value.startswith("W/", at)
        if weak:
            at += 2
        if not value.startswith('"', at):
            return []
        close = value.find('"', at + 1)
        if close == -1 or _ETAGC_RE.fullmatch(value, at + 1, close) is None:
            return []
        tags.append((weak, value[at : close + 1]))
        at = _skip(_OWS_RE, value, close + 1)
        if at < end and value[at] != ",":
            return []  # two tags without a comma, or text after a tag


def _skip(run: re.Pattern[str], value: str, at: int) -> int:
    """Where the run of ``run`` (a starred character class) that starts at ``at`` ends."""
    match = run.match(value, at)
    assert match is not None  # a starred pattern matches the empty string
    return match.end()


def _http_date(value: str | None) -> int | None:
    """An HTTP-date as a Unix time, or None if absent or invalid (it is then ignored)."""
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return int(when.astimezone(timezone.utc).timestamp())
    except (OverflowError, ValueError, OSError):
        return None


def _precondition(request: Request, etag: str, mtime: int) -> int:
    """412 or 304 when a precondition says so, else 0 (RFC 9110 §13.2.2)."""
    headers = request.headers
    if_match = headers.get("if-match")
    if if_match is not None:
        tags = _etags(if_match)
        if tags is not None and not any(not weak and tag == etag for weak, tag in tags):
            return 412  # strong comparison
    else:
        since = _http_date(headers.get("if-unmodified-since"))
        if since is not None and mtime > since:
            return 412
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = _etags(if_none_match)
        if tags is None or any(tag == etag for _, tag in tags):
            return 304  # weak comparison; only GET and HEAD reach this handler
    else:
        since = _http_date(headers.get("if-modified-since"))
        if since is not None and mtime <= since:
            return 304
    return 0


def _if_range_holds(request: Request, etag: str, mtime: int) -> bool:
    """Whether a Range may be honoured: no If-Range, or one naming this version."""
    value = request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag  # strong comparison: a weak tag never matches
    if value.startswith("W/"):
        return False
    return _http_date(value) == mtime  # a date matches only if it is exactly Last-Modified


# -- ranges (RFC 9110 §14) -------------------------------------------------------


def _parse_range(values: list[str], size: int, max_ranges: int) -> list[tuple[int, int]] | None:
    """The ``(first, last)`` byte ranges to send, sorted and coalesced.

    None: ignore the Range and send the whole file (absent, several fields, not
    ``bytes``, malformed, or more than ``max_ranges`` ranges). ``[]``: nothing
    in the file satisfies it (416).

    One pass over the elements, each looked at once: linear in the value.
    """
    if len(values) != 1:
        return None
    unit, sep, spec = values[0].partition("=")
    if not sep or unit.strip(_OWS).lower() != "bytes":
        return None
    wanted: list[tuple[int, int]] = []
    seen = 0
    for item in spec.split(","):
        item = item.strip(_OWS)
        if not item:
            continue  # RFC 9110 §5.6.1: empty list elements are allowed and do not count
        match = _RANGE_SPEC_RE.fullmatch(item)
        if match is None or match.group(0) == "-":
            return None  # malformed: the whole field is ignored
        seen += 1
        if seen > max_ranges:
            return None
        first, last = match.groups()
        if not first:  # -N: the last N bytes
            suffix = _position(last, size)
            if suffix and size:
                wanted.append((size - suffix, size - 1))
            continue
        if last and _digits_less(last, first):
            return None  # an invalid range-spec: the whole field is ignored
        start = _position(first, size)
        if start < size:
            wanted.append((start, min(_position(last, size), size - 1) if last else size - 1))
    if not seen:
        return None
    if not wanted:
        return []
    wanted.sort()
    merged = [wanted[0]]
    for start, end in wanted[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end + 1:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged


def _position(digits: str, size: int) -> int:
    """A byte position or length (ASCII digits), capped at ``size``.

    Every value at or past the end of the file means the same thing (RFC 9110
    §14.1.1: a last-pos past the end is the end, a first-pos past it is
    unsatisfiable, a suffix longer than the file is the whole file), so a long
    number is never converted: that would be quadratic in its length, and past
    4300 digits CPython refuses it (``sys.get_int_max_str_digits``).
    """
    digits = digits.lstrip("0")
    if len(digits) > len(str(size)):
        return size
    return min(int(digits or "0"), size)


def _digits_less(a: str, b: str) -> bool:
    """``int(a) < int(b)`` for digit strings of any length, without converting them."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)
