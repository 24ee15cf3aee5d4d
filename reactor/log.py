"""The loggers ``reactor.access`` and ``reactor.error``, and their formats.

The access log is the Common Log Format plus the time taken in milliseconds::

    127.0.0.1 - - [21/Nov/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 13 0.21ms

Anything a client sent is escaped before it is logged (control characters
become ``\\xNN``, quotes and backslashes are escaped) and a request line is
cut to :data:`MAX_LOGGED_REQUEST_LINE` characters, so one log record is one
line that a client cannot forge.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .http.request import Request

__all__ = ["access_log", "compile_format", "configure", "error_log", "escape", "set_access_format"]

access_log = logging.getLogger("reactor.access")
error_log = logging.getLogger("reactor.error")

MAX_LOGGED_REQUEST_LINE = 1024

# Linear: one character class, each character tested once; sub() never backtracks.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    return f"\\x{ord(char):02x}"


def escape(text: str, limit: int = MAX_LOGGED_REQUEST_LINE) -> str:
    """``text`` with control characters, quotes and backslashes escaped, cut to ``limit``."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return _UNSAFE.sub(_escape_char, text)


class _ClfTime:
    """``[21/Nov/2026:13:55:36 +0000]``, formatted at most once a second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def get(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.text = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(second))
        return self.text


clf_time = _ClfTime()


# -- --access-log-format and --access-log-json ------------------------------
# A format is compiled once, when logging is configured, into a %-template
# and one getter per atom; a logged request then costs one call per atom.

#: gunicorn's default format (the Apache combined log format).
COMBINED_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
#: The fields of a JSON line when ``--access-log-json`` is given no format.
JSON_FORMAT = "%(h)s %(t)s %(r)s %(m)s %(U)s %(q)s %(H)s %(S)s %(s)s %(B)s %(f)s %(a)s %(D)s"

Value = str | int | float
Getter = Callable[[str, "Request | str | None", int, int, float], Value]


def _line(request: Request | str | None) -> str:
    if request is None:
        return "-"
    if isinstance(request, str):
        return request
    return f"{request.method} {request.target} {request.version}"


def _part(request: Request | str | None, index: int) -> str:
    """Method, target or version of a request known only by its request line."""
    parts = _line(request).split(" ")
    return parts[index] if len(parts) == 3 else "-"


def _method(request: Request | str | None) -> str:
    return request.method if isinstance(request, Request) else _part(request, 0)


def _path(request: Request | str | None) -> str:
    if isinstance(request, Request):
        return request.path
    target = _part(request, 1).partition("?")[0]
    return unquote(target) if "%" in target else target


def _query(request: Request | str | None) -> str:
    if isinstance(request, Request):
        return request.query_string
    return _part(request, 1).partition("?")[2]


def _protocol(request: Request | str | None) -> str:
    return request.version if isinstance(request, Request) else _part(request, 2)


def _scheme(request: Request | str | None) -> str:
    return request.scheme if isinstance(request, Request) else "-"


def _header(name: str) -> Callable[[Request | str | None], str]:
    def get(request: Request | str | None) -> str:
        if isinstance(request, Request):
            return request.headers.get(name) or "-"
        return "-"

    return get


def _header_getter(name: str) -> Getter:
    get = _header(name)
    return lambda c, r, s, b, d: get(r)


def _user(request: Request | str | None) -> str:
    """The user name of ``Authorization: Basic``, as gunicorn's ``%(u)s``."""
    if not isinstance(request, Request):
        return "-"
    auth = request.headers.get("authorization") or ""
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("latin-1")
    except (ValueError, binascii.Error):
        return "-"
    return decoded.partition(":")[0] or "-"


def _iso_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_PID = f"<{os.getpid()}>"


def _refresh_pid() -> None:
    """In a forked worker, ``%(p)s`` is the worker's own pid, not its master's."""
    global _PID
    _PID = f"<{os.getpid()}>"


os.register_at_fork(after_in_child=_refresh_pid)
_REFERER = _header("referer")
_USER_AGENT = _header("user-agent")

# atom: (JSON key, value of a request, whether a client chose the value).
# Each getter takes (client, request, status, size, duration in seconds).
_ATOMS: dict[str, tuple[str, Getter, bool]] = {
    "h": ("remote_addr", lambda c, r, s, b, d: c, False),
    "l": ("ident", lambda c, r, s, b, d: "-", False),
    "u": ("user", lambda c, r, s, b, d: _user(r), True),
    "t": ("time", lambda c, r, s, b, d: clf_time.get(), False),
    "r": ("request", lambda c, r, s, b, d: _line(r), True),
    "m": ("method", lambda c, r, s, b, d: _method(r), True),
    "U": ("path", lambda c, r, s, b, d: _path(r), True),
    "q": ("query", lambda c, r, s, b, d: _query(r), True),
    "H": ("protocol", lambda c, r, s, b, d: _protocol(r), True),
    "S": ("scheme", lambda c, r, s, b, d: _scheme(r), True),  # hypercorn's atom
    "s": ("status", lambda c, r, s, b, d: s, False),
    "B": ("bytes", lambda c, r, s, b, d: b, False),
    "b": ("size", lambda c, r, s, b, d: b, False),
    "f": ("referer", lambda c, r, s, b, d: _REFERER(r), True),
    "a": ("user_agent", lambda c, r, s, b, d: _USER_AGENT(r), True),
    "T": ("duration_s", lambda c, r, s, b, d: int(d), False),
    "M": ("duration_ms", lambda c, r, s, b, d: int(d * 1000.0), False),
    "D": ("duration_us", lambda c, r, s, b, d: int(d * 1_000_000.0), False),
    "L": ("duration", lambda c, r, s, b, d: f"{d:.6f}", False),
    "p": ("pid", lambda c, r, s, b, d: _PID, False),
}

# The format string is the operator's, not a client's. Linear all the same:
# each alternative starts with "%" and then a fixed shape ("{" runs to the
# first "}"), so every position is tried once.
_ATOM_RE = re.compile(r"%\((?:\{([^{}()]+)\}i|([A-Za-z]))\)s|%%|%")

Formatter = Callable[[str, "Request | str | None", int, int, float], str]


def compile_format(fmt: str, json_lines: bool = False) -> Formatter:
    """A function that formats one access log record as ``fmt`` says.

    ``fmt`` holds gunicorn's atoms (``%(h)s``, ``%({User-Agent}i)s``...);
    with ``json_lines`` the line is a JSON object with one key per atom
    instead. Raises :class:`ValueError` for an unknown atom or a stray ``%``.
    """
    template: list[str] = []
    keys: list[str] = []
    getters: list[Getter] = []
    escaped: list[bool] = []
    pos = 0
    for match in _ATOM_RE.finditer(fmt):
        template.append(fmt[pos : match.start()].replace("%", "%%"))
        pos = match.end()
        header, atom = match.groups()
        if header is not None:
            keys.append("header_" + header.lower().replace("-", "_"))
            getters.append(_header_getter(header))
            escaped.append(True)
        elif atom is not None:
            if atom not in _ATOMS:
                raise ValueError(f"unknown access log atom %({atom})s")
            key, getter, from_client = _ATOMS[atom]
            keys.append(key)
            getters.append(getter)
            escaped.append(from_client)
        elif match.group() == "%%":
            template.append("%%")
            continue
        else:
            raise ValueError(f"a lone % at {match.start()} in the access log format (write %% for one)")
        template.append("%s")
    template.append(fmt[pos:].replace("%", "%%"))
    if not getters:
        raise ValueError("the access log format has no atom")
    if json_lines:
        return _json_formatter(keys, getters)
    return _text_formatter("".join(template), getters, escaped)


def _text_formatter(template: str, getters: list[Getter], escaped: list[bool]) -> Formatter:
    parts = tuple(zip(getters, escaped, strict=True))

    def format_text(
        client: str, request: Request | str | None, status: int, size: int, duration_s: float
    ) -> str:
        return template % tuple(
            [
                escape(str(get(client, request, status, size, duration_s)))
                if client_chose
                else get(client, request, status, size, duration_s)
                for get, client_chose in parts
            ]
        )

    return format_text


def _json_formatter(keys: list[str], getters: list[Getter]) -> Formatter:
    fields = tuple(zip(keys, getters, strict=True))
    time_getter = _ATOMS["t"][1]

    def format_json(
        client: str, request: Request | str | None, status: int, size: int, duration_s: float
    ) -> str:
        record: dict[str, Value] = {}
        for key, get in fields:
            if get is time_getter:
                record[key] = _iso_time()
                continue
            value = get(client, request, status, size, duration_s)
            if isinstance(value, str) and len(value) > MAX_LOGGED_REQUEST_LINE:
                value = value[:MAX_LOGGED_REQUEST_LINE] + "..."
            record[key] = value
        # ensure_ascii: every control and non-ASCII character is a \u escape,
        # so a record is one line of ASCII that a client cannot forge.
        return json.dumps(record, ensure_ascii=True, separators=(", ", ": "))

    return format_json


_format: Formatter | None = None


def set_access_format(fmt: str | None = None, json_lines: bool = False) -> None:
    """Compile the access log's format once (``None``: the default line)."""
    global _format
    if fmt is None and json_lines:
        fmt = JSON_FORMAT
    _format = None if fmt is None else compile_format(fmt, json_lines)


class _Direct:
    """The stream the access log's one plain handler writes to, when that is
    all logging would do with a line: then a line is written to it directly.

    That is the setup :func:`configure` makes: one ``StreamHandler``, no
    filters, a ``Formatter("%(message)s")``, no propagation. logging would
    make a ``LogRecord``, look up its caller, take the handler's lock,
    format the record into the same text and write it with the handler's
    terminator: about 60,000 instructions a line that change no byte of the
    output. Any other setup (more handlers, a filter, another formatter, a
    test's capture) goes through logging as usual. Checked on every line
    (a few attribute loads), so a handler swapped at any time is seen.
    """

    __slots__ = ("handler", "stream", "formatter", "write")

    def __init__(self) -> None:
        self.handler: logging.StreamHandler[Any] | None = None
        self.stream: object = None
        self.formatter: logging.Formatter | None = None
        self.write: Callable[[str], object] | None = None

    def writer(self) -> Callable[[str], object] | None:
        """The stream's ``write`` if a line may go straight to it, else None."""
        handlers = access_log.handlers
        if len(handlers) != 1 or access_log.filters or access_log.propagate:
            return None
        handler = handlers[0]
        if handler is self.handler and handler.stream is self.stream and handler.formatter is self.formatter:
            return self.write if not handler.filters else None
        return self._check(handler)

    def _check(self, handler: logging.Handler) -> Callable[[str], object] | None:
        formatter = handler.formatter
        if (
            type(handler) is not logging.StreamHandler
            or handler.filters
            or handler.level > logging.INFO
            or handler.terminator != "\n"
            or type(formatter) is not logging.Formatter
            or type(formatter._style) is not logging.PercentStyle
            or formatter._fmt != "%(message)s"
        ):
            return None
        assert isinstance(handler, logging.StreamHandler)
        stream = handler.stream
        self.handler, self.stream, self.formatter = handler, stream, formatter
        self.write = stream.write
        return self.write


_direct = _Direct()


def access(client: str, request: Request | str | None, status: int, size: int, duration_s: float) -> None:
    """Write one access log line (the caller checks that the logger is enabled).

    ``request`` is the request answered, or only its request line (a refusal
    after the line was read), or ``None`` (nothing was read).
    """
    if _format is None:
        logged = escape(_line(request))
        line = f'{client} - - {clf_time.get()} "{logged}" {status} {size} {duration_s * 1000.0:.2f}ms'
    else:
        line = _format(client, request, status, size, duration_s)
    write = _direct.writer()
    if write is not None:
        handler = _direct.handler
        assert handler is not None
        with handler.lock:  # type: ignore[union-attr]  # held as StreamHandler.emit holds it
            try:
                write(line + "\n")
                handler.flush()
                return
            except Exception:
                pass  # logging reports it, below, as it would have
    access_log.info("%s", line)


def configure(
    level: str = "info",
    access: bool = True,
    trace: bool = False,
    access_format: str | None = None,
    access_json: bool = False,
) -> None:
    """Send the loggers to stderr at ``level``; ``access=False`` silences access.

    ``trace=True`` also shows ``reactor.trace`` (see :mod:`reactor.trace`).
    ``access_format`` and ``access_json`` choose the access log's line (see
    :func:`set_access_format`).
    """
    set_access_format(access_format, access_json)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    trace_log = logging.getLogger("reactor.trace")
    for logger in (access_log, error_log, trace_log):
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(level.upper())
    if not trace:
        trace_log.setLevel(logging.CRITICAL + 1)
    else:
        trace_log.setLevel(logging.INFO)
    if not access:
        access_log.setLevel(logging.CRITICAL + 1)
    error_handler = logging.StreamHandler(sys.stderr)
    error_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    error_log.handlers[:] = [error_handler]
