"""The loggers ``reactor.access`` and ``reactor.error``, and their formats.

The access log is the Common Log Format plus the time taken in milliseconds::

    127.0.0.1 - - [21/Nov/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 13 0.21ms

Anything a client sent is escaped before it is logged (control characters
become ``\\xNN``, quotes and backslashes are escaped) and a request line is
cut to :data:`MAX_LOGGED_REQUEST_LINE` characters, so one log record is one
line that a client cannot forge.
"""

from __future__ import annotations

import logging
import re
import sys
import time

__all__ = ["access_log", "configure", "error_log", "escape"]

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


def access(client: str, request_line: str, status: int, size: int, duration_ms: float) -> None:
    """Write one access log line (the caller checks that the logger is enabled)."""
    access_log.info(
        '%s - - %s "%s" %d %d %.2fms',
        client,
        clf_time.get(),
        escape(request_line),
        status,
        size,
        duration_ms,
    )


def configure(level: str = "info", access: bool = True, trace: bool = False) -> None:
    """Send the loggers to stderr at ``level``; ``access=False`` silences access.

    ``trace=True`` also shows ``reactor.trace`` (see :mod:`reactor.trace`).
    """
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
