"""Shared by the parser tests: the JSON vectors, and a driver that feeds a parser.

The vectors in ``tests/vectors/{valid,invalid}/NNN-name.json`` are the source
of truth. ``raw`` is text whose code points are the request's octets
(ISO-8859-1), so ``raw.encode("latin-1")`` gives the exact bytes.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.config import Config
from reactor.http.errors import ProtocolError
from reactor.http.parser import Event, RequestParser
from reactor.http.request import Request

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"
NAME_RE = re.compile(r"[0-9]{3}-[a-z0-9][a-z0-9.-]*\.json")
STATUSES = frozenset({400, 413, 414, 417, 431, 501, 505})
LIMIT_FIELDS = frozenset(
    {
        "max_request_line_bytes",
        "max_header_line_bytes",
        "max_head_bytes",
        "max_header_count",
        "max_body_bytes",
    }
)
REQUEST_FIELDS = (
    "method",
    "target",
    "path",
    "raw_path",
    "query_string",
    "version",
    "headers",
    "body",
    "keep_alive",
    "expect_continue",
    "content_length",
    "chunked",
)
OPTIONAL_REQUEST_FIELDS = frozenset({"trailers", "get_all", "host"})


@dataclass(frozen=True)
class Vector:
    kind: str  # "valid" or "invalid"
    name: str  # file name without ".json"
    raw: bytes
    config: Config
    doc: dict[str, Any]

    def __repr__(self) -> str:
        return f"<Vector {self.kind}/{self.name}>"


def _config(spec: dict[str, int] | None) -> Config:
    if not spec:
        return Config()
    unknown = set(spec) - LIMIT_FIELDS
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}")
    return Config().replace(**spec)


def load_vectors(kind: str) -> list[Vector]:
    vectors = []
    for path in sorted((VECTORS_DIR / kind).iterdir()):
        doc = json.loads(path.read_text(encoding="utf-8"))
        raw = doc["raw"].encode("latin-1")  # fails loudly on a code point above U+00FF
        vectors.append(Vector(kind, path.stem, raw, _config(doc.get("config")), doc))
    return vectors


VALID = load_vectors("valid")
INVALID = load_vectors("invalid")


def snapshot(request: Request) -> dict[str, Any]:
    """Every parsed attribute of ``request``, bytes shown as latin-1 text."""
    return {
        "method": request.method,
        "target": request.target,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "version": request.version,
        "headers": [list(pair) for pair in request.headers.items()],
        "body": request.body.decode("latin-1"),
        "keep_alive": request.keep_alive,
        "expect_continue": request.expect_continue,
        "content_length": request.content_length,
        "chunked": request.chunked,
        "trailers": None if request.trailers is None else [list(pair) for pair in request.trailers.items()],
        "host": request.host,
    }


# -- splitting -------------------------------------------------------------------


def whole(raw: bytes) -> list[bytes]:
    return [raw]


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def random_split(raw: bytes, seed: str) -> list[bytes]:
    """``raw`` cut at 1 to 12 random places (deterministic for a seed)."""
    if len(raw) < 2:
        return [raw]
    rnd = random.Random(seed)
    count = rnd.randint(1, min(12, len(raw) - 1))
    cuts = sorted(rnd.sample(range(1, len(raw)), count))
    return split_at(raw, cuts)


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# -- driving ----------------------------------------------------------------------


@dataclass
class Run:
    """What a parser did with some input."""

    heads: list[dict[str, Any]] = field(default_factory=list)  # snapshots at the Request event
    messages: list[dict[str, Any]] = field(default_factory=list)  # snapshots at END_OF_MESSAGE
    events: list[Request | Event] = field(default_factory=list)
    # (bytes fed so far, heads seen, messages completed) at each NEED_DATA
    need_data: list[tuple[int, int, int]] = field(default_factory=list)
    error: ProtocolError | None = None
    error_at: int = -1  # bytes fed when the error was raised
    error_after_eof: bool = False
    closed: bool = False
    # Anything the parser did after its error other than raising it again.
    after_error: list[str] = field(default_factory=list)
    buffered: int = -1  # parser.buffered at the end


class SequenceError(AssertionError):
    """The parser's events came in an order the API does not allow."""


def drive(config: Config, chunks: list[bytes], *, eof: bool = False) -> Run:
    """Feed ``chunks`` (then EOF, as a separate read) and drain events after each.

    This is how the connection uses the parser: each ``receive_data`` is
    followed by ``next_event`` calls until NEED_DATA, PAUSED (answered at once
    with ``start_next_cycle``), CLOSED or an error. The event order is
    checked as it goes; after an error, every further call must raise the
    same error object.
    """
    parser = RequestParser(config)
    run = Run()
    fed = 0
    current: Request | None = None
    in_message = False  # between a Request and its END_OF_MESSAGE
    done = False  # between END_OF_MESSAGE and start_next_cycle
    feeds = [*chunks, b""] if eof else list(chunks)
    for index, chunk in enumerate(feeds):
        is_eof = eof and index == len(feeds) - 1
        parser.receive_data(chunk)
        fed += len(chunk)
        if run.error is not None:
            _check_still_broken(parser, run)
            continue
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                run.error = exc
                run.error_at = fed
                run.error_after_eof = is_eof
                _check_still_broken(parser, run)
                break
            run.events.append(event)
            if isinstance(event, Request):
                if in_message or done:
                    raise SequenceError(f"a Request before the previous message ended: {run.events}")
                in_message = True
                current = event
                run.heads.append(snapshot(event))
            elif event is Event.END_OF_MESSAGE:
                if not in_message:
                    raise SequenceError(f"END_OF_MESSAGE without a Request: {run.events}")
                in_message, done = False, True
                assert current is not None
                run.messages.append(snapshot(current))
            elif event is Event.PAUSED:
                if not done:
                    raise SequenceError(f"PAUSED outside a finished message: {run.events}")
                # PAUSED holds until the next cycle starts.
                again = parser.next_event()
                if again is not Event.PAUSED:
                    raise SequenceError(f"PAUSED, then {again!r} without start_next_cycle")
                parser.start_next_cycle()
                done = False
            elif event is Event.NEED_DATA:
                if done:
                    raise SequenceError("NEED_DATA after END_OF_MESSAGE instead of PAUSED")
                run.need_data.append((fed, len(run.heads), len(run.messages)))
                break
            elif event is Event.CLOSED:
                if in_message or done:
                    raise SequenceError(f"CLOSED inside a message: {run.events}")
                run.closed = True
                break
            else:
                raise SequenceError(f"next_event() returned {event!r}")
    run.buffered = parser.buffered
    return run


def _check_still_broken(parser: RequestParser, run: Run) -> None:
    for _ in range(2):
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            if exc is not run.error:
                run.after_error.append(f"raised another error {exc!r}")
        except Exception as exc:  # the test reports it
            run.after_error.append(f"raised {exc!r}")
        else:
            run.after_error.append(f"returned {event!r}")


def prefix_progress(config: Config, raw: bytes) -> list[tuple[int, int, int | None]]:
    """For each n: (heads, messages, error status) when ``raw[:n]`` arrives in one read."""
    table = []
    for n in range(len(raw) + 1):
        run = drive(config, [raw[:n]] if n else [])
        table.append((len(run.heads), len(run.messages), None if run.error is None else run.error.status))
    return table
