"""The request as the parser hands it over, and its headers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from .cookies import parse_cookie_header
from .errors import HTTPError
from .fields import MAX_FIELDS, MultiDict, parse_urlencoded
from .multipart import (
    MAX_FIELD_BYTES,
    MAX_PART_HEADER_BYTES,
    SPOOL_BYTES,
    Form,
    parse_boundary,
    parse_options,
    read_form,
)

__all__ = ["Headers", "Request", "split_fields"]

_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
_FORM_TYPES = "application/x-www-form-urlencoded, multipart/form-data"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")


# One decoder for every request (it keeps no state between calls).
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


_NAME = itemgetter(0)  # a field's name
# For Headers.has_any: a search for each set of names asked for. Keyed by
# the server's own sets (a handful), never by input.
_SEARCHES: dict[frozenset[str], Callable[[str], re.Match[str] | None]] = {}


def split_fields(block: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of field lines the parser has validated,
    each after its CRLF (``"\\r\\nHost: a\\r\\nAccept: */*"``): names
    lower-cased, the OWS around values trimmed (only SP and HTAB)."""
    fields = []
    for line in block[2:].split("\r\n"):
        name, _, value = line.partition(":")
        fields.append((name.lower(), value.strip(" \t")))
    return fields


class Headers:
    """Case-insensitive, multi-valued request header fields, in arrival order.

    Names are stored lower-cased; values are ``str`` decoded as ISO-8859-1, so
    every octet the client sent is kept.

    The parser may hand over the validated field lines as they came (a
    ``block``, see :func:`split_fields`) instead of the pairs: they are split
    when first asked for, and a handler that reads no header never pays for
    the split.
    """

    __slots__ = ("_fields", "_block")

    def __init__(self, fields: list[tuple[str, str]] | None = None, block: str = "") -> None:
        self._fields = fields if fields is not None or block else []
        self._block = block

    @property
    def _pairs(self) -> list[tuple[str, str]]:
        fields = self._fields
        if fields is None:
            fields = self._fields = split_fields(self._block)
            self._block = ""
        return fields

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [value for key, value in self._pairs if key == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.lower()
        return any(key == name for key, _ in self._pairs)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def has_any(self, names: frozenset[str]) -> bool:
        """Whether any of ``names`` (lower-case) is present. One pass in C:
        cheap enough to ask on every request before a costlier look."""
        if self._fields is not None:
            return not names.isdisjoint(map(_NAME, self._fields))
        # Not split yet: one search of the block, where a name begins a line.
        search = _SEARCHES.get(names)
        if search is None:
            alternatives = "|".join(re.escape(name) for name in sorted(names))
            # Linear: a match starts only at a CRLF and tries a few literals there.
            search = _SEARCHES[names] = re.compile(rf"\r\n(?:{alternatives}):", re.IGNORECASE).search
        return search(self._block) is not None

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, names lower-cased, in arrival order."""
        return list(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other._pairs == self._pairs

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class Request:
    """One HTTP request: the parsed head, then the body once it has arrived.

    Attributes:
        method: the method token, such as ``"GET"``.
        target: the request-target exactly as sent.
        path: the path, percent-decoded.
        raw_path: the path as sent, not decoded.
        query_string: what follows ``?`` in the target (not decoded).
        version: ``"HTTP/1.1"`` or ``"HTTP/1.0"``.
        headers: the header fields.
        host: the host the request is for: the authority of an absolute-form
            target, else the ``Host`` header (RFC 9112 §3.2.2); ``""`` if
            neither names one.
        body: the body bytes (``b""`` until it has been read, or when none).
        trailers: trailer fields of a chunked body.
        keep_alive: whether the client allows the connection to stay open.
        expect_continue: whether the client sent ``Expect: 100-continue``.
        content_length: the declared length, or None (chunked or no body).
        chunked: whether the body is sent with chunked transfer coding.
        client: the peer's ``(host, port)``, set by the connection; behind a
            trusted proxy, the client the proxy names (see docs/deployment.md).
        scheme: ``"http"``, or ``"https"`` when a trusted proxy says the
            client used it.
        params: path parameters, set by the router (``/items/{id}``).
        route: the route pattern that matched, set by the router.
    """

    __slots__ = (
        "method",
        "target",
        "path",
        "raw_path",
        "query_string",
        "version",
        "headers",
        "host",
        "body",
        "trailers",
        "keep_alive",
        "expect_continue",
        "content_length",
        "chunked",
        "client",
        "scheme",
        "params",
        "route",
        "_query",
        "_cookies",
        "_form",
        "_reader",
        "_limit",
    )

    # Set only for a route marked stream=True (reactor/app.py), by its worker.
    _reader: Callable[[int], bytes]
    _limit: int | None

    def __init__(
        self,
        method: str,
        target: str,
        raw_path: str,
        query_string: str,
        version: str,
        headers: Headers,
        keep_alive: bool = True,
        expect_continue: bool = False,
        content_length: int | None = None,
        chunked: bool = False,
        body: bytes = b"",
        host: str | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.raw_path = raw_path
        self.path = unquote(raw_path) if "%" in raw_path else raw_path
        self.query_string = query_string
        self.version = version
        self.headers = headers
        self.host = host if host is not None else headers.get("host", "") or ""
        self.body = body
        self.trailers: Headers | None = None
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.params: Mapping[str, str] = _NO_PARAMS
        self.route: str | None = None
        self._query: MultiDict[str] | None = None
        # _cookies and _form are set on first use only: most requests read
        # neither, and an unset slot costs nothing here.

    @property
    def has_body(self) -> bool:
        """Whether body bytes follow the head."""
        return self.chunked or bool(self.content_length)

    @property
    def query(self) -> MultiDict[str]:
        """The query string's fields: ``query["n"]`` and ``query.get("n", "1")``
        give the first value, ``query.getall("n")`` every one (parsed once, on
        first use; percent-decoded as UTF-8, ``+`` as a space, blanks kept).

        Raises:
            HTTPError: 400 when it has more than ``MAX_FIELDS`` (1000) fields.
        """
        if self._query is None:
            self._query = parse_urlencoded(self.query_string, max_fields=MAX_FIELDS, status=400)
        return self._query

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header as ``{name: value}`` (parsed once, on first use).

        Split on ``;`` and ``=`` in linear time; pairs without ``=`` are
        skipped, the first of a repeated name wins, values are not decoded.
        """
        try:
            return self._cookies
        except AttributeError:
            headers = self.headers.get_all("cookie")
            self._cookies: dict[str, str] = parse_cookie_header("; ".join(headers)) if headers else {}
            return self._cookies

    def form(
        self,
        *,
        max_fields: int = MAX_FIELDS,
        max_field_bytes: int = MAX_FIELD_BYTES,
        max_part_header_bytes: int = MAX_PART_HEADER_BYTES,
        spool_bytes: int = SPOOL_BYTES,
    ) -> Form:
        """The body as a form: ``fields, files = request.form()``.

        ``application/x-www-form-urlencoded`` gives text fields only;
        ``multipart/form-data`` gives text fields and files (each an
        :class:`~reactor.http.multipart.UploadedFile`, in memory up to
        ``spool_bytes``, then in a temporary file). Parsed once; later calls
        return the same :class:`~reactor.http.multipart.Form`.

        Raises:
            HTTPError: 415 for another Content-Type (or none); 400 for a
                malformed body, a bad boundary or text that is not UTF-8;
                413 for more than ``max_fields`` fields or parts, a part's
                header block over ``max_part_header_bytes``, or a text field
                over ``max_field_bytes``.
        """
        try:
            return self._form
        except AttributeError:
            pass
        content_type = self.headers.get("content-type") or ""
        kind, _ = parse_options(content_type)
        if kind == "application/x-www-form-urlencoded":
            try:
                text = self.body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPError(400, f"the form is not UTF-8 (byte {exc.start})") from None
            self._form: Form = Form(parse_urlencoded(text, max_fields=max_fields, status=413), MultiDict())
        elif kind == "multipart/form-data":
            self._form = read_form(
                (self.body,),
                parse_boundary(content_type),
                max_parts=max_fields,
                max_header_bytes=max_part_header_bytes,
                max_field_bytes=max_field_bytes,
                spool_bytes=spool_bytes,
            )
        else:
            raise HTTPError(
                415,
                "a form is application/x-www-form-urlencoded or multipart/form-data",
                [("Accept-Post", _FORM_TYPES)],
            )
        return self._form

    def stream(self, size: int = 65536) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``size`` bytes: for a
        route marked ``stream=True`` (its handler runs in the thread pool and
        is called at the head, before the body is in). Elsewhere the body has
        been read already, and this yields ``request.body``.

        Raises:
            HTTPError: 413 once the body passes the route's ``max_body``.
            ConnectionError: the client left, or sent nothing for
                ``body_timeout_s`` (a :class:`~reactor.pool.ClientDisconnected`).
        """
        try:
            read = self._reader
        except AttributeError:
            if self.body:
                yield self.body
            return
        limit = self._limit
        got = 0
        while True:
            piece = read(size)
            if not piece:
                return
            got += len(piece)
            if limit is not None and got > limit:
                raise HTTPError(413, f"the body is over {limit} bytes")
            yield piece

    def body_file(self, spool_bytes: int = 1048576) -> Any:
        """The whole body in a file, positioned at its start: in memory up to
        ``spool_bytes``, then in a temporary file (a
        :class:`tempfile.SpooledTemporaryFile`), so a large upload never sits
        in memory whole. The caller closes it."""
        import tempfile  # noqa: PLC0415 (only for streamed routes: not on every import)

        spooled = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 (returned)
        for piece in self.stream():
            spooled.write(piece)
        spooled.seek(0)
        return spooled

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text."""
        return self.body.decode(encoding)

    def json(self) -> Any:
        """The body parsed as JSON (RFC 8259: UTF-8 text, no ``NaN`` or ``Infinity``).

        Raises:
            HTTPError: 400 Bad Request, when the body is not UTF-8, not JSON
                (an empty body included), nests too deeply for the parser, or
                holds an integer over CPython's digit limit. Raised from a
                handler, it answers the request with 400 and a one-line
                reason, and the connection goes on; catch it to answer
                otherwise.
        """
        try:
            # Decoded here, not by json.loads: given bytes, json.loads also
            # guesses UTF-16 and UTF-32, which RFC 8259 §8.1 excludes.
            return _JSON.decode(self.body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise HTTPError(400, f"the body is not UTF-8 (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise HTTPError(
                400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise HTTPError(400, "the body's JSON nests too deeply") from None
        except ValueError as exc:  # NaN or Infinity, or an integer over the digit limit
            raise HTTPError(400, f"the body is not JSON: {str(exc)[:80]}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} {self.version}>"
