"""The RESP2 codec of reactor.broker, with bytes alone: whole, byte by byte, over the limit."""

from __future__ import annotations

import time

import pytest

from reactor.broker import (
    MAX_DEPTH,
    Reply,
    RespError,
    RespParser,
    RespProtocolError,
    encode_command,
    parse_url,
)
from reactor.cli import parse_args

# (wire bytes, the reply they parse to)
CASES: list[tuple[bytes, Reply]] = [
    (b"+OK\r\n", "OK"),
    (b"+\r\n", ""),
    (b"-ERR unknown command 'FOO'\r\n", RespError("ERR unknown command 'FOO'")),
    (b":0\r\n", 0),
    (b":-42\r\n", -42),
    (b":9223372036854775807\r\n", 9223372036854775807),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # a bulk string is framed by its length, not by CRLF
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (
        b"*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$2\r\nhi\r\n",
        [b"message", b"chat", b"hi"],
    ),
    (
        b"*3\r\n:1\r\n*2\r\n+a\r\n*1\r\n$-1\r\n-E x\r\n",
        [1, ["a", [None]], RespError("E x")],
    ),
    (b"*2\r\n*0\r\n*1\r\n*0\r\n", [[], [[]]]),
]


def feed_bytewise(parser: RespParser, data: bytes) -> list[Reply]:
    replies = []
    for i in range(len(data)):
        replies.extend(parser.feed(data[i : i + 1]))
    return replies


@pytest.mark.parametrize(("wire", "reply"), CASES)
def test_each_reply_whole(wire: bytes, reply: Reply) -> None:
    assert RespParser().feed(wire) == [reply]


@pytest.mark.parametrize(("wire", "reply"), CASES)
def test_each_reply_byte_by_byte(wire: bytes, reply: Reply) -> None:
    parser = RespParser()
    # No reply until its last byte; then exactly one.
    assert feed_bytewise(parser, wire[:-1]) == []
    assert parser.feed(wire[-1:]) == [reply]


def test_pipelined_replies_in_one_feed_and_split_anywhere() -> None:
    stream = b"".join(wire for wire, _ in CASES)
    expected = [reply for _, reply in CASES]
    assert RespParser().feed(stream) == expected
    assert feed_bytewise(RespParser(), stream) == expected
    for cut in range(1, len(stream)):
        parser = RespParser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == expected, cut


def test_an_error_reply_is_a_value_not_an_exception() -> None:
    parser = RespParser()
    replies = parser.feed(b"-WRONGTYPE Operation against a key\r\n+OK\r\n")
    assert replies == [RespError("WRONGTYPE Operation against a key"), "OK"]
    assert isinstance(replies[0], RespError)
    assert replies[0].message.startswith("WRONGTYPE")


def test_encode_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert (
        encode_command("PUBLISH", b"chat", b"a\r\nb")
        == b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchat\r\n$4\r\na\r\nb\r\n"
    )
    assert encode_command("EXPIRE", "k", 10) == b"*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n10\r\n"
    assert encode_command("SET", "é", b"") == b"*3\r\n$3\r\nSET\r\n$2\r\n\xc3\xa9\r\n$0\r\n\r\n"


def test_what_we_encode_parses_back() -> None:
    wire = encode_command("SUBSCRIBE", b"a", b"b\r\n", b"")
    assert RespParser().feed(wire) == [[b"SUBSCRIBE", b"a", b"b\r\n", b""]]


# -- the limit: every byte of a reply counts ---------------------------------------


def test_a_reply_at_the_limit_passes_and_one_byte_more_fails() -> None:
    wire = b"$10\r\n" + b"x" * 10 + b"\r\n"  # 17 bytes
    assert RespParser(max_reply_bytes=17).feed(wire) == [b"x" * 10]
    with pytest.raises(RespProtocolError, match="over 16 bytes"):
        RespParser(max_reply_bytes=16).feed(wire)


def test_a_bulk_string_announced_over_the_limit_fails_before_its_bytes_arrive() -> None:
    parser = RespParser(max_reply_bytes=1000)
    with pytest.raises(RespProtocolError, match="over 1000 bytes"):
        parser.feed(b"$1000000000\r\n")


def test_an_array_announced_over_the_limit_fails_at_once() -> None:
    with pytest.raises(RespProtocolError, match="over 1000 bytes"):
        RespParser(max_reply_bytes=1000).feed(b"*400\r\n")


def test_a_line_without_its_end_fails_at_the_limit() -> None:
    parser = RespParser(max_reply_bytes=1000)
    parser.feed(b"+" + b"a" * 998)  # 999 bytes held: still within the limit
    with pytest.raises(RespProtocolError, match="over 1000 bytes"):
        parser.feed(b"aa")


def test_an_array_of_small_elements_counts_them_all() -> None:
    wire = b"*100\r\n" + b":1\r\n" * 100  # 406 bytes
    assert RespParser(max_reply_bytes=406).feed(wire) == [[1] * 100]
    parser = RespParser(max_reply_bytes=405)
    with pytest.raises(RespProtocolError):
        feed_bytewise(parser, wire)


def test_the_limit_is_per_reply_not_per_feed() -> None:
    one = b"$10\r\n" + b"x" * 10 + b"\r\n"
    parser = RespParser(max_reply_bytes=len(one))
    assert parser.feed(one * 50) == [b"x" * 10] * 50
    assert parser.feed(one * 3) == [b"x" * 10] * 3


def test_nesting_deeper_than_the_limit_fails() -> None:
    deep_enough = b"*1\r\n" * MAX_DEPTH + b":1\r\n"
    reply: Reply = 1
    for _ in range(MAX_DEPTH):
        reply = [reply]
    assert RespParser().feed(deep_enough) == [reply]
    with pytest.raises(RespProtocolError, match="nested"):
        RespParser().feed(b"*1\r\n" * (MAX_DEPTH + 1))


@pytest.mark.parametrize(
    "wire",
    [
        b"%2\r\n",  # a RESP3 map: we speak RESP2
        b"hello\r\n",  # an inline command is not a reply
        b":+1\r\n",
        b": 1\r\n",
        b":1_000\r\n",
        b":\r\n",
        b":12345678901234567890\r\n",  # beyond 64 bits
        b"$-2\r\n",
        b"*-3\r\n",
        b"$3\r\nabcd\r\n",  # the length lies
        b"$x\r\n",
    ],
)
def test_broken_replies_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(RespProtocolError):
        RespParser().feed(wire)


# -- linear time -----------------------------------------------------------------


def _best_time(make: bytes, chunk: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        parser = RespParser(max_reply_bytes=1 << 30)
        started = time.process_time()
        replies = []
        for i in range(0, len(make), chunk):
            replies.extend(parser.feed(make[i : i + chunk]))
        best = min(best, time.process_time() - started)
        assert len(replies) >= 1
    return best


@pytest.mark.parametrize(
    ("name", "build", "chunk"),
    [
        ("a bulk string fed byte by byte", lambda n: b"$%d\r\n%s\r\n" % (n, b"x" * n), 1),
        ("a long simple string fed byte by byte", lambda n: b"+" + b"y" * n + b"\r\n", 1),
        ("a long array in 7-byte pieces", lambda n: b"*%d\r\n" % (n // 4) + b":1\r\n" * (n // 4), 7),
        ("many small replies in 3-byte pieces", lambda n: b"+OK\r\n" * (n // 5), 3),
    ],
)
def test_parsing_time_grows_linearly(name: str, build: object, chunk: int) -> None:
    assert callable(build)
    n = 20_000
    small = _best_time(build(n), chunk)
    large = _best_time(build(8 * n), chunk)
    # Linear: about 8x. Quadratic would be 64x. 20x leaves room for a loaded machine.
    assert large < 20 * small, f"{name}: {n} bytes took {small:.4f}s, {8 * n} took {large:.4f}s"


# -- the URL -----------------------------------------------------------------------


def test_parse_url() -> None:
    assert parse_url("redis://127.0.0.1:6380") == ("127.0.0.1", 6380)
    assert parse_url("redis://cache.internal/") == ("cache.internal", 6379)
    assert parse_url("redis://[::1]:7000") == ("::1", 7000)
    for bad in ("http://x:1", "redis://:1", "redis://u:p@x:1", "redis://x:1/2", "redis://x:99999", "x:1"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_the_cli_takes_a_broker_url_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--broker", "redis://127.0.0.1:6380"]).config.broker == "redis://127.0.0.1:6380"
    assert parse_args([]).config.broker is None
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--broker", "http://127.0.0.1:6380"])
    assert exit_info.value.code == 2
    assert "argument --broker: 'http://127.0.0.1:6380' is not a redis:// URL" in capsys.readouterr().err
