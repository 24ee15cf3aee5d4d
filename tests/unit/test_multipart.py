"""The streaming multipart/form-data parser: the same parts however the body is cut,
the right HTTPError for each malformed body, and linear time."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reactor import HTTPError
from reactor.http.multipart import (
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_boundary,
    parse_options,
    read_form,
)
from tests.complexity.measure import MAX_RATIO, growth
from tests.unit.parser_support import bytewise, random_split, whole

BOUNDARY = b"----reactorBoundary7MA4YWxkTrZu0gW"


def body_of(*parts: bytes, boundary: bytes = BOUNDARY, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    """Parts (each its header lines, a blank line and its content) framed by ``boundary``."""
    delimiter = b"--" + boundary
    out = preamble + b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    return out + delimiter + b"--\r\n" + epilogue


def field(name: str, value: bytes) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value


def file_part(
    name: str, filename: str, content: bytes, content_type: str = "application/octet-stream"
) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    head += f"Content-Type: {content_type}\r\n\r\n"
    return head.encode() + content


def parts_of(pieces: list[bytes], boundary: bytes = BOUNDARY, **limits: Any) -> list[tuple[Any, ...]]:
    """Feed ``pieces``; each part as (name, filename, content_type, content)."""
    parser = MultipartParser(boundary, **limits)
    parts: list[tuple[Any, ...]] = []
    current: list[Any] = []
    for piece in pieces:
        for event in parser.feed(piece):
            if isinstance(event, PartStart):
                assert not current
                current = [event.name, event.filename, event.content_type, bytearray()]
            elif isinstance(event, PartData):
                assert event.data, "no empty data events"
                current[3] += event.data
            else:
                assert isinstance(event, PartEnd)
                parts.append((*current[:3], bytes(current[3])))
                current = []
    parser.close()
    assert parser.done
    return parts


VALID = {
    "one field": (body_of(field("a", b"1")), [("a", None, None, b"1")]),
    "empty value": (body_of(field("a", b"")), [("a", None, None, b"")]),
    "fields and a file": (
        body_of(
            field("a", b"x"),
            field("a", b"y"),
            file_part("up", "r\u00e9sum\u00e9.txt", b"hi\r\n", "text/plain"),
        ),
        [
            ("a", None, None, b"x"),
            ("a", None, None, b"y"),
            ("up", "r\u00e9sum\u00e9.txt", "text/plain", b"hi\r\n"),
        ],
    ),
    "content with near-delimiters": (
        body_of(
            file_part(
                "f", "f.bin", b"\r\n--" + BOUNDARY[:-1] + b"\r\n-" + BOUNDARY + b"\n--" + BOUNDARY + b"x"
            )
        ),
        [
            (
                "f",
                "f.bin",
                "application/octet-stream",
                b"\r\n--" + BOUNDARY[:-1] + b"\r\n-" + BOUNDARY + b"\n--" + BOUNDARY + b"x",
            )
        ],
    ),
    "preamble, padding and epilogue": (
        b"ignored preamble\r\n--"
        + BOUNDARY
        + b" \t\r\n"
        + field("a", b"1")
        + b"\r\n--"
        + BOUNDARY
        + b"--ignored\r\n",
        [("a", None, None, b"1")],
    ),
    "no header fields but disposition folded case": (
        body_of(b"content-disposition: FORM-DATA; NAME=\"n\"; filename*=UTF-8''na%C3%AFve%20f.txt\r\n\r\nz"),
        [("n", "na\u00efve f.txt", None, b"z")],
    ),
    "semicolon and escaped quote in a quoted filename": (
        body_of(b'Content-Disposition: form-data; name="f"; filename="a;b\\"c.txt"\r\n\r\n'),
        [("f", 'a;b"c.txt', None, b"")],
    ),
    "one-character boundary": (body_of(field("a", b"-\r\n-"), boundary=b"x"), [("a", None, None, b"-\r\n-")]),
}


@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
@pytest.mark.parametrize("name", list(VALID))
def test_valid_bodies_however_cut(name: str, split: str) -> None:
    raw, expected = VALID[name]
    boundary = b"x" if name == "one-character boundary" else BOUNDARY
    if split == "random":
        for seed in range(20):
            assert parts_of(random_split(raw, f"{name}{seed}"), boundary) == expected
    else:
        assert parts_of(whole(raw) if split == "whole" else bytewise(raw), boundary) == expected


def test_events_stream_before_the_body_ends() -> None:
    parser = MultipartParser(BOUNDARY)
    events = parser.feed(b"--" + BOUNDARY + b"\r\n" + field("big", b"a" * 1000))
    assert isinstance(events[0], PartStart)
    # All but a delimiter's length is handed on at once: nothing piles up.
    assert sum(len(e.data) for e in events if isinstance(e, PartData)) >= 1000 - len(BOUNDARY) - 4
    assert not parser.done


def test_read_form_spools_files_past_the_size() -> None:
    raw = body_of(
        field("a", b"1"), file_part("small", "s.txt", b"abc"), file_part("big", "b.bin", b"z" * 5000)
    )
    form = read_form(random_split(raw, "spool"), BOUNDARY, spool_bytes=1024)
    assert form.fields.to_dict() == {"a": ["1"]}
    small, big = form.files["small"], form.files["big"]
    assert (small.filename, small.content_type, small.size, small.read()) == (
        "s.txt",
        "application/octet-stream",
        3,
        b"abc",
    )
    assert (big.size, big.read()) == (5000, b"z" * 5000)
    assert not small.file._rolled  # type: ignore[attr-defined]  # still in memory
    assert big.file._rolled  # type: ignore[attr-defined]  # on disk
    assert big.read() == b"z" * 5000  # read() starts from the beginning each time
    form.close()
    assert big.file.closed


def test_read_form_field_not_utf8_and_too_long() -> None:
    with pytest.raises(HTTPError) as caught:
        read_form([body_of(field("a", b"\xff"))], BOUNDARY)
    assert caught.value.status == 400
    with pytest.raises(HTTPError) as caught:
        read_form([body_of(field("a", b"x" * 101))], BOUNDARY, max_field_bytes=100)
    assert caught.value.status == 413


# -- malformed bodies ------------------------------------------------------------------

MALFORMED = {
    "no final boundary": (body_of(field("a", b"1"))[: -len(b"--\r\n") - len(BOUNDARY) - 4], {}, 400),
    "only a preamble": (b"hello", {}, 400),
    "empty body": (b"", {}, 400),
    "final boundary cut short": (body_of(field("a", b"1"))[:-3], {}, 400),
    "delimiter followed by junk": (
        b"--" + BOUNDARY + b"junk\r\n" + field("a", b"1") + b"\r\n--" + BOUNDARY + b"--",
        {},
        400,
    ),
    "no Content-Disposition": (body_of(b"Content-Type: text/plain\r\n\r\nx"), {}, 400),
    "not form-data": (body_of(b'Content-Disposition: attachment; name="a"\r\n\r\nx'), {}, 400),
    "no name": (body_of(b'Content-Disposition: form-data; filename="a"\r\n\r\nx'), {}, 400),
    "header line without a colon": (
        body_of(b'Content-Disposition: form-data; name="a"\r\nbogus\r\n\r\nx'),
        {},
        400,
    ),
    "bare LF in a header": (
        body_of(b'Content-Disposition: form-data; name="a"; filename="x\ny"\r\n\r\n'),
        {},
        400,
    ),
    "NUL in a header": (body_of(b'Content-Disposition: form-data; name="a\x00"\r\n\r\n'), {}, 400),
    "headers never end": (b"--" + BOUNDARY + b"\r\n" + b"X-A: b\r\n" * 20000, {}, 413),
    "header block too long": (body_of(b"X-Pad: " + b"p" * 9000 + b"\r\n" + field("a", b"1")), {}, 413),
    "header limit lowered": (body_of(field("a", b"1")), {"max_header_bytes": 20}, 413),
    "too many parts": (body_of(*[field("a", b"1")] * 11), {"max_parts": 10}, 413),
}


@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bodies(name: str, split: str) -> None:
    raw, limits, status = MALFORMED[name]
    pieces = (
        whole(raw) if split == "whole" else bytewise(raw) if split == "bytewise" else random_split(raw, name)
    )
    with pytest.raises(HTTPError) as caught:
        parts_of(pieces, **limits)
    assert caught.value.status == status


def test_limits_are_inclusive() -> None:
    assert len(parts_of([body_of(*[field("a", b"1")] * 10)], max_parts=10)) == 10
    block = field("a", b"")  # the header block with its blank line
    assert parts_of([body_of(block)], max_header_bytes=len(block)) == [("a", None, None, b"")]
    with pytest.raises(HTTPError) as caught:
        parts_of(bytewise(body_of(block)), max_header_bytes=len(block) - 1)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b:c?"', b"a b:c?"),
        ("multipart/form-data; charset=utf-8; BOUNDARY=" + "b" * 70, b"b" * 70),
    ],
)
def test_good_boundaries(content_type: str, boundary: bytes) -> None:
    assert parse_boundary(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; boundary=" + "b" * 71,
        'multipart/form-data; boundary="ends in space "',
        "multipart/form-data; boundary=semi\u00e9",
        'multipart/form-data; boundary="a\\"b"',
        "multipart/form-data; boundary=a*b",
    ],
)
def test_bad_boundaries_are_400(content_type: str) -> None:
    with pytest.raises(HTTPError) as caught:
        parse_boundary(content_type)
    assert caught.value.status == 400


def test_parse_options() -> None:
    assert parse_options('Form-Data; name="a"; filename="C:\\dir\\f.txt"; x; name=b') == (
        "form-data",
        {"name": "a", "filename": "C:\\dir\\f.txt"},
    )
    assert parse_options("text/plain;charset=UTF-8 ;;") == ("text/plain", {"charset": "UTF-8"})
    assert parse_options('a; q="unterminated') == ("a", {"q": "unterminated"})


# -- linear time ------------------------------------------------------------------------


def tiny_parts(n: int) -> bytes:
    return body_of(*[field("a", b"")] * n)


def near_delimiters(n: int) -> bytes:
    """One file whose content is ``n`` delimiters cut short: each a candidate for ``find``."""
    return body_of(file_part("f", "f", (b"\r\n--" + BOUNDARY[:6]) * n))


def run_parser(raw: bytes) -> int:
    return len(parts_of([raw], max_parts=1 << 30))


def run_parser_in_pieces(raw: bytes) -> int:
    return len(parts_of([raw[i : i + 7] for i in range(0, len(raw), 7)], max_parts=1 << 30))


def run_header_trickle(raw: bytes) -> int:
    parser = MultipartParser(BOUNDARY, max_header_bytes=1 << 30)
    for i in range(0, len(raw), 3):
        parser.feed(raw[i : i + 3])
    return len(raw)


@pytest.mark.parametrize(
    ("build", "run", "outcome", "n"),
    [
        (tiny_parts, run_parser, lambda n: n, 2000),
        (tiny_parts, run_parser_in_pieces, lambda n: n, 1000),
        (near_delimiters, run_parser, lambda n: 1, 20000),
        (near_delimiters, run_parser_in_pieces, lambda n: 1, 5000),
        (lambda n: b"--" + BOUNDARY + b"\r\n" + b"X: y\r\n" * n, run_header_trickle, None, 5000),
    ],
    ids=[
        "tiny-parts",
        "tiny-parts-in-pieces",
        "near-delimiters",
        "near-delimiters-in-pieces",
        "header-trickle",
    ],
)
def test_cost_grows_linearly(build: Any, run: Any, outcome: Any, n: int) -> None:
    result = growth(build, run, n, reps=3)
    if outcome is not None:
        assert result.small_outcome == outcome(n)
        assert result.large_outcome == outcome(8 * n)
    assert result.ratio < MAX_RATIO, f"8x the input cost {result.ratio:.1f}x the time"


def test_random_bodies_never_raise_anything_but_httperror() -> None:
    rnd = random.Random(7)
    alphabet = [b"\r\n", b"--", BOUNDARY, b"\r\n\r\n", b"Content-Disposition: form-data; name=a", b"x", b":"]
    for _ in range(300):
        raw = b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        try:
            parts_of(random_split(raw, str(rnd.random())))
        except HTTPError as exc:
            assert exc.status in (400, 413)
