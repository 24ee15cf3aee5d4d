"""reactor's parser against h11's, on the same generated requests.

hypothesis builds requests (methods, targets, versions, header lines with
edge cases such as obs-text, OWS, empty values, control characters, obs-fold
and bare LF; Content-Length and chunked bodies with extensions and trailers;
pipelined pairs) and feeds the bytes, then EOF, to reactor's
``RequestParser`` and to ``h11.Connection(h11.SERVER)``.

- Where both accept a request, they must agree on the method, the target,
  the version, the header fields (names lower-cased, values without their
  OWS) and the body and trailers. Two fields are left out of the comparison:
  h11 rewrites ``Content-Length`` (``5, 5`` becomes ``5``, a repeated one is
  dropped) and lower-cases ``Transfer-Encoding``; what they frame is compared
  through the body.
- Where one accepts and the other refuses, the request must show one of the
  documented strictness choices in ``CHOICES``, with the right side being the
  strict one. Anything else fails the test. ``docs/fuzzing.md`` lists the
  same choices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reactor.config import Config
from tests.unit.parser_support import drive

CONFIG = Config()
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
CTL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9112 §7.1.1: chunk-size [ chunk-ext ], with chunk-ext-val = token / quoted-string.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
CHUNK_LINE_RE = re.compile(
    rb"[0-9A-Fa-f]{1,16}(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*"
)
# A chunk-size followed by BWS and a ';' (which h11's chunk-size line does not allow).
CHUNK_EXT_BWS_RE = re.compile(rb"[0-9A-Fa-f]+[ \t]+;")
HOST_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")


# -- one generated request ----------------------------------------------------------------


@dataclass
class Generated:
    """A request as lines, so that the choices below can look at its parts."""

    leading: bytes
    method: bytes
    target: bytes
    version: bytes
    lines: list[bytes]  # field lines, without their line ending
    body: bytes  # everything after the head
    eol: bytes = b"\r\n"
    chunk_lines: list[bytes] = field(default_factory=list)  # size lines, if chunked
    trailer_lines: list[bytes] = field(default_factory=list)

    def raw(self) -> bytes:
        eol = self.eol
        head = self.leading + self.method + b" " + self.target + b" " + self.version + eol
        return head + b"".join(line + eol for line in self.lines) + eol + self.body

    def fields(self) -> list[tuple[bytes, bytes]]:
        """(lower-case name, value without OWS) of each line that has a colon."""
        out = []
        for line in self.lines:
            name, colon, value = line.partition(b":")
            if colon:
                out.append((name.lower(), value.strip(b" \t")))
        return out

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.fields() if key == name]

    def list_elements(self, name: bytes) -> list[bytes]:
        return [e.strip(b" \t").lower() for value in self.values(name) for e in value.split(b",")]


# -- the documented choices -----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    id: str
    strict: str  # "reactor" or "h11": the side that refuses
    applies: Callable[[Generated], bool]
    reason: str
    rfc: str


def _field_lines(request: Generated) -> list[bytes]:
    return request.lines + request.trailer_lines


def _values(request: Generated) -> list[bytes]:
    return [line.partition(b":")[2] for line in _field_lines(request) if b":" in line]


def _chunked(request: Generated) -> bool:
    return bool(request.values(b"transfer-encoding"))


CHOICES = [
    Choice(
        "bare-lf",
        "reactor",
        lambda r: r.eol == b"\n" or any(b"\n" in line for line in [*r.lines, *r.chunk_lines]),
        "a bare LF ends no line in reactor: a proxy that reads it otherwise would frame another request",
        "RFC 9112 §2.2 (a recipient MAY accept a bare LF)",
    ),
    Choice(
        "obs-fold",
        "reactor",
        lambda r: any(line[:1] in (b" ", b"\t") for line in _field_lines(r)),
        "obs-fold is refused with 400 rather than unfolded",
        "RFC 9112 §5.2 (a server MUST either reject obs-fold with 400 or replace it with SP)",
    ),
    Choice(
        "control-in-value",
        "reactor",
        lambda r: any(CTL_RE.search(value) for value in _values(r)),
        "a field value with a control character other than HTAB is refused",
        "RFC 9110 §5.5 (field-vchar excludes CTLs; a recipient MAY reject them)",
    ),
    Choice(
        "target-form",
        "reactor",
        lambda r: (
            not (
                (r.target.startswith(b"/") and b"#" not in r.target)
                or (r.target == b"*" and r.method == b"OPTIONS")
                or (
                    re.match(rb"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*", r.target) is not None
                    and b"#" not in r.target
                )
            )
        ),
        "a target that is none of origin-, absolute- or asterisk-form (for OPTIONS), or has a fragment",
        "RFC 9112 §3.2, §3.2.4 (asterisk-form is only for OPTIONS); RFC 9110 §7.1 (no fragment)",
    ),
    Choice(
        "version-not-1x",
        "reactor",
        lambda r: r.version not in (b"HTTP/1.1", b"HTTP/1.0"),
        "a version other than 1.0 and 1.1 is answered 505",
        "RFC 9110 §15.6.6 (505 for a major version the server does not support)",
    ),
    Choice(
        "invalid-host",
        "reactor",
        lambda r: any(HOST_RE.fullmatch(value) is None for value in r.values(b"host")),
        'a Host that is not uri-host [ ":" port ] is refused',
        "RFC 9112 §3.2 (400 for a Host with an invalid field value)",
    ),
    Choice(
        "unknown-expectation",
        "reactor",
        lambda r: any(value.lower() != b"100-continue" for value in r.values(b"expect")),
        "an expectation other than 100-continue is answered 417",
        "RFC 9110 §10.1.1 (a server MAY answer 417 to an expectation it does not support)",
    ),
    Choice(
        "te-in-http10",
        "reactor",
        lambda r: r.version == b"HTTP/1.0" and _chunked(r),
        "Transfer-Encoding in an HTTP/1.0 request is refused",
        "RFC 9112 §6.1 (a server MUST treat it as faulty framing)",
    ),
    Choice(
        "te-and-cl",
        "reactor",
        lambda r: _chunked(r) and bool(r.values(b"content-length")),
        "Transfer-Encoding with Content-Length is refused (h11 lets chunked win)",
        "RFC 9112 §6.3 (a server MAY reject it; it ought to be handled as an error)",
    ),
    Choice(
        "chunk-line-grammar",
        "reactor",
        lambda r: any(CHUNK_LINE_RE.fullmatch(line) is None for line in r.chunk_lines),
        "a chunk-size line must follow the chunk-ext grammar (h11 takes anything after ';' and "
        "trailing OWS), and has at most 16 hex digits",
        'RFC 9112 §7.1.1 (chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ))',
    ),
    Choice(
        "chunk-ext-bws",
        "h11",
        lambda r: (
            all(CHUNK_LINE_RE.fullmatch(line) for line in r.chunk_lines)
            and any(CHUNK_EXT_BWS_RE.match(line) for line in r.chunk_lines)
        ),
        "reactor takes whitespace (BWS) between the chunk size and a ';'; "
        "h11 wants the ';' right after the size",
        'RFC 9112 §7.1.1 (chunk-ext = *( BWS ";" BWS chunk-ext-name ... ))',
    ),
    Choice(
        "leading-empty-line",
        "h11",
        lambda r: r.leading != b"",
        "reactor skips empty lines before a request-line; h11 refuses them before the first request",
        "RFC 9112 §2.2 (a server SHOULD ignore at least one empty line before the request-line)",
    ),
    Choice(
        "te-list-elements",
        "h11",
        lambda r: (
            _chunked(r)
            and (
                [e for e in r.list_elements(b"transfer-encoding") if e] == [b"chunked"]
                and [v.lower() for v in r.values(b"transfer-encoding")] != [b"chunked"]
            )
        ),
        "reactor reads Transfer-Encoding as a list (several fields, empty elements); h11 wants one "
        "field that is exactly 'chunked'",
        "RFC 9110 §5.3 (fields combine into a list) and §5.6.1 (empty elements are allowed)",
    ),
]


#: One request for each choice, on which the two parsers really differ that way.
H = [b"Host: a"]
EXAMPLES = {
    "bare-lf": Generated(b"", b"GET", b"/", b"HTTP/1.1", H, b"", eol=b"\n"),
    "obs-fold": Generated(b"", b"GET", b"/", b"HTTP/1.1", [*H, b"X: a", b" b"], b""),
    "control-in-value": Generated(b"", b"GET", b"/", b"HTTP/1.1", [*H, b"X: a\x01"], b""),
    "target-form": Generated(b"", b"GET", b"*", b"HTTP/1.1", H, b""),
    "version-not-1x": Generated(b"", b"GET", b"/", b"HTTP/1.2", H, b""),
    "invalid-host": Generated(b"", b"GET", b"/", b"HTTP/1.1", [b"Host: a:b"], b""),
    "unknown-expectation": Generated(b"", b"GET", b"/", b"HTTP/1.1", [*H, b"Expect: x-custom"], b""),
    "te-in-http10": Generated(
        b"", b"POST", b"/", b"HTTP/1.0", [b"Transfer-Encoding: chunked"], b"0\r\n\r\n", chunk_lines=[b"0"]
    ),
    "te-and-cl": Generated(
        b"",
        b"POST",
        b"/",
        b"HTTP/1.1",
        [*H, b"Content-Length: 5", b"Transfer-Encoding: chunked"],
        b"0\r\n\r\n",
        chunk_lines=[b"0"],
    ),
    "chunk-line-grammar": Generated(
        b"",
        b"POST",
        b"/",
        b"HTTP/1.1",
        [*H, b"Transfer-Encoding: chunked"],
        b"5;\r\nhello\r\n0\r\n\r\n",
        chunk_lines=[b"5;", b"0"],
    ),
    "leading-empty-line": Generated(b"\r\n", b"GET", b"/", b"HTTP/1.1", H, b""),
    "chunk-ext-bws": Generated(
        b"",
        b"POST",
        b"/",
        b"HTTP/1.1",
        [*H, b"Transfer-Encoding: chunked"],
        b"1 ;a=b\r\nx\r\n0\r\n\r\n",
        chunk_lines=[b"1 ;a=b", b"0"],
    ),
    "te-list-elements": Generated(
        b"",
        b"POST",
        b"/",
        b"HTTP/1.1",
        [*H, b"Transfer-Encoding: , chunked"],
        b"0\r\n\r\n",
        chunk_lines=[b"0"],
    ),
}


# -- generating -----------------------------------------------------------------------------

token = st.text(TCHAR, min_size=1, max_size=8).map(str.encode)
visible = st.binary(min_size=1, max_size=6).map(lambda b: bytes(0x21 + x % 94 for x in b))


@st.composite
def values(draw: st.DrawFn) -> bytes:
    """A field value with its OWS: mostly ordinary, sometimes an edge case."""
    kind = draw(st.sampled_from(["plain"] * 10 + ["empty", "spaces", "spaces", "obs-text", "ctl", "odd"]))
    if kind == "plain":
        words = draw(st.lists(visible, min_size=1, max_size=3))
        value = b" ".join(words)
    elif kind == "empty":
        value = b""
    elif kind == "spaces":
        value = draw(visible) + draw(st.sampled_from([b" ", b"\t", b"  \t "])) + draw(visible)
    elif kind == "obs-text":
        value = draw(visible) + draw(st.binary(min_size=1, max_size=3)).translate(bytes(range(128, 256)) * 2)
    elif kind == "ctl":
        value = draw(visible) + draw(st.sampled_from([b"\x01", b"\x7f", b"\x1f", b"\x00", b"\x0b", b"\x0c"]))
    else:
        value = draw(st.sampled_from([b"\xff", b"\x80abc", b'"quoted"', b"a,b,,c", b"=", b"\\"]))
    before = draw(st.sampled_from([b" ", b" ", b"", b"\t", b"   "]))
    after = draw(st.sampled_from([b"", b"", b" ", b"\t ", b"  "]))
    return before + value + after


@st.composite
def field_lines(draw: st.DrawFn) -> list[bytes]:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(
            st.one_of(token, st.sampled_from([b"X-Custom", b"Accept", b"Cache-Control", b"Connection"]))
        )
        shape = draw(st.sampled_from(["ok"] * 24 + ["space-before-colon", "fold", "bad-name", "no-colon"]))
        value = draw(values())
        if shape == "ok":
            lines.append(name + b":" + value)
        elif shape == "space-before-colon":
            lines.append(name + b" :" + value)
        elif shape == "fold":
            lines.append(name + b":" + value)
            lines.append(draw(st.sampled_from([b" ", b"\t"])) + draw(visible))
        elif shape == "bad-name":
            lines.append(name + draw(st.sampled_from([b"(", b"@", b"\x80", b"/"])) + b":" + value)
        else:
            lines.append(name + value)
    return lines


@st.composite
def chunked_body(draw: st.DrawFn) -> tuple[bytes, list[bytes], list[bytes]]:
    """The bytes of a chunked body, its chunk-size lines and its trailer lines."""
    body = b""
    size_lines = []
    for data in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3)):
        digits = draw(st.sampled_from(["%x", "%X", "%04x", "%020x"])) % len(data)
        ext = draw(
            st.sampled_from(
                [b""] * 12
                + [b";a=b", b';a="q \\" x"', b" ; a = b", b";a", b";", b';a="open', b" ", b";a=\xff"]
            )
        )
        size_lines.append(digits.encode() + ext)
        body += size_lines[-1] + b"\r\n" + data + b"\r\n"
    last = b"0" + draw(st.sampled_from([b"", b"", b";end=1", b"00", b" "]))
    size_lines.append(last)
    trailers = draw(st.sampled_from([[], [], [b"T: v"], [b"T:\t v ", b"U: w"], [b"T : v"], [b" folded"]]))
    body += last + b"\r\n" + b"".join(line + b"\r\n" for line in trailers) + b"\r\n"
    return body, size_lines, trailers


@st.composite
def requests(draw: st.DrawFn) -> Generated:
    method = draw(
        st.sampled_from([b"GET", b"GET", b"POST", b"PUT", b"OPTIONS", b"HEAD", b"get", b"M-SEARCH"])
    )
    target = draw(
        st.one_of(
            st.sampled_from([b"/", b"/a/b?x=1&y", b"/%2e%2e/x", b"//x", b"/p;q", b"http://example.com/p?q"]),
            visible.map(lambda v: b"/" + v),
            visible.map(lambda v: b"/" + v),
            st.sampled_from(
                [b"/a#frag", b"*", b"/caf\xc3\xa9", b"example.com:80", b"http://h", b"/\x7f", b"a"]
            ),
        )
    )
    version = draw(
        st.sampled_from([b"HTTP/1.1"] * 14 + [b"HTTP/1.0"] * 3 + [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"])
    )
    lines = draw(field_lines())
    host = draw(
        st.sampled_from([[b"Host: example.com"]] * 12 + [[], [b"Host: a:b"], [b"Host: [::1]:80"], [b"Host:"]])
    )
    extra = draw(
        st.sampled_from(
            [[]] * 10
            + [
                [b"Expect: 100-continue"],
                [b"Expect: x-custom"],
                [b"Connection: close"],
                [b"Connection: keep-alive"],
            ]
        )
    )
    lines = [*host, *lines, *extra]
    framing = draw(st.sampled_from(["none"] * 3 + ["length"] * 3 + ["chunked"] * 3 + ["both"]))
    body = b""
    chunk_lines: list[bytes] = []
    trailer_lines: list[bytes] = []
    if framing in ("length", "both"):
        data = draw(st.binary(max_size=20))
        n = len(data)
        lines.append(
            draw(st.sampled_from([b"Content-Length: %d" % n] * 4 + [b"Content-Length: %d, %d" % (n, n)]))
        )
        if draw(st.integers(0, 5)) == 0:
            lines.append(b"Content-Length: %d" % n)
        body = data
    if framing in ("chunked", "both"):
        coding = draw(
            st.sampled_from(
                [[b"Transfer-Encoding: chunked"]] * 10
                + [[b"Transfer-Encoding: Chunked"], [b"Transfer-Encoding: , chunked"]]
                + [[b"Transfer-Encoding: gzip, chunked"], [b"Transfer-Encoding: identity"]]
                + [
                    [b"Transfer-Encoding: chunked, chunked"],
                    [b"Transfer-Encoding:", b"Transfer-Encoding: chunked"],
                ]
            )
        )
        lines.extend(coding)
        body, chunk_lines, trailer_lines = draw(chunked_body())
    eol = draw(st.sampled_from([b"\r\n"] * 20 + [b"\n"]))
    leading = draw(st.sampled_from([b""] * 12 + [b"\r\n"]))
    return Generated(leading, method, target, version, lines, body, eol, chunk_lines, trailer_lines)


# -- running both parsers -------------------------------------------------------------------


@dataclass
class Parsed:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]]


REWRITTEN_BY_H11 = frozenset((b"content-length", b"transfer-encoding"))


def _compared(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name not in REWRITTEN_BY_H11]


def with_reactor(raw: bytes) -> list[Parsed]:
    run = drive(CONFIG, [raw], eof=True)
    out = []
    for message in run.messages:
        out.append(
            Parsed(
                message["method"].encode("latin-1"),
                message["target"].encode("latin-1"),
                message["version"].removeprefix("HTTP/").encode(),
                _compared([(n.encode("latin-1"), v.encode("latin-1")) for n, v in message["headers"]]),
                message["body"].encode("latin-1"),
                [(n.encode("latin-1"), v.encode("latin-1")) for n, v in message["trailers"] or []],
            )
        )
    return out


def with_h11(raw: bytes) -> list[Parsed]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    conn.receive_data(b"")
    out: list[Parsed] = []
    current: Parsed | None = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return out
        if isinstance(event, h11.Request):
            headers = [(bytes(n), bytes(v)) for n, v in event.headers]
            current = Parsed(event.method, event.target, event.http_version, _compared(headers), b"", [])
        elif isinstance(event, h11.Data):
            assert current is not None
            current.body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert current is not None
            current.trailers = [(bytes(n), bytes(v)) for n, v in event.headers]
            out.append(current)
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return out  # the connection must close after this request
            conn.start_next_cycle()
        else:
            return out  # NEED_DATA (cut short) or ConnectionClosed


def keeps_alive(parsed: Parsed) -> bool:
    """Whether h11 would read another request after this one."""
    if parsed.version != b"1.1":
        return False
    tokens = [t.strip(b" \t").lower() for n, v in parsed.headers if n == b"connection" for t in v.split(b",")]
    return b"close" not in tokens


def explain(request: Generated, strict: str) -> list[str]:
    return [choice.id for choice in CHOICES if choice.strict == strict and choice.applies(request)]


def compare(batch: list[Generated]) -> None:
    raw = b"".join(request.raw() for request in batch)
    ours, theirs = with_reactor(raw), with_h11(raw)
    for index, request in enumerate(batch):
        mine = ours[index] if index < len(ours) else None
        other = theirs[index] if index < len(theirs) else None
        if mine is not None and other is not None:
            assert mine == other, f"both accept {request.raw()!r} but differ:\n{mine}\n{other}"
            event("both accept")
            if not keeps_alive(other):
                return
            continue
        if mine is None and other is None:
            event("both refuse")
            return  # nothing after it is read
        strict = "reactor" if mine is None else "h11"
        reasons = explain(request, strict)
        for reason in reasons:
            event(f"{strict} refuses: {reason}")
        assert reasons, (
            f"only {'h11' if strict == 'reactor' else 'reactor'} accepts {request.raw()!r}, "
            f"and no documented choice explains it"
        )
        return


DIFFERENTIAL = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@DIFFERENTIAL
@given(st.lists(requests(), min_size=1, max_size=2))
def test_reactor_and_h11_agree_or_differ_by_a_documented_choice(batch: list[Generated]) -> None:
    compare(batch)


@pytest.mark.parametrize("choice", CHOICES, ids=[choice.id for choice in CHOICES])
def test_each_choice_is_a_real_disagreement(choice: Choice) -> None:
    """Every listed choice is needed: on its example only the strict side refuses."""
    request = EXAMPLES[choice.id]
    ours, theirs = with_reactor(request.raw()), with_h11(request.raw())
    accepted = {"reactor": bool(ours), "h11": bool(theirs)}
    assert accepted == {side: side != choice.strict for side in accepted}, accepted
    assert choice.id in explain(request, choice.strict)


def test_each_choice_is_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "fuzzing.md").read_text(encoding="utf-8")
    missing = [choice.id for choice in CHOICES if f"`{choice.id}`" not in text]
    assert not missing, f"docs/fuzzing.md does not list {missing}"
