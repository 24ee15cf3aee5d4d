"""The access log line written straight to the handler's stream is the line logging would write."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from reactor.http.request import Headers, Request
from reactor.log import access, access_log, set_access_format


def _request(target: str = "/a?b=1") -> Request:
    path, _, query = target.partition("?")
    return Request("GET", target, path, query, "HTTP/1.1", Headers([("host", "x"), ("user-agent", "t\x01")]))


@pytest.fixture
def restore() -> Iterator[None]:
    handlers, level, propagate = access_log.handlers[:], access_log.level, access_log.propagate
    yield
    access_log.handlers[:] = handlers
    access_log.setLevel(level)
    access_log.propagate = propagate
    set_access_format()


def _plain_handler(stream: io.StringIO) -> logging.StreamHandler[io.StringIO]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class _Through(logging.Filter):
    """A filter that lets every record pass: it makes logging do the writing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return True


def _lines(through_logging: bool, fmt: str | None) -> str:
    stream = io.StringIO()
    handler = _plain_handler(stream)
    if through_logging:
        handler.addFilter(_Through())
    access_log.handlers[:] = [handler]
    access_log.propagate = False
    access_log.setLevel(logging.INFO)
    set_access_format(fmt)
    access("127.0.0.1", _request(), 200, 13, 0.00021)
    access("127.0.0.1", 'GET /"\x1b HTTP/1.1', 400, 11, 0.0)
    access("10.0.0.1", None, 408, 0, 1.5)
    return stream.getvalue()


@pytest.mark.parametrize("fmt", [None, '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" %(D)s'])
def test_a_line_written_directly_is_the_line_logging_writes(restore: None, fmt: str | None) -> None:
    direct = _lines(False, fmt)
    assert direct == _lines(True, fmt)
    assert direct.count("\n") == 3 and direct.endswith("\n")
    assert '"GET /\\"\\x1b HTTP/1.1"' in direct  # escaped on either path


def test_a_handler_swapped_in_later_gets_the_lines(restore: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    access_log.handlers[:] = [_plain_handler(first)]
    access_log.propagate = False
    access_log.setLevel(logging.INFO)
    access("127.0.0.1", None, 400, 0, 0.0)
    access_log.handlers[:] = [_plain_handler(second)]
    access("127.0.0.2", None, 400, 0, 0.0)
    access_log.handlers[0].setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    access("127.0.0.3", None, 400, 0, 0.0)
    assert first.getvalue().startswith("127.0.0.1 ") and first.getvalue().count("\n") == 1
    lines = second.getvalue().splitlines()
    assert lines[0].startswith("127.0.0.2 ") and lines[1].startswith("[INFO] 127.0.0.3 ")
