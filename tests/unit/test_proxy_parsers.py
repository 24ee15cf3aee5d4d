"""reactor.proxy: the trust list, forwarding headers, and PROXY protocol headers."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

import pytest

from reactor.config import Config
from reactor.http.request import Headers, Request
from reactor.proxy import (
    MAX_HOPS,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    Trusted,
    forwarded,
    parse_forwarded,
    parse_node,
)

# -- the trust list ------------------------------------------------------------


def test_trusted_addresses_and_networks() -> None:
    trust = Trusted("127.0.0.1, 10.0.0.0/8,2001:db8::/32 , ::1")
    assert "127.0.0.1" in trust
    assert "::ffff:127.0.0.1" in trust  # a dual-stack socket's form
    assert "10.1.2.3" in trust
    assert "::ffff:10.1.2.3" in trust
    assert "2001:db8::5" in trust
    assert "::1" in trust
    assert "127.0.0.2" not in trust
    assert "11.0.0.1" not in trust
    assert "2001:db9::1" not in trust
    assert "unix" not in trust
    assert "not an address" not in trust


def test_trust_everyone_and_unix() -> None:
    assert "203.0.113.9" in Trusted("*")
    assert "unix" in Trusted("*")
    assert "unix" in Trusted("unix")
    assert not Trusted("")
    assert "127.0.0.1" not in Trusted("")


@pytest.mark.parametrize("spec", ["127.0.0.256", "10.0.0.0/33", "localhost", "1.2.3.4/x"])
def test_a_bad_trust_list_is_refused_at_start(spec: str) -> None:
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Config(forwarded_allow_ips=spec)


# -- nodes and Forwarded ---------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("192.0.2.60", ("192.0.2.60", 0)),
        ("192.0.2.60:4711", ("192.0.2.60", 4711)),
        ("[2001:db8:cafe::17]:4711", ("2001:db8:cafe::17", 4711)),
        ("[2001:db8:cafe::17]", ("2001:db8:cafe::17", 0)),
        ("2001:db8:cafe::17", ("2001:db8:cafe::17", 0)),
        ("unknown", ("unknown", 0)),
        ("_hidden:_port", ("_hidden", 0)),
        ("", None),
        ("1.2.3.4:99999", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[zz]:80", None),
        ("a b", None),
        ("1.2.3.4:\x1b", None),
    ],
)
def test_parse_node(node: str, expected: tuple[str, int] | None) -> None:
    assert parse_node(node) == expected


def test_parse_forwarded_elements() -> None:
    values = [
        'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"',
        'For=x;HOST="a;b"',
    ]
    assert parse_forwarded(values) == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
        {"for": "[2001:db8:cafe::17]:4711"},
        {"for": "x", "host": "a;b"},
    ]
    assert parse_forwarded(['for="a,b;c"']) == [{"for": "a,b;c"}]
    assert parse_forwarded([",, ,for=1.2.3.4,,"]) == [{"for": "1.2.3.4"}]


@pytest.mark.parametrize(
    "value",
    [
        "for",
        "for=",
        'for="unterminated',
        'for="a\\"b"',
        "for=a b",
        "for=a;for=b",
        "=x",
        "for=a;;=b",
        "for=[::1]",
    ],
)
def test_parse_forwarded_refuses_malformed(value: str) -> None:
    assert parse_forwarded([value]) is None


def _request(*fields: tuple[str, str]) -> Request:
    request = Request(
        "GET", "/", "/", "", "HTTP/1.1", Headers([(k.lower(), v) for k, v in [("Host", "in"), *fields]])
    )
    request.client = ("127.0.0.1", 5000)
    return request


LOCAL = Trusted("127.0.0.1, 10.0.0.0/8")


def test_x_forwarded_for_walks_from_the_right_past_trusted_proxies() -> None:
    # The client forged the first hop; 203.0.113.7 is what our proxy saw.
    request = _request(("X-Forwarded-For", "1.2.3.4, 203.0.113.7, 10.0.0.5"))
    forwarded(request, LOCAL)
    assert request.client == ("203.0.113.7", 0)
    # Several fields join as one list.
    request = _request(("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "203.0.113.8:1234"))
    forwarded(request, LOCAL)
    assert request.client == ("203.0.113.8", 1234)


def test_every_hop_trusted_gives_the_leftmost() -> None:
    request = _request(("X-Forwarded-For", "10.0.0.9, 10.0.0.5"))
    forwarded(request, LOCAL)
    assert request.client == ("10.0.0.9", 0)
    request = _request(("X-Forwarded-For", "1.2.3.4, 5.6.7.8"))
    forwarded(request, Trusted("*"))
    assert request.client == ("1.2.3.4", 0)


def test_x_forwarded_proto_and_host() -> None:
    request = _request(
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Forwarded-Proto", "HTTPS"),
        ("X-Forwarded-Host", "example.org:8443"),
    )
    forwarded(request, LOCAL)
    assert (request.client, request.scheme, request.host) == (
        ("198.51.100.1", 0),
        "https",
        "example.org:8443",
    )
    # The nearest proxy's value of a list; a scheme other than http(s) or a
    # host with a character no host has is not believed.
    request = _request(("X-Forwarded-Proto", "http, https"), ("X-Forwarded-Host", "a, b"))
    forwarded(request, LOCAL)
    assert (request.scheme, request.host) == ("https", "b")
    request = _request(("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Host", "a/b"))
    forwarded(request, LOCAL)
    assert (request.client, request.scheme, request.host) == (("127.0.0.1", 5000), "http", "in")


def test_a_malformed_hop_keeps_the_peer() -> None:
    request = _request(("X-Forwarded-For", "not-an-address!, 10.0.0.5"))
    forwarded(request, LOCAL)
    assert request.client == ("127.0.0.1", 5000)


def test_forwarded_header_wins_and_its_element_gives_proto_and_host() -> None:
    request = _request(
        ("Forwarded", 'for=1.2.3.4;proto=http, for="[2001:db8::7]:99";proto=https;host=shop.example'),
        ("Forwarded", "for=10.0.0.5;proto=http;host=inner"),
        ("X-Forwarded-For", "9.9.9.9"),
    )
    forwarded(request, LOCAL)
    assert (request.client, request.scheme, request.host) == (("2001:db8::7", 99), "https", "shop.example")


def test_a_malformed_forwarded_header_is_ignored() -> None:
    request = _request(("Forwarded", "for=1.2.3.4;proto=https;junk"), ("X-Forwarded-For", "9.9.9.9"))
    forwarded(request, LOCAL)
    assert (request.client, request.scheme) == (("127.0.0.1", 5000), "http")


def _best_of(repeat: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize(
    "make",
    [
        lambda n: ("Forwarded", "," * n),
        lambda n: ("Forwarded", "for=10.0.0.1;proto=http, " * (n // 25)),
        lambda n: ("Forwarded", 'for="' + "\\a" * (n // 2) + '"'),
        lambda n: ("X-Forwarded-For", "10.0.0.1, " * (n // 10)),
        lambda n: ("X-Forwarded-For", "," * n),
    ],
)
def test_parsing_is_linear(make: Callable[[int], tuple[str, str]]) -> None:
    """Kilobytes of commas are cheap: 8 times the input costs under 20 times the time."""
    small, large = _request(make(4096)), _request(make(32768))  # up to a whole --max-head
    trust = Trusted("10.0.0.0/8")

    def run(request: Request) -> Callable[[], None]:
        def work() -> None:
            for _ in range(3):
                forwarded(request, trust)

        return work

    ratio = _best_of(5, run(large)) / _best_of(5, run(small))
    assert ratio < 20, ratio


# -- the PROXY protocol -----------------------------------------------------------

V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _v2(command: int = 1, family: int = 0x11, block: bytes | None = None) -> bytes:
    if block is None:
        block = (
            socket.inet_aton("198.51.100.4") + socket.inet_aton("10.0.0.1") + struct.pack("!HH", 40000, 80)
        )
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def _feed(data: bytes, step: int | None = None) -> ProxyHeader:
    reader = ProxyHeaderReader()
    step = step or len(data)
    for start in range(0, len(data), step):
        header = reader.feed(data[start : start + step])
        if header is not None:
            return header
    raise AssertionError("header not complete")


@pytest.mark.parametrize("step", [None, 1, 7])
def test_v1(step: int | None) -> None:
    header = _feed(V1 + GET, step)
    assert (header.version, header.source) == (1, ("203.0.113.7", 56324))
    if step is None:
        assert header.rest == GET  # fed at once, the HTTP bytes that followed are kept


def test_v1_tcp6_and_unknown() -> None:
    assert _feed(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n").source == ("2001:db8::1", 1)
    header = _feed(b"PROXY UNKNOWN ff:: ff:: 1 2\r\n" + GET)
    assert (header.source, header.rest) == (None, GET)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXX TCP4",
        b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
        b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.\xff 1.2.3.4 1 2\r\n",
        b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",  # over 107 bytes
        b"PROXY " + b"x" * 200,  # no end in 107 bytes
    ],
)
def test_v1_malformed(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        _feed(data)


def test_v1_refused_at_the_first_wrong_byte() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PRO") is None
    with pytest.raises(ProxyProtocolError):
        reader.feed(b"Z")
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderReader().feed(b"G")


def test_v1_truncated_waits() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(V1[:-1]) is None
    header = reader.feed(b"\n" + GET[:5])
    assert header is not None and header.rest == GET[:5]


@pytest.mark.parametrize("step", [None, 1, 5])
def test_v2_ipv4(step: int | None) -> None:
    header = _feed(_v2() + GET, step)
    assert (header.version, header.source) == (2, ("198.51.100.4", 40000))
    if step is None:
        assert header.rest == GET


def test_v2_ipv6_tlvs_local_and_unspec() -> None:
    block = (
        socket.inet_pton(socket.AF_INET6, "2001:db8::9")
        + socket.inet_pton(socket.AF_INET6, "::1")
        + struct.pack("!HH", 1234, 80)
        + b"\x04\x00\x03abc"  # a TLV (NOOP), skipped
    )
    header = _feed(_v2(family=0x21, block=block) + GET)
    assert (header.source, header.rest) == (("2001:db8::9", 1234), GET)
    header = _feed(_v2(command=0, family=0x00, block=b"") + GET)  # LOCAL: a health check
    assert (header.source, header.rest) == (None, GET)
    header = _feed(_v2(command=0) + GET)  # LOCAL ignores the addresses
    assert header.source is None
    assert _feed(_v2(family=0x00, block=b"")).source is None
    assert _feed(_v2(family=0x31, block=bytes(216))).source == ("unix", 0)


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n\r\n\x00\r\nQUIX\n" + bytes(4),
        _v2()[:12] + b"\x11" + _v2()[13:],  # version 1 in a v2 header
        _v2(command=2),
        _v2(family=0x13),
        _v2(family=0x41),
        _v2(block=bytes(11)),
        _v2(family=0x21, block=bytes(35)),
        _v2(family=0x31, block=bytes(215)),
        _v2(block=bytes(5000)),  # over the reader's limit
    ],
)
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        _feed(data)


def test_v2_over_the_limit_is_refused_from_its_length_alone() -> None:
    reader = ProxyHeaderReader(max_bytes=200)
    with pytest.raises(ProxyProtocolError, match="over 200"):
        reader.feed(_v2(block=bytes(300))[:16])


def test_v2_truncated_waits() -> None:
    data = _v2()
    reader = ProxyHeaderReader()
    assert reader.feed(data[:15]) is None
    assert reader.feed(data[15:-1]) is None
    header = reader.feed(data[-1:])
    assert header is not None and header.source == ("198.51.100.4", 40000) and header.rest == b""


def test_long_hop_lists_are_bounded() -> None:
    # A Forwarded list longer than MAX_HOPS elements is ignored whole.
    assert parse_forwarded(["for=10.0.0.1, " * MAX_HOPS]) is not None
    assert parse_forwarded(["for=10.0.0.1, " * (MAX_HOPS + 1)]) is None
    # X-Forwarded-For: only the last hops are split off. An untrusted one
    # among them is the client; a longer run of trusted ones keeps the peer.
    request = _request(("X-Forwarded-For", "1.1.1.1, " * 5000 + "203.0.113.7, 10.0.0.5"))
    forwarded(request, LOCAL)
    assert request.client == ("203.0.113.7", 0)
    request = _request(("X-Forwarded-For", "1.1.1.1, " + "10.0.0.5, " * (MAX_HOPS + 5) + "10.0.0.6"))
    forwarded(request, LOCAL)
    assert request.client == ("127.0.0.1", 5000)
    request = _request(("X-Forwarded-For", "10.0.0.5, " * (MAX_HOPS - 1) + "10.0.0.6"))
    forwarded(request, LOCAL)
    assert request.client == ("10.0.0.5", 0)  # within the bound: the leftmost
