"""The sans-IO request parser against the JSON vectors and its documented contract.

Every vector is fed whole, byte by byte and in seeded random splits; the
outcome must not depend on how the bytes were split. Limits, bare LF and EOF
are also checked as the bytes trickle in.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import pytest

from reactor.config import Config
from reactor.http.errors import ProtocolError
from reactor.http.parser import Event, RequestParser
from reactor.http.request import Request
from tests.unit.parser_support import (
    INVALID,
    LIMIT_FIELDS,
    NAME_RE,
    OPTIONAL_REQUEST_FIELDS,
    REQUEST_FIELDS,
    STATUSES,
    VALID,
    Run,
    Vector,
    bytewise,
    drive,
    prefix_progress,
    random_split,
    split_at,
    whole,
)

MODES = ["whole", "bytewise", *(f"random{seed}" for seed in range(5))]
# Bytes after a complete message that must not change it (none is a valid request).
GARBAGE = [
    b"\x00",
    b"XYZ",
    b"\r\n",
    b"\n",
    b" GET / HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo",
]
HOST = b"Host: example.com\r\n"


def chunks_for(vector: Vector, mode: str) -> list[bytes]:
    if mode == "whole":
        return whole(vector.raw)
    if mode == "bytewise":
        return bytewise(vector.raw)
    return random_split(vector.raw, f"{vector.name}:{mode}")


def ids(vectors: list[Vector]) -> list[str]:
    return [vector.name for vector in vectors]


@functools.cache
def progress(name: str) -> list[tuple[int, int, int | None]]:
    vector = next(vector for vector in VALID if vector.name == name)
    return prefix_progress(vector.config, vector.raw)


def events(parser: RequestParser) -> list[Request | Event | int]:
    """Drain ``parser`` until NEED_DATA, PAUSED or CLOSED; an error ends the list with its status."""
    out: list[Request | Event | int] = []
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            out.append(exc.status)
            return out
        out.append(event)
        if event in (Event.NEED_DATA, Event.PAUSED, Event.CLOSED):
            return out


def trickle(parser: RequestParser, data: bytes) -> tuple[int, ProtocolError] | None:
    """Feed ``data`` one byte at a time; on an error, (bytes of ``data`` fed, error)."""
    for i in range(len(data)):
        parser.receive_data(data[i : i + 1])
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                return i + 1, exc
            if event is Event.PAUSED:
                parser.start_next_cycle()
            elif event in (Event.NEED_DATA, Event.CLOSED):
                break
    return None


def describe(run: Run) -> str:
    """The run's events in short, repeated NEED_DATA squashed, for assertion messages."""
    names: list[str] = []
    for event in run.events:
        name = f"Request({event.target})" if isinstance(event, Request) else event.name
        if not (name == "NEED_DATA" and names and names[-1] == name):
            names.append(name)
    return f"events={' '.join(names)} error={run.error!r}"


# -- the vector files themselves ----------------------------------------------------


def test_vector_files_are_well_formed() -> None:
    assert len(VALID) >= 25
    assert len(INVALID) >= 60
    for vectors in (VALID, INVALID):
        numbers = [vector.name[:3] for vector in vectors]
        assert len(numbers) == len(set(numbers)), "vector numbers repeat"
        for vector in vectors:
            assert NAME_RE.fullmatch(vector.name + ".json"), vector.name
            assert vector.raw, vector.name
            assert set(vector.doc.get("config", {})) <= LIMIT_FIELDS, vector.name
    for vector in VALID:
        assert set(vector.doc) <= {"about", "raw", "expect", "config"}, vector.name
        assert vector.doc["about"].strip(), vector.name
        assert vector.doc["expect"], vector.name
        for want in vector.doc["expect"]:
            assert set(REQUEST_FIELDS) <= set(want), (vector.name, set(REQUEST_FIELDS) - set(want))
            assert set(want) <= set(REQUEST_FIELDS) | OPTIONAL_REQUEST_FIELDS, vector.name
    for vector in INVALID:
        allowed = {"why", "raw", "status", "requests_before_error", "config", "eof"}
        assert set(vector.doc) <= allowed, vector.name
        assert vector.doc["status"] in STATUSES, vector.name
        why = vector.doc["why"]
        assert why.strip() and "\n" not in why, vector.name
        assert "RFC" in why or "config" in vector.doc, f"{vector.name}: the why names no rule"


def test_invalid_vectors_cover_every_status() -> None:
    assert {vector.doc["status"] for vector in INVALID} == STATUSES


# -- valid vectors -------------------------------------------------------------------


def assert_request(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    for key in REQUEST_FIELDS:
        assert got[key] == want[key], f"{where}: {key} is {got[key]!r}, expected {want[key]!r}"
    if "host" in want:
        assert got["host"] == want["host"], f"{where}: host is {got['host']!r}, expected {want['host']!r}"
    if "trailers" in want:
        assert got["trailers"] == want["trailers"], where
    else:
        assert not got["trailers"], f"{where}: unexpected trailers {got['trailers']!r}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vector", VALID, ids=ids(VALID))
def test_valid_vector(vector: Vector, mode: str) -> None:
    run = drive(vector.config, chunks_for(vector, mode))
    assert run.error is None, f"rejected with {run.error.status}: {run.error} ({describe(run)})"
    expected = vector.doc["expect"]
    assert len(run.messages) == len(expected), describe(run)
    assert len(run.heads) == len(expected), describe(run)
    for i, (got, want) in enumerate(zip(run.messages, expected, strict=True)):
        assert_request(got, want, f"{vector.name} request {i}")
    for head, message in zip(run.heads, run.messages, strict=True):
        # The head is complete at the Request event; the body is not there yet.
        assert head["body"] == "" and head["trailers"] is None
        assert {**head, "body": message["body"], "trailers": message["trailers"]} == message
    # Everything was consumed: the buffer is released once the request is complete.
    assert run.buffered == 0
    assert not run.closed
    # The parser then waits for the next request.
    assert run.events[-1] is Event.NEED_DATA


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vector", VALID, ids=ids(VALID))
def test_valid_vector_need_data_only_while_incomplete(vector: Vector, mode: str) -> None:
    """At each NEED_DATA the parser has emitted all it could from the bytes fed so far.

    The reference is the same prefix of the input arriving in one read.
    """
    table = progress(vector.name)
    run = drive(vector.config, chunks_for(vector, mode))
    assert run.need_data, "never asked for data"
    for fed, heads, messages in run.need_data:
        assert (heads, messages) == table[fed][:2], f"NEED_DATA after {fed} bytes"
    assert run.need_data[-1][0] == len(vector.raw)


@pytest.mark.parametrize("vector", VALID, ids=ids(VALID))
def test_valid_vector_prefixes(vector: Vector) -> None:
    """No prefix is an error, progress is monotonic, and the last byte completes the last message."""
    table = progress(vector.name)
    count = len(vector.doc["expect"])
    assert all(status is None for _, _, status in table), [t for t in table if t[2] is not None][:1]
    assert table == sorted(table), "progress went backwards for a longer prefix"
    assert table[-1][:2] == (count, count)
    assert table[-2][1] == count - 1, "the last message was complete before its last byte"


@pytest.mark.parametrize("garbage", GARBAGE, ids=repr)
@pytest.mark.parametrize("vector", VALID, ids=ids(VALID))
def test_valid_vector_with_trailing_garbage(vector: Vector, garbage: bytes) -> None:
    reference = drive(vector.config, [vector.raw])
    run = drive(vector.config, [vector.raw + garbage])
    assert run.messages == reference.messages
    # Nothing is parsed out of the garbage, and any error comes after the last message.
    assert len(run.heads) == len(vector.doc["expect"]), describe(run)
    assert run.after_error == []


@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize("vector", VALID, ids=ids(VALID))
def test_valid_vector_then_eof_is_closed(vector: Vector, split: str) -> None:
    chunks = whole(vector.raw) if split == "whole" else bytewise(vector.raw)
    run = drive(vector.config, chunks, eof=True)
    assert run.error is None, run.error
    assert len(run.messages) == len(vector.doc["expect"])
    assert run.closed
    assert run.events[-1] is Event.CLOSED


@pytest.mark.parametrize("vector", VALID, ids=ids(VALID))
def test_valid_vector_header_lookup(vector: Vector) -> None:
    parser = RequestParser(vector.config)
    parser.receive_data(vector.raw)
    requests = []
    while True:
        event = parser.next_event()
        if isinstance(event, Request):
            requests.append(event)
        elif event is Event.PAUSED:
            parser.start_next_cycle()
        elif event is Event.NEED_DATA:
            break
    assert len(requests) == len(vector.doc["expect"])
    for request, want in zip(requests, vector.doc["expect"], strict=True):
        pairs = [tuple(pair) for pair in want["headers"]]
        assert request.headers.items() == pairs
        assert len(request.headers) == len(pairs)
        for name, _ in pairs:
            values = [value for key, value in pairs if key == name]
            assert request.headers.get_all(name.upper()) == values
            assert request.headers.get(name.title()) == values[0]
            assert name.upper() in request.headers
        for name, values in want.get("get_all", {}).items():
            assert request.headers.get_all(name) == values
            assert request.headers.get(name) == (values[0] if values else None)
        assert request.headers.get("x-surely-absent", "dflt") == "dflt"


# -- invalid vectors -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vector", INVALID, ids=ids(INVALID))
def test_invalid_vector(vector: Vector, mode: str) -> None:
    eof = vector.doc.get("eof", False)
    run = drive(vector.config, chunks_for(vector, mode), eof=eof)
    assert run.error is not None, f"accepted: {describe(run)}"
    assert isinstance(run.error, ProtocolError)
    assert run.error.status == vector.doc["status"], f"{run.error!r} ({describe(run)})"
    # The error repeats on every later call, and nothing is parsed after it.
    assert run.after_error == []
    assert len(run.heads) == vector.doc.get("requests_before_error", 0), describe(run)
    assert all(head["target"] != "/after" for head in run.heads)
    # An EOF vector fails because of the EOF; the others fail without one.
    assert run.error_after_eof == eof


@pytest.mark.parametrize("vector", INVALID, ids=ids(INVALID))
def test_invalid_vector_error_is_sticky(vector: Vector) -> None:
    parser = RequestParser(vector.config)
    parser.receive_data(vector.raw)
    if vector.doc.get("eof"):
        parser.receive_data(b"")
    first = None
    for _ in range(10):
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            first = exc
            break
        if event is Event.PAUSED:
            parser.start_next_cycle()
    assert first is not None
    parser.receive_data(b"GET /more HTTP/1.1\r\n" + HOST + b"\r\n")
    for _ in range(3):
        with pytest.raises(ProtocolError) as info:
            parser.next_event()
        assert info.value is first
    with pytest.raises(RuntimeError):
        parser.start_next_cycle()


# -- limits across partial reads -----------------------------------------------------

LIMIT_MODES = ["whole", "bytewise", "cr-apart"]


def feed_mode(parser: RequestParser, data: bytes, mode: str, cr_at: int) -> list[Request | Event | int]:
    """Feed ``data`` whole, byte by byte, or in two reads cut between the CR at ``cr_at`` and its LF."""
    assert data[cr_at : cr_at + 2] == b"\r\n"
    if mode == "whole":
        chunks = [data]
    elif mode == "bytewise":
        chunks = bytewise(data)
    else:
        chunks = split_at(data, [cr_at + 1])
    out: list[Request | Event | int] = []
    for chunk in chunks:
        parser.receive_data(chunk)
        out += events(parser)
        if isinstance(out[-1], int):
            break
    return out


def test_request_line_trickled_past_limit_raises_414_before_crlf() -> None:
    config = Config()
    parser = RequestParser(config)
    line = b"GET /" + b"a" * config.max_request_line_bytes  # no CRLF ever comes
    result = trickle(parser, line)
    assert result is not None, "a request line over the limit was buffered without end"
    fed, error = result
    assert error.status == 414
    assert fed == config.max_request_line_bytes + 1


def test_request_line_over_limit_whole_is_414() -> None:
    config = Config()
    line = b"GET /" + b"a" * (config.max_request_line_bytes - len(b"GET / HTTP/1.1") + 1) + b" HTTP/1.1"
    assert len(line) == config.max_request_line_bytes + 1
    parser = RequestParser(config)
    parser.receive_data(line + b"\r\n" + HOST + b"\r\n")
    assert events(parser) == [414]


@pytest.mark.parametrize("mode", LIMIT_MODES)
def test_request_line_of_exactly_the_limit_is_accepted(mode: str) -> None:
    """A request line of max_request_line_bytes (CRLF not counted) is fine, however it arrives."""
    config = Config().replace(max_request_line_bytes=64)
    target = b"/" + b"a" * (64 - len(b"GET / HTTP/1.1"))
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == 64
    parser = RequestParser(config)
    got = feed_mode(parser, line + b"\r\n" + HOST + b"\r\n", mode, cr_at=len(line))
    assert [type(e).__name__ if isinstance(e, Request) else e for e in got if e is not Event.NEED_DATA] == [
        "Request",
        Event.END_OF_MESSAGE,
        Event.PAUSED,
    ], got


def test_header_line_trickled_past_limit_raises_431_before_crlf() -> None:
    config = Config()
    parser = RequestParser(config)
    parser.receive_data(b"GET / HTTP/1.1\r\n" + HOST)
    assert parser.next_event() is Event.NEED_DATA
    line = b"X-Long: " + b"b" * config.max_header_line_bytes  # no CRLF ever comes
    result = trickle(parser, line)
    assert result is not None, "a header line over the limit was buffered without end"
    fed, error = result
    assert error.status == 431
    assert fed == config.max_header_line_bytes + 1


def test_header_line_over_limit_whole_is_431() -> None:
    config = Config()
    line = b"X-Long: " + b"b" * (config.max_header_line_bytes - 7)
    assert len(line) == config.max_header_line_bytes + 1
    parser = RequestParser(config)
    parser.receive_data(b"GET / HTTP/1.1\r\n" + HOST + line + b"\r\n\r\n")
    assert events(parser) == [431]


@pytest.mark.parametrize("mode", LIMIT_MODES)
def test_header_line_of_exactly_the_limit_is_accepted(mode: str) -> None:
    """A field line of max_header_line_bytes (CRLF not counted) is fine, however it arrives."""
    config = Config().replace(max_header_line_bytes=64)
    line = b"X-Long: " + b"b" * (64 - 8)
    assert len(line) == 64
    parser = RequestParser(config)
    head = b"GET / HTTP/1.1\r\n" + HOST
    got = feed_mode(parser, head + line + b"\r\n\r\n", mode, cr_at=len(head) + len(line))
    requests = [e for e in got if isinstance(e, Request)]
    assert len(requests) == 1, got
    assert requests[0].headers.get("x-long") == "b" * 56


def long_head(size: int) -> bytes:
    """A complete head of exactly ``size`` bytes made of 400-byte field lines."""
    head = b"GET / HTTP/1.1\r\n" + HOST
    n = 0
    while size - len(head) - 2 > 500:
        name = b"X-F%03d: " % n
        head += name + b"v" * (400 - len(name)) + b"\r\n"
        n += 1
    name = b"X-Last: "
    head += name + b"v" * (size - len(head) - len(name) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


def test_head_trickled_past_limit_raises_431_before_the_blank_line() -> None:
    config = Config()
    parser = RequestParser(config)
    head = long_head(config.max_head_bytes + 500)[:-4]  # the blank line never comes
    result = trickle(parser, head)
    assert result is not None, "a head over the limit was buffered without end"
    fed, error = result
    assert error.status == 431
    assert fed == config.max_head_bytes + 1


@pytest.mark.parametrize("seed", range(3))
def test_head_in_random_reads_past_limit_raises_431_before_the_blank_line(seed: int) -> None:
    config = Config()
    head = long_head(config.max_head_bytes * 2)[:-4]
    parser = RequestParser(config)
    fed = 0
    for chunk in random_split(head, f"head:{seed}"):
        parser.receive_data(chunk)
        fed += len(chunk)
        try:
            assert parser.next_event() is Event.NEED_DATA
        except ProtocolError as exc:
            assert exc.status == 431
            break
    else:
        pytest.fail("a head over the limit was buffered without end")
    assert fed - len(chunk) <= config.max_head_bytes, "the buffer had already passed the limit"


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_head_of_exactly_max_head_bytes_is_accepted(split: str) -> None:
    config = Config()
    head = long_head(config.max_head_bytes)
    parser = RequestParser(config)
    if split == "whole":
        parser.receive_data(head)
        assert isinstance(parser.next_event(), Request)
    else:
        assert trickle(parser, head) is None
        assert parser.buffered == 0
    head = long_head(config.max_head_bytes + 1)
    parser = RequestParser(config)
    parser.receive_data(head)
    assert events(parser) == [431]


BARE_LF = {
    "request-line": b"GET / HTTP/1.1\n",
    "header": b"GET / HTTP/1.1\r\nHost: example.com\n",
    "terminator": b"GET / HTTP/1.1\r\nHost: example.com\r\n\n",
    "before-request-line": b"\n",
    "lf-after-crlf": b"GET / HTTP/1.1\r\n\n",
}


@pytest.mark.parametrize("name", list(BARE_LF))
def test_bare_lf_raises_as_soon_as_it_arrives(name: str) -> None:
    data = BARE_LF[name] + b"X-More: but the head is not complete\r\n"
    parser = RequestParser(Config())
    result = trickle(parser, data)
    assert result is not None
    fed, error = result
    assert error.status == 400
    assert fed == len(BARE_LF[name]), "the bare LF was not refused when it arrived"


def test_header_count_limit() -> None:
    config = Config()
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(config.max_header_count - 1))
    parser = RequestParser(config)
    parser.receive_data(b"GET / HTTP/1.1\r\n" + HOST + fields + b"\r\n")
    request = parser.next_event()
    assert isinstance(request, Request)
    assert len(request.headers) == config.max_header_count
    parser = RequestParser(config)
    parser.receive_data(b"GET / HTTP/1.1\r\n" + HOST + fields + b"X-One-Too-Many: v\r\n\r\n")
    assert events(parser) == [431]


def test_content_length_over_limit_is_413_before_the_body_arrives() -> None:
    config = Config()
    parser = RequestParser(config)
    parser.receive_data(
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % (config.max_body_bytes + 1)
    )
    assert events(parser) == [413]


def test_content_length_at_limit_is_read() -> None:
    config = Config()
    parser = RequestParser(config)
    body = bytes(range(256)) * (config.max_body_bytes // 256)
    assert len(body) == config.max_body_bytes
    parser.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % len(body))
    request = parser.next_event()
    assert isinstance(request, Request)
    assert request.has_body and request.body == b""
    assert parser.next_event() is Event.NEED_DATA
    for i in range(0, len(body), 65536):
        parser.receive_data(body[i : i + 65536])
        expected = Event.END_OF_MESSAGE if i + 65536 >= len(body) else Event.NEED_DATA
        assert parser.next_event() is expected
    assert request.body == body
    assert parser.buffered == 0


def test_chunked_body_limit_counts_every_chunk() -> None:
    """Every byte of a chunked body counts: size lines, data and the CRLF after the data.

    ``5\\r\\nhello\\r\\n5\\r\\nworld\\r\\n0\\r\\n`` is 23 bytes (the trailer section
    after it counts toward the head limits).
    """
    head = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    body = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n"
    assert len(body) == 23
    parser = RequestParser(Config().replace(max_body_bytes=23))
    parser.receive_data(head + body + b"\r\n")
    got = events(parser)
    assert got[1:] == [Event.END_OF_MESSAGE, Event.PAUSED]
    assert isinstance(got[0], Request) and got[0].body == b"helloworld"
    parser = RequestParser(Config().replace(max_body_bytes=22))
    parser.receive_data(head + body + b"\r\n")  # the last-chunk line is one byte too many
    got = events(parser)
    assert isinstance(got[0], Request) and got[1:] == [413]
    parser = RequestParser(Config().replace(max_body_bytes=23))
    parser.receive_data(head + b"5\r\nhello\r\n5\r\nworld\r\n1\r\n")  # one more byte is only announced
    got = events(parser)
    assert isinstance(got[0], Request) and got[1:] == [413]


# -- EOF ------------------------------------------------------------------------------


def test_eof_before_any_byte_is_closed() -> None:
    parser = RequestParser(Config())
    parser.receive_data(b"")
    assert parser.next_event() is Event.CLOSED
    assert parser.next_event() is Event.CLOSED


def test_eof_after_empty_lines_is_closed() -> None:
    parser = RequestParser(Config())
    parser.receive_data(b"\r\n\r\n")
    parser.receive_data(b"")
    assert parser.next_event() is Event.CLOSED


def test_eof_between_requests_is_closed() -> None:
    parser = RequestParser(Config())
    parser.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    got = events(parser)
    assert isinstance(got[0], Request) and got[1:] == [Event.END_OF_MESSAGE, Event.PAUSED]
    parser.receive_data(b"")
    assert parser.next_event() is Event.PAUSED
    parser.start_next_cycle()
    assert parser.next_event() is Event.CLOSED


PARTIAL = {
    "request-line": b"GET / HT",
    "head": b"GET / HTTP/1.1\r\n" + HOST,
    "head-cr": b"GET / HTTP/1.1\r\n" + HOST + b"\r",
    "content-length-body": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc",
    "chunk-data": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab",
    "chunk-size": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5",
    "chunk-crlf": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r",
    "trailers": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
}


@pytest.mark.parametrize("name", list(PARTIAL))
def test_eof_mid_message_is_400(name: str) -> None:
    """The EOF arrives in a later read than the partial message."""
    parser = RequestParser(Config())
    parser.receive_data(PARTIAL[name])
    got = events(parser)
    assert got[-1] is Event.NEED_DATA
    parser.receive_data(b"")
    assert events(parser) == [400]


@pytest.mark.parametrize("name", list(PARTIAL))
def test_eof_mid_message_in_the_same_read_is_400_without_need_data(name: str) -> None:
    """Partial message and EOF both buffered before next_event(): no NEED_DATA once EOF is known."""
    parser = RequestParser(Config())
    parser.receive_data(PARTIAL[name])
    parser.receive_data(b"")
    got = events(parser)
    assert got[-1] == 400, got
    assert Event.NEED_DATA not in got


# -- chunked bodies ----------------------------------------------------------------


def chunked_message(rnd: random.Random) -> tuple[bytes, bytes, list[tuple[str, str]]]:
    body = rnd.randbytes(rnd.randint(0, 3000))
    wire = b"POST /c HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    i = 0
    while i < len(body):
        size = rnd.randint(1, 700)
        data = body[i : i + size]
        i += size
        digits = b"%x" % len(data)
        if rnd.random() < 0.3:
            digits = digits.upper()
        digits = b"0" * rnd.randint(0, 3) + digits
        ext = rnd.choice([b"", b";a", b";a=b", b' ; name="q\\"x" ;z', b"\t;x=1"])
        wire += digits + ext + b"\r\n" + data + b"\r\n"
    trailers = [(f"x-t{n}", f"value {n}") for n in range(rnd.randint(0, 3))]
    wire += b"0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in trailers) + b"\r\n"
    return wire, body, trailers


@pytest.mark.parametrize("seed", range(25))
def test_chunked_body_is_the_concatenated_chunk_data(seed: int) -> None:
    rnd = random.Random(seed)
    wire, body, trailers = chunked_message(rnd)
    parser = RequestParser(Config())
    got: list[Request | Event | int] = []
    for chunk in random_split(wire, f"chunked:{seed}"):
        parser.receive_data(chunk)
        got += events(parser)
    got = [event for event in got if event is not Event.NEED_DATA]
    assert len(got) == 3, got
    request = got[0]
    assert isinstance(request, Request)
    assert got[1:] == [Event.END_OF_MESSAGE, Event.PAUSED]
    assert request.chunked and request.content_length is None
    assert request.body == body
    if trailers:
        assert request.trailers is not None and request.trailers.items() == trailers
    else:
        assert not request.trailers
    assert parser.buffered == 0


# -- the request cycle ------------------------------------------------------------------


def test_pipelined_request_waits_until_start_next_cycle() -> None:
    first = b"POST /1 HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\nok"
    second = b"GET /2 HTTP/1.1\r\n" + HOST + b"\r\n"
    parser = RequestParser(Config())
    parser.receive_data(first + second)
    request = parser.next_event()
    assert isinstance(request, Request) and request.target == "/1"
    assert parser.next_event() is Event.END_OF_MESSAGE
    assert request.body == b"ok"
    for _ in range(3):
        assert parser.next_event() is Event.PAUSED
    assert parser.buffered == len(second)  # untouched while paused
    parser.start_next_cycle()
    request = parser.next_event()
    assert isinstance(request, Request) and request.target == "/2"
    assert parser.next_event() is Event.END_OF_MESSAGE
    assert parser.buffered == 0


def test_start_next_cycle_refused_mid_message() -> None:
    parser = RequestParser(Config())
    with pytest.raises(RuntimeError):
        parser.start_next_cycle()  # nothing parsed yet
    parser.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n\r\nab")
    request = parser.next_event()
    assert isinstance(request, Request)
    assert parser.next_event() is Event.NEED_DATA
    with pytest.raises(RuntimeError):
        parser.start_next_cycle()
    parser.receive_data(b"cd")
    assert parser.next_event() is Event.END_OF_MESSAGE
    assert request.body == b"abcd"
    parser.start_next_cycle()
    assert parser.next_event() is Event.NEED_DATA


def test_body_is_empty_until_end_of_message() -> None:
    parser = RequestParser(Config())
    parser.receive_data(b"PUT / HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\n")
    request = parser.next_event()
    assert isinstance(request, Request)
    assert request.has_body and request.body == b""
    for byte in b"hell":
        parser.receive_data(bytes([byte]))
        assert parser.next_event() is Event.NEED_DATA
        assert request.body == b""
    parser.receive_data(b"o")
    assert parser.next_event() is Event.END_OF_MESSAGE
    assert request.body == b"hello"


def test_no_body_request_ends_at_once() -> None:
    parser = RequestParser(Config())
    parser.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    request = parser.next_event()
    assert isinstance(request, Request)
    assert not request.has_body
    assert parser.next_event() is Event.END_OF_MESSAGE
    assert parser.buffered == 0
