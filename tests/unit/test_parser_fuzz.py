"""Property tests: whatever the bytes and however they are split, the parser only
returns a Request or an Event, or raises ProtocolError, and once it has raised
it never returns a Request again.
"""

from __future__ import annotations

import re
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor.config import Config
from reactor.http import parser as parser_module
from reactor.http.errors import ProtocolError
from tests.unit.parser_support import STATUSES, VALID, drive, split_at

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written outside the tests
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INSERTS = [b"\r", b"\n", b"\x00", b"\x0b", b"\x0c", b"\x1c", b"\x85", b" ", b"\t", b":", b",", b"\r\n"]
SEEDS = [vector.raw for vector in VALID]
CONFIG = Config()


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return split_at(data, cuts)


def duplicate_header_line(data: bytes, pick: int) -> bytes:
    head_end = data.find(b"\r\n\r\n")
    first = data.find(b"\r\n")
    if head_end <= first:
        return data
    lines = data[first + 2 : head_end + 2].split(b"\r\n")[:-1]
    line = lines[pick % len(lines)] + b"\r\n"
    at = data.index(line, first + 2)
    return data[:at] + line + data[at:]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate-line", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif op == "insert":
            data = data[:at] + draw(st.sampled_from(INSERTS)) + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + 1 :]
        elif op == "truncate":
            data = data[:at]
        elif op == "duplicate-line":
            data = duplicate_header_line(data, draw(st.integers(0, 50)))
        else:  # two messages back to back
            data += data
    return data


def check(data: bytes, chunks: list[bytes], eof: bool) -> None:
    run = drive(CONFIG, chunks, eof=eof)  # raises on a non-ProtocolError or an event out of order
    assert b"".join(chunks) == data
    if run.error is not None:
        assert isinstance(run.error, ProtocolError)
        assert run.error.status in STATUSES
        assert run.after_error == [], run.after_error
    if eof:
        assert run.error is not None or run.closed, "EOF left the parser waiting"


@FUZZ
@given(st.data(), st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes(data: st.DataObject, raw: bytes, eof: bool) -> None:
    check(raw, data.draw(splits(raw)), eof)


@FUZZ
@given(st.data(), st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_after_a_valid_head(data: st.DataObject, tail: bytes, eof: bool) -> None:
    """Arbitrary bytes where a body, a chunk or a second request is expected."""
    head = data.draw(
        st.sampled_from(
            [
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            ]
        )
    )
    raw = head + tail
    check(raw, data.draw(splits(raw)), eof)


@FUZZ
@given(st.data(), mutated(), st.booleans())
def test_mutated_vectors(data: st.DataObject, raw: bytes, eof: bool) -> None:
    check(raw, data.draw(splits(raw)), eof)


@FUZZ
@given(st.data(), mutated())
def test_mutated_vectors_split_does_not_change_the_outcome(data: st.DataObject, raw: bytes) -> None:
    """The same bytes parse to the same requests, and fail or not, however they are split.

    EOF comes as a read of its own, as the connection delivers it. The status
    may legitimately differ (a limit or a bare LF seen early in a partial
    head), so only the fact of an error is compared.
    """
    reference = drive(CONFIG, [raw], eof=True)
    run = drive(CONFIG, data.draw(splits(raw)), eof=True)
    assert run.messages == reference.messages
    assert run.heads == reference.heads
    assert (run.error is None) == (reference.error is None), (run.error, reference.error)


NEVER = re.compile(r"(?!)")  # matches nothing: every head is read line by line


@FUZZ
@given(mutated())
def test_whole_head_match_reads_as_line_by_line(raw: bytes) -> None:
    """The one-call match of a small head (WHOLE_HEAD_RE) and the line-by-line
    reading it stands in for give the same requests and the same errors
    (class, status and message) for the same bytes."""
    fast = drive(CONFIG, [raw], eof=True)
    with mock.patch.object(parser_module, "WHOLE_HEAD_RE", NEVER):
        slow = drive(CONFIG, [raw], eof=True)
    assert fast.heads == slow.heads
    assert fast.messages == slow.messages
    assert type(fast.error) is type(slow.error)
    if fast.error is not None:
        assert slow.error is not None
        assert (fast.error.status, str(fast.error), fast.error.request_line) == (
            slow.error.status,
            str(slow.error),
            slow.error.request_line,
        )


def test_whole_head_match_is_taken_for_a_small_head() -> None:
    """The differential test above compares two paths only if the fast one runs."""
    calls = []
    real = parser_module.WHOLE_HEAD_RE

    class Spy:
        def fullmatch(self, text: str) -> re.Match[str] | None:
            calls.append(text)
            return real.fullmatch(text)

    with mock.patch.object(parser_module, "WHOLE_HEAD_RE", Spy()):
        run = drive(CONFIG, [b"GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"])
    assert calls == ["GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*"]
    assert run.heads[0]["headers"] == [["host", "x"], ["accept", "*/*"]]
    assert run.heads[0]["raw_path"] == "/a" and run.heads[0]["query_string"] == "b"
