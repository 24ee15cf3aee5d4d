"""The cost of every class of client input grows linearly with its size.

For each input class (head lines, field values, whitespace runs, trailers,
chunk lines, tiny chunks, pipelined requests, query strings, Range lists,
entity-tag lists, percent-encoded paths) an input is built at size n and at
8n and run through the real code in-process: the parser fed the bytes and
driven to completion, and the query parser, the static-file handler and the
router given the Request that parser made. The test fails if the cost grows
more than 20x: linear growth is 8x, quadratic 64x, exponential astronomical,
so 20x separates them with room for noise on a loaded machine. The cost is the
best of three CPU times (see ``measure.py``). Most cases keep n small enough
that both inputs stay in the processor's caches and time several runs
together, so that the n-case takes milliseconds, well above the clock's
resolution; the cases that must expose copying of a big buffer use one run
of a big input.

Limits are raised far above the defaults so that one input can be big
enough to measure: the limits bound how much a client may send, and this
suite checks what each byte it may send costs. Each measurement runs in a
forked child with a budget of CPU seconds, since a backtracking regex cannot be
interrupted; a timeout is a failure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from reactor import App, Request, StaticFiles
from reactor.compress import accepts_gzip
from reactor.config import Config
from reactor.http import parser as parser_module
from reactor.http.cookies import parse_cookie_header
from reactor.http.errors import HTTPError, ProtocolError
from reactor.http.fields import parse_urlencoded
from reactor.http.parser import Event, RequestParser
from reactor.proxy import FORWARDING_FIELDS
from tests.complexity.measure import MAX_RATIO, growth


def _roomy_config() -> Config:
    """The default config with every request limit raised out of the way."""
    huge = {
        field.name: 1 << 30
        for field in dataclasses.fields(Config)
        if field.name.startswith("max_") and field.name.endswith(("_bytes", "_count"))
    }
    return Config().replace(**huge)


ROOMY = _roomy_config()
START = b"GET / HTTP/1.1\r\nHost: x\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
OK = (1, 1, "NEED_DATA")  # one request, its body read, waiting for the next
BAD = (0, 0, 400)  # refused before a Request was made
BAD_BODY = (1, 0, 400)  # the head was fine, its body was not


def PIPELINED(n: int) -> tuple[int, int, str]:
    return (n, n, "NEED_DATA")  # n requests, all read


# -- driving ------------------------------------------------------------------------


def drain(parser: RequestParser) -> tuple[int, int, int | str]:
    """Run ``parser`` until it needs data or fails: (requests, messages, end)."""
    requests = messages = 0
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            return requests, messages, exc.status
        if isinstance(event, Request):
            requests += 1
        elif event is Event.END_OF_MESSAGE:
            messages += 1
        elif event is Event.PAUSED:
            parser.start_next_cycle()
        else:
            return requests, messages, event.name


def parse(inputs: list[bytes]) -> list[tuple[int, int, int | str]]:
    """Each input fed to a fresh parser in one read."""
    outcomes = []
    for data in inputs:
        parser = RequestParser(ROOMY)
        parser.receive_data(data)
        outcomes.append(drain(parser))
    return outcomes


def parse_trickled(pieces: list[bytes]) -> tuple[int, int, int | str]:
    """One input fed in many small reads, draining after each as the connection does."""
    parser = RequestParser(ROOMY)
    outcome: tuple[int, int, int | str] = (0, 0, "NEED_DATA")
    requests = messages = 0
    for piece in pieces:
        parser.receive_data(piece)
        got, done, outcome_end = drain(parser)
        requests, messages = requests + got, messages + done
        outcome = (requests, messages, outcome_end)
        if isinstance(outcome_end, int):
            break
    return outcome


def request_for(data: bytes) -> Request:
    parser = RequestParser(ROOMY)
    parser.receive_data(data)
    event = parser.next_event()
    assert isinstance(event, Request), event
    return event


# -- the cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    n: int
    # build(n, root) -> the input; run(input) -> an outcome; expect(n) -> that outcome
    build: Callable[[int, Path], Any]
    run: Callable[[Any], Any]
    expect: Callable[[int], Any]
    reps: int = 1  # runs timed together (see measure.growth)


def one(make: Callable[[int], bytes], outcome: Any) -> dict[str, Any]:
    """A parser case whose input is one buffer; ``outcome`` may be a function of n."""
    expect = outcome if callable(outcome) else lambda n: outcome
    return {"build": lambda n, root: [make(n)], "run": parse, "expect": lambda n: [expect(n)]}


def many(copies: int, make: Callable[[int], bytes], outcome: tuple[int, int, int | str]) -> dict[str, Any]:
    """A parser case of ``copies`` inputs whose size n is that of one line (lines have a length limit)."""
    return {
        "build": lambda n, root: [make(n)] * copies,
        "run": parse,
        "expect": lambda n: [outcome] * copies,
    }


def chunk_line(ext: bytes) -> bytes:
    return CHUNKED + b"1" + ext + b"\r\nx\r\n0\r\n\r\n"


PARSER_CASES = [
    # Head lines: many field lines, then (worst case for a backtracking head
    # pattern) one bad line after them.
    Case("head-lines", 500, **one(lambda n: START + b"X: a\r\n" * n + b"\r\n", OK), reps=12),
    Case("head-lines-bad-last", 500, **one(lambda n: START + b"X: a\r\n" * n + b"bad\r\n\r\n", BAD), reps=4),
    Case(
        "head-lines-spaces-bad-last",
        500,
        **one(lambda n: START + b"X:    a\r\n" * n + b"X: \x01\r\n\r\n", BAD),
        reps=4,
    ),
    Case(
        "head-distinct-names",
        500,
        **one(lambda n: START + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(n)) + b"\r\n", OK),
        reps=8,
    ),
    # Field values: one long value, valid or ending in a control character.
    Case("field-value", 8000, **one(lambda n: START + b"X: " + b"a b\t" * n + b"z\r\n\r\n", OK), reps=8),
    Case(
        "field-value-bad-end",
        4000,
        **one(lambda n: START + b"X: " + b"a " * n + b"\x01\r\n\r\n", BAD),
        reps=8,
    ),
    Case(
        "field-value-obs-text",
        12500,
        **one(lambda n: START + b"X: \xff" + b"\x80 " * n + b"\r\n\r\n", OK),
        reps=8,
    ),
    # Whitespace runs: after the colon, at the end, as the whole value,
    # before a bad byte, before the colon, between list elements.
    Case("ows-after-colon", 25000, **one(lambda n: START + b"X:" + b" \t" * n + b"a\r\n\r\n", OK), reps=8),
    Case("ows-trailing", 12500, **one(lambda n: START + b"X: a" + b" \t" * n + b"\r\n\r\n", OK), reps=8),
    Case("ows-only", 50000, **one(lambda n: START + b"X:" + b" " * n + b"\r\n\r\n", OK), reps=12),
    Case(
        "ows-then-bad-byte", 6250, **one(lambda n: START + b"X: a" + b" " * n + b"\x7f\r\n\r\n", BAD), reps=8
    ),
    Case("ows-before-colon", 25000, **one(lambda n: START + b"X" + b" " * n + b": a\r\n\r\n", BAD), reps=40),
    Case(
        "ows-connection-list",
        2500,
        **one(lambda n: START + b"Connection: " + b"a ,\t" * n + b"keep-alive\r\n\r\n", OK),
        reps=8,
    ),
    Case(
        "ows-transfer-encoding-list",
        2500,
        **one(
            lambda n: (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                + b" ,\t" * n
                + b"chunked\r\n\r\n0\r\n\r\n"
            ),
            OK,
        ),
        reps=8,
    ),
    Case(
        "ows-content-length-list",
        1000,
        **one(lambda n: START + b"Content-Length: " + b"0 ,\t " * n + b"0\r\n\r\n", OK),
        reps=8,
    ),
    # Trailers: many lines, spaces after the colon, a bad last line.
    Case("trailer-lines", 500, **one(lambda n: CHUNKED + b"0\r\n" + b"T: a\r\n" * n + b"\r\n", OK), reps=12),
    Case(
        "trailer-spaces", 500, **one(lambda n: CHUNKED + b"0\r\n" + b"T:    a\r\n" * n + b"\r\n", OK), reps=12
    ),
    Case(
        "trailer-bad-last",
        500,
        **one(lambda n: CHUNKED + b"0\r\n" + b"T:    a\r\n" * n + b"bad\r\n\r\n", BAD_BODY),
        reps=4,
    ),
    # A chunk line has a length bound (4 KiB today), so n is the length of one
    # line and the input is many requests, each with one such line; at 8n the
    # line stays under 1 KiB, well inside any reasonable bound.
    Case("chunk-ext-list", 15, **many(400, lambda n: chunk_line(b" ; e = v" * n), OK)),
    Case("chunk-ext-quoted", 30, **many(400, lambda n: chunk_line(b';e="' + b'a\\" ' * n + b'"'), OK)),
    Case("chunk-ext-bad-end", 15, **many(400, lambda n: chunk_line(b";e=v" * 2 * n + b";\x01"), BAD_BODY)),
    Case(
        "chunk-ext-quoted-unclosed",
        20,
        **many(400, lambda n: chunk_line(b';e="' + b'\\"a' * 2 * n), BAD_BODY),
    ),
    Case(
        "chunk-size-zeros", 120, **many(400, lambda n: CHUNKED + b"0" * n + b"1\r\nx\r\n0\r\n\r\n", BAD_BODY)
    ),
    # Many tiny chunks in one buffer. Copying what is left of the buffer
    # after each chunk costs in proportion to the buffer's size, so the
    # second case pads each chunk line with an extension to make that show.
    Case("tiny-chunks", 12_000, **one(lambda n: CHUNKED + b"1\r\nx\r\n" * n + b"0\r\n\r\n", OK)),
    Case(
        "tiny-chunks-long-ext",
        2000,
        **one(lambda n: CHUNKED + (b"1;e=" + b"v" * 100 + b"\r\nx\r\n") * n + b"0\r\n\r\n", OK),
    ),
    # Many small requests in one buffer (a few hundred bytes each, for the
    # same reason).
    Case("pipelined-get", 1500, **one(lambda n: (START + b"X: " + b"a" * 200 + b"\r\n\r\n") * n, PIPELINED)),
    Case(
        "pipelined-post",
        1000,
        **one(
            lambda n: (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n" + b"x" * 300) * n,
            PIPELINED,
        ),
    ),
    Case(
        "pipelined-chunked",
        1000,
        **one(lambda n: (CHUNKED + b"100\r\n" + b"x" * 256 + b"\r\n0\r\n\r\n") * n, PIPELINED),
    ),
    # A head sent a few bytes at a time (each read is scanned for the limits).
    Case(
        "head-trickled",
        500,
        build=lambda n, root: _pieces(START + b"X: a\r\n" * n + b"\r\n", 16),
        run=parse_trickled,
        expect=lambda n: OK,
        reps=4,
    ),
    Case(
        "request-line-trickled",
        40_000,
        build=lambda n, root: _pieces(b"GET /" + b"a" * n + b" HTTP/1.1\r\nHost: x\r\n\r\n", 64),
        run=parse_trickled,
        expect=lambda n: OK,
    ),
]


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- query strings --------------------------------------------------------------------


def query_size(target: bytes) -> int:
    """Parse a request for ``target`` and its query string, with no limit on
    the number of fields (``request.query`` stops at 1000); how many names it has."""
    request = request_for(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    return len(parse_urlencoded(request.query_string, max_fields=None))


def query_refused(target: bytes) -> int:
    """``request.query`` on too many fields: the status it is refused with."""
    try:
        query = request_for(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n").query
    except HTTPError as exc:
        return exc.status
    return len(query)


QUERY_CASES = [
    Case(
        "query-params",
        1000,
        lambda n, root: b"/?" + b"".join(b"a%d=b&" % i for i in range(n)),
        query_size,
        lambda n: n,
        reps=4,
    ),
    Case("query-same-name", 1250, lambda n, root: b"/?" + b"a=b&" * n, query_size, lambda n: 1, reps=4),
    Case("query-ampersands", 12500, lambda n, root: b"/?" + b"&" * n, query_size, lambda n: 0, reps=8),
    Case("query-equals", 25000, lambda n, root: b"/?" + b"=" * n, query_size, lambda n: 1, reps=20),
    Case("query-percent", 1250, lambda n, root: b"/?a=" + b"%41" * n, query_size, lambda n: 1, reps=8),
    Case("query-plus", 25000, lambda n, root: b"/?a=" + b"+" * n, query_size, lambda n: 1, reps=24),
    Case(
        "query-over-limit",
        12500,
        lambda n, root: b"/?" + b"a&" * (1000 + n),
        query_refused,
        lambda n: 400,
        reps=8,
    ),
]


# -- static files and routes ----------------------------------------------------------

FILE_SIZE = 1 << 20


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("complexity-root")
    with (root / "file.bin").open("wb") as file:
        file.truncate(FILE_SIZE)
    return root


def static_status(args: tuple[StaticFiles, bytes]) -> int:
    """Parse the request and let the handler answer it; the status."""
    handler, data = args
    response = handler(request_for(data))
    close = getattr(response.body, "close", None)
    if close is not None:
        close()
    return response.status


def static(header: Callable[[int], bytes], status: int, **options: Any) -> dict[str, Any]:
    """A StaticFiles case: GET /file.bin with the header ``header(n)``."""
    return {
        "build": lambda n, root: (
            StaticFiles(root, **options),
            b"GET /file.bin HTTP/1.1\r\nHost: x\r\n" + header(n) + b"\r\n\r\n",
        ),
        "run": static_status,
        "expect": lambda n: status,
    }


def static_path(path: Callable[[int], bytes], status: int) -> dict[str, Any]:
    return {
        "build": lambda n, root: (StaticFiles(root), b"GET " + path(n) + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        "run": static_status,
        "expect": lambda n: status,
    }


def ranges(n: int) -> bytes:
    return b",".join(b"%d-%d" % (2 * i, 2 * i) for i in range(n))


def tags(n: int) -> bytes:
    return b", ".join(b'"%x"' % i for i in range(n))


STATIC_CASES = [
    Case(
        "range-many", 500, **static(lambda n: b"Range: bytes=" + ranges(n), 206, max_ranges=1 << 30), reps=8
    ),
    Case("range-many-over-max", 2500, **static(lambda n: b"Range: bytes=" + ranges(n), 200), reps=8),
    Case(
        "range-empty-elements",
        5000,
        **static(lambda n: b"Range: bytes=" + b" ,\t" * n + b"0-0", 206, max_ranges=1 << 30),
        reps=8,
    ),
    Case("range-inner-ows", 25000, **static(lambda n: b"Range: bytes=0-0" + b" " * n + b",1-1", 206), reps=8),
    Case("range-long-digits", 7500, **static(lambda n: b"Range: bytes=0-" + b"9" * n, 206), reps=8),
    Case("if-none-match-many", 400, **static(lambda n: b"If-None-Match: " + tags(n), 200), reps=8),
    Case(
        "if-match-many", 400, **static(lambda n: b"If-Match: " + tags(n).replace(b'"', b'W/"'), 412), reps=8
    ),
    Case(
        "if-none-match-ows",
        2500,
        **static(lambda n: b"If-None-Match: " + b'"a"' + b" ," * n + b' \t"b"', 200),
        reps=8,
    ),
    Case(
        "if-none-match-ows-unquoted",
        2000,
        **static(lambda n: b'If-None-Match: "a",' + b" " * n + b"x", 200),
        reps=8,
    ),
    Case(
        "if-match-ows-unquoted", 1250, **static(lambda n: b'If-Match: "a",' + b"\t " * n + b"x", 412), reps=8
    ),
    Case("if-none-match-commas", 5000, **static(lambda n: b"If-None-Match: " + b"," * n, 200), reps=8),
    Case("if-none-match-open-quote", 20000, **static(lambda n: b'If-None-Match: "' + b"a" * n, 200), reps=8),
    Case("static-percent-path", 1250, **static_path(lambda n: b"/" + b"%41" * n, 404), reps=8),
    Case("static-percent-slashes", 1250, **static_path(lambda n: b"/" + b"%2F" * n, 404), reps=8),
    Case("static-percent-segments", 500, **static_path(lambda n: b"/a%2Fb" * n, 404), reps=8),
    Case("static-percent-dots", 500, **static_path(lambda n: b"/a/%2E%2E" * n, 404), reps=8),
]


def route_app() -> App:
    app = App()

    @app.route("/items/{id}")
    def item(request: Request) -> str:
        return request.params["id"][:10]

    @app.route("/users/{user}/posts/{post}")
    def post(request: Request) -> str:
        return "post"

    @app.route("/files/{path:path}")
    def files(request: Request) -> str:
        return "file"

    # A parameter with a literal after it in its segment, and a path parameter
    # with a literal after it: each can be cut one way only.
    @app.route("/docs/{name}.txt")
    def doc(request: Request) -> str:
        return "doc"

    @app.route("/tree/{rest:path}/edit")
    def edit(request: Request) -> str:
        return "edit"

    return app


def route_status(args: tuple[App, bytes]) -> int:
    app, data = args
    return app(request_for(data)).status


def route(path: Callable[[int], bytes], status: int) -> dict[str, Any]:
    return {
        "build": lambda n, root: (route_app(), b"GET " + path(n) + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        "run": route_status,
        "expect": lambda n: status,
    }


ROUTE_CASES = [
    Case("route-percent-param", 1250, **route(lambda n: b"/items/" + b"%41" * n, 200), reps=8),
    Case("route-percent-slashes", 1250, **route(lambda n: b"/items/" + b"%2F" * n, 404), reps=8),
    Case("route-percent-path", 1250, **route(lambda n: b"/files/" + b"a%2F" * n, 200), reps=8),
    Case(
        "route-percent-two-params", 1250, **route(lambda n: b"/users/" + b"%41" * n + b"/posts/", 404), reps=8
    ),
    Case("route-percent-nomatch", 1250, **route(lambda n: b"/" + b"%41" * n, 404), reps=8),
    Case("route-suffix-nomatch", 1250, **route(lambda n: b"/docs/" + b"a.txt" * n + b"x", 404), reps=8),
    Case("route-path-suffix-nomatch", 1250, **route(lambda n: b"/tree/" + b"a/edit" * n + b"x", 404), reps=8),
]

# -- header values parsed after the head: Cookie and Accept-Encoding -------------
# Called directly on the value (a head's line limit would cap n well below
# what shows the growth): the functions the request and the gzip hook call.


def cookie_count(value: str) -> int:
    return len(parse_cookie_header(value))


def gzip_accepted(value: str) -> bool:
    return accepts_gzip([value])


HEADER_VALUE_CASES = [
    Case(
        "cookie-pairs",
        1000,
        lambda n, root: "".join(f"c{i}=v; " for i in range(n)),
        cookie_count,
        lambda n: n,
    ),
    Case("cookie-semicolons", 10000, lambda n, root: ";" * n, cookie_count, lambda n: 0, reps=4),
    Case("cookie-equals", 10000, lambda n, root: "a" + "=" * n, cookie_count, lambda n: 1, reps=4),
    Case(
        "accept-encoding-elements",
        1000,
        lambda n, root: "br;q=0.5, " * n + "gzip",
        gzip_accepted,
        lambda n: True,
        reps=4,
    ),
    Case("accept-encoding-commas", 10000, lambda n, root: "," * n, gzip_accepted, lambda n: False, reps=4),
    Case(
        # An element with a malformed parameter is skipped, so gzip is not accepted.
        "accept-encoding-semicolons",
        10000,
        lambda n, root: "gzip" + ";" * n,
        gzip_accepted,
        lambda n: False,
        reps=4,
    ),
]

# -- the fields of a head matched whole: kept as their block until read --------------
# Headers.has_any searches the unsplit block (near misses of the forwarding
# names on every line, the worst case for that search), and the first read
# splits it.


def forwarded_and_count(data: bytes) -> tuple[bool, int]:
    headers = request_for(data).headers
    return headers.has_any(FORWARDING_FIELDS), len(headers.items())


HEADER_BLOCK_CASES = [
    Case(
        "block-near-miss-names",
        500,
        lambda n, root: START + b"X-Forwarded-Fo: a\r\n" * n + b"\r\n",
        forwarded_and_count,
        lambda n: (False, n + 1),
        reps=8,
    ),
    Case(
        "block-long-value",
        8000,
        lambda n, root: START + b"X: " + b"x-forwarded-for:" * n + b"\r\n\r\n",
        forwarded_and_count,
        lambda n: (False, 2),
        reps=8,
    ),
]

CASES = PARSER_CASES + QUERY_CASES + STATIC_CASES + ROUTE_CASES + HEADER_VALUE_CASES + HEADER_BLOCK_CASES


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cost_grows_linearly(case: Case, root: Path) -> None:
    try:
        result = growth(lambda n: case.build(n, root), case.run, case.n, case.reps)
    except TimeoutError as exc:
        pytest.fail(f"{case.id}: {exc}")
    assert result.small_outcome == case.expect(case.n), f"{case.id} at n: not the expected answer"
    assert result.large_outcome == case.expect(8 * case.n), f"{case.id} at 8n: not the expected answer"
    assert result.ratio <= MAX_RATIO, (
        f"{case.id}: {result.small_s * 1e3:.2f} ms at n={case.n}, {result.large_s * 1e3:.2f} ms at 8n: "
        f"{result.ratio:.0f}x (linear is 8x, quadratic 64x; the bound is {MAX_RATIO:.0f}x)"
    )


# The head cases again with the one-call match of a whole head turned off: the
# line-by-line reading, which heads too large for that match (and heads it
# refuses) go through, must be linear too.
LINE_BY_LINE_CASES = [case for case in PARSER_CASES if case.id.startswith(("head-", "field-", "ows-"))]


@pytest.mark.parametrize("case", LINE_BY_LINE_CASES, ids=[case.id for case in LINE_BY_LINE_CASES])
def test_line_by_line_cost_grows_linearly(case: Case, root: Path) -> None:
    with mock.patch.object(parser_module, "WHOLE_HEAD_RE", re.compile(r"(?!)")):
        test_cost_grows_linearly(case, root)
