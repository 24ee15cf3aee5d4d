"""Behind a proxy: whom to believe, and what they say. Sans-IO.

A reverse proxy (nginx, HAProxy, a cloud load balancer) connects to reactor
itself, so the socket's peer is the proxy, not the client. The proxy says who
the client was in one of two ways:

* HTTP headers on each request: ``X-Forwarded-For``/``-Proto``/``-Host`` or
  RFC 7239 ``Forwarded``. :func:`forwarded` reads them.
* HAProxy's PROXY protocol: a header in front of the connection's first
  byte, v1 (one text line) or v2 (binary). :class:`ProxyHeaderReader` reads it.

Anyone can send those headers, so they are believed only from a peer in the
trust list (``Config.forwarded_allow_ips``, parsed once by :func:`trusted`).

Which ``X-Forwarded-For`` hop is the client: each proxy *appends* the address
it received the request from, and a client may put anything in front. So the
list is walked from the right, skipping the addresses of trusted proxies; the
first address that is not trusted is the client (uvicorn's rule). werkzeug's
ProxyFix counts a fixed number of hops instead; with a trust list, the walk
needs no count to be kept in step with the deployment. When every hop is
trusted, the leftmost one is the client.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .http.request import Request

__all__ = [
    "MAX_HOPS",
    "MAX_V1_BYTES",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "Trusted",
    "forwarded",
    "parse_forwarded",
    "parse_node",
    "trusted",
]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Trusted:
    """A set of addresses and networks whose forwarding headers are believed.

    ``everyone`` (from ``*``) trusts every peer, Unix-socket ones included;
    ``unix`` in the list trusts Unix-socket peers (whose host is ``"unix"``).
    """

    __slots__ = ("everyone", "hosts", "networks")

    def __init__(self, spec: str) -> None:
        self.everyone = False
        #: Single addresses, as the strings accept() reports: one set look-up.
        self.hosts: set[str] = set()
        self.networks: list[_Network] = []
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            if item == "*":
                self.everyone = True
            elif item == "unix":
                self.hosts.add("unix")
            elif "/" in item:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"forwarded_allow_ips: {item!r} is not an address or network") from None
            else:
                try:
                    address = ipaddress.ip_address(item)
                except ValueError:
                    raise ValueError(f"forwarded_allow_ips: {item!r} is not an address or network") from None
                self.hosts.add(str(address))
                if address.version == 4:
                    self.hosts.add(f"::ffff:{address}")  # as a dual-stack socket reports it

    def __contains__(self, host: object) -> bool:
        """Whether ``host`` (an address string, as accept() gives it) is trusted."""
        if self.everyone or host in self.hosts:
            return True
        if not self.networks or not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return self.everyone or bool(self.hosts) or bool(self.networks)


@lru_cache(maxsize=8)
def trusted(spec: str) -> Trusted:
    """The :class:`Trusted` for ``spec``, parsed once per distinct list."""
    return Trusted(spec)


# -- X-Forwarded-* and Forwarded ---------------------------------------------

# RFC 9110 token and quoted-string. Linear: the pair is token "=" (token or
# quoted-string); the quoted-string is Friedl's unrolled loop, a run of plain
# characters, then (a backslash pair and a run of plain characters) repeated:
# each repetition must begin with the backslash no run contains, so there is
# one way to match and no backtracking.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=({_TOKEN}|"[^"\\]*(?:\\.[^"\\]*)*")[ \t]*')
# An obfuscated node or port (RFC 7239 §6.3), or "unknown". Linear: one class.
_OBFUSCATED = re.compile(r"[A-Za-z0-9._-]+")
# A Host value (RFC 3986 reg-name or IP literal, and a port). Linear: one class.
_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+;=:\[\]-]+")


#: Hops (Forwarded elements, X-Forwarded-For addresses) looked at, at most:
#: a real chain of proxies is a few long; a longer list is ignored, so a
#: client cannot make a trusted proxy hand reactor thousands to walk.
MAX_HOPS = 32


def parse_forwarded(values: list[str]) -> list[dict[str, str]] | None:
    """The elements of ``Forwarded`` field values, left to right, each a dict
    of its parameters (names lower-cased, values unquoted); None if malformed
    or longer than :data:`MAX_HOPS` elements.

    One pass over the text: each step consumes a pair or a separator.
    """
    elements: list[dict[str, str]] = []
    for value in values:
        element: dict[str, str] = {}
        pos, end = 0, len(value)
        while pos < end:
            char = value[pos]
            if char in ", \t":
                if char == "," and element:
                    elements.append(element)
                    element = {}
                    if len(elements) > MAX_HOPS:
                        return None
                pos += 1
                continue
            match = _PAIR.match(value, pos)
            if match is None:
                return None
            name, text = match.group(1).lower(), match.group(2)
            if text.startswith('"'):
                text = text[1:-1]
                if "\\" in text:
                    # A quoted-pair is valid, but no address, host or scheme
                    # needs one: refused, rather than unescaped at a cost.
                    return None
            if name in element:
                return None  # RFC 7239 §4: each parameter at most once per element
            element[name] = text
            pos = match.end()
            if pos < end:
                if value[pos] == ";":
                    pos += 1
                elif value[pos] != ",":
                    return None
        if element:
            elements.append(element)
    return elements if len(elements) <= MAX_HOPS else None


def _obfuscated(host: str) -> bool:
    """RFC 7239 §6: ``unknown``, or an obfuscated identifier (``_`` first)."""
    return host == "unknown" or (host.startswith("_") and _OBFUSCATED.fullmatch(host) is not None)


def parse_node(node: str) -> tuple[str, int] | None:
    """``(host, port)`` of a node (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``::1``, ``unknown``, ``_hidden``); port 0 when none is given; None if malformed."""
    host, port = node, ""
    if node.startswith("["):
        close = node.find("]")
        if close < 0:
            return None
        host, rest = node[1:close], node[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    elif node.count(":") == 1:
        host, port = node.split(":")
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            if not _obfuscated(host):
                return None
    else:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if not _obfuscated(host):
                return None
    if not port:
        return host, 0
    if port.isdigit() and port.isascii() and len(port) <= 5 and int(port) <= 65535:
        return host, int(port)
    if port.startswith("_") and _OBFUSCATED.fullmatch(port) is not None:
        return host, 0  # an obfuscated port says nothing
    return None


def _pick(hops: list[str], trust: Trusted) -> tuple[int, tuple[str, int]] | None:
    """Walk ``hops`` from the right past trusted proxies: the index and address
    of the client, or None (a malformed hop, or no hop at all)."""
    for index in range(len(hops) - 1, -1, -1):
        node = parse_node(hops[index])
        if node is None:
            return None
        if index == 0 or node[0] not in trust:
            return index, node
    return None


def _scheme(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in ("http", "https") else None


def _host(value: str | None) -> str | None:
    value = (value or "").strip()
    # A host as the Host header may carry it; anything else is not believed.
    return value if _HOST.fullmatch(value) is not None else None


#: The fields :func:`forwarded` reads: a request with none of them needs no call.
FORWARDING_FIELDS = frozenset(("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"))


def forwarded(request: Request, trust: Trusted) -> None:
    """Apply what a trusted proxy says about ``request``: its ``client``,
    ``scheme`` and ``host``. Call it only when the peer is trusted.

    ``Forwarded`` wins over ``X-Forwarded-*`` when both are present. From the
    element (or hop) chosen as the client's, its proto and host; for
    ``X-Forwarded-Proto`` and ``-Host`` lists, the rightmost value (the
    nearest proxy's). Whatever is malformed is ignored.
    """
    headers = request.headers
    if not headers.has_any(FORWARDING_FIELDS):
        return  # most requests, even through a proxy we trust for them
    values = headers.get_all("forwarded")
    if values:
        elements = parse_forwarded(values)
        if not elements:
            return
        fors = [element.get("for", "") for element in elements]
        picked = _pick(fors, trust)
        if picked is None:
            return
        index, request.client = picked
        element = elements[index]
        scheme = _scheme(element.get("proto"))
        host = _host(element.get("host"))
    else:
        # Only the last MAX_HOPS + 1 pieces are split off: bounded work
        # whatever the client put in front.
        pieces = ",".join(headers.get_all("x-forwarded-for")).rsplit(",", MAX_HOPS)
        hops = [hop for hop in (piece.strip() for piece in pieces) if hop]
        if hops and len(pieces) <= MAX_HOPS:
            picked = _pick(hops, trust)
            if picked is not None:
                request.client = picked[1]
        elif hops:
            # Too long to walk whole: believed only if an untrusted hop comes
            # first from the right (never the leftmost of a cut list).
            picked = _pick(hops, trust)
            if picked is not None and picked[0] > 0:
                request.client = picked[1]
        protos = headers.get_all("x-forwarded-proto")
        scheme = _scheme(protos[-1].rpartition(",")[2]) if protos else None
        hosts = headers.get_all("x-forwarded-host")
        host = _host(hosts[-1].rpartition(",")[2]) if hosts else None
    if scheme is not None:
        request.scheme = scheme
    if host is not None:
        request.host = host


# -- the PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)

#: A v1 line is at most 107 bytes, CRLF included (the spec's §2.1).
MAX_V1_BYTES = 107
_V1_PREFIX = b"PROXY "
_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_HEADER_BYTES = 16


class ProxyProtocolError(ValueError):
    """A PROXY header that is malformed, truncated or too long."""


class ProxyHeader:
    """What a PROXY header said: the client's ``(host, port)``, or None to
    keep the socket's own peer (v1 ``UNKNOWN``, v2 ``LOCAL`` or ``UNSPEC``),
    and the bytes that followed it (the start of the HTTP stream)."""

    __slots__ = ("version", "source", "rest")

    def __init__(self, version: int, source: tuple[str, int] | None, rest: bytes) -> None:
        self.version = version
        self.source = source
        self.rest = rest


class ProxyHeaderReader:
    """Reads a PROXY v1 or v2 header from bytes as they arrive.

    :meth:`feed` returns None until the header is complete, then a
    :class:`ProxyHeader`; it raises :class:`ProxyProtocolError` as soon as the
    bytes cannot begin a valid header. At most ``max_bytes`` are buffered
    (a v2 header's TLVs count toward it), so each byte is looked at a bounded
    number of times.
    """

    __slots__ = ("_buffer", "_max_bytes")

    def __init__(self, max_bytes: int = 4096) -> None:
        self._buffer = bytearray()
        self._max_bytes = max(max_bytes, MAX_V1_BYTES)

    def feed(self, data: bytes) -> ProxyHeader | None:
        buffer = self._buffer
        before = len(buffer)
        buffer += data
        if buffer[:1] == b"P":
            return self._v1(before)
        if buffer[:1] == b"\r":
            return self._v2()
        if buffer:
            raise ProxyProtocolError("not a PROXY header")
        return None

    def _v1(self, before: int) -> ProxyHeader | None:
        buffer = self._buffer
        prefix = min(len(buffer), len(_V1_PREFIX))
        if buffer[:prefix] != _V1_PREFIX[:prefix]:
            raise ProxyProtocolError("not a PROXY header")
        # Only the new bytes (and the one before, for a CR) are searched.
        end = buffer.find(b"\r\n", max(before - 1, 0), MAX_V1_BYTES)
        if end < 0:
            if len(buffer) >= MAX_V1_BYTES:
                raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
            return None
        line = bytes(buffer[len(_V1_PREFIX) : end])
        rest = bytes(buffer[end + 2 :])
        return ProxyHeader(1, _v1_source(line), rest)

    def _v2(self) -> ProxyHeader | None:
        buffer = self._buffer
        prefix = min(len(buffer), len(_V2_SIGNATURE))
        if buffer[:prefix] != _V2_SIGNATURE[:prefix]:
            raise ProxyProtocolError("not a PROXY header")
        if len(buffer) < _V2_HEADER_BYTES:
            return None
        version, command = buffer[12] >> 4, buffer[12] & 0x0F
        if version != 2 or command > 1:
            raise ProxyProtocolError(f"PROXY v2: bad version/command byte 0x{buffer[12]:02x}")
        family = buffer[13]
        length = int.from_bytes(buffer[14:16], "big")
        total = _V2_HEADER_BYTES + length
        if total > self._max_bytes:
            raise ProxyProtocolError(f"PROXY v2 header of {total} bytes, over {self._max_bytes}")
        if len(buffer) < total:
            return None
        block = bytes(buffer[_V2_HEADER_BYTES:total])
        rest = bytes(buffer[total:])
        if command == 0:  # LOCAL: the proxy's own connection (a health check)
            return ProxyHeader(2, None, rest)
        return ProxyHeader(2, _v2_source(family, block), rest)


def _port(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5) or (text[0] == "0" and text != "0"):
        raise ProxyProtocolError(f"PROXY v1: bad port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1: bad port {text!r}")
    return port


def _v1_source(line: bytes) -> tuple[str, int] | None:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1: not ASCII") from None
    parts = text.split(" ")
    if parts[0] == "UNKNOWN":
        return None  # the rest of the line is ignored (the spec's §2.1)
    if len(parts) != 5 or parts[0] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("PROXY v1: expected TCP4|TCP6 src dst sport dport")
    kind = ipaddress.IPv4Address if parts[0] == "TCP4" else ipaddress.IPv6Address
    try:
        source = kind(parts[1])
        kind(parts[2])
    except ValueError:
        raise ProxyProtocolError("PROXY v1: bad address") from None
    port = _port(parts[3])
    _port(parts[4])
    return str(source), port


def _v2_source(family: int, block: bytes) -> tuple[str, int] | None:
    address = family >> 4
    transport = family & 0x0F
    if address == 0:
        return None  # UNSPEC: keep the socket's peer
    if transport not in (1, 2) or address > 3:
        raise ProxyProtocolError(f"PROXY v2: bad family byte 0x{family:02x}")
    if address == 1:
        if len(block) < 12:
            raise ProxyProtocolError("PROXY v2: IPv4 address block too short")
        return str(ipaddress.IPv4Address(block[0:4])), int.from_bytes(block[8:10], "big")
    if address == 2:
        if len(block) < 36:
            raise ProxyProtocolError("PROXY v2: IPv6 address block too short")
        return str(ipaddress.IPv6Address(block[0:16])), int.from_bytes(block[32:34], "big")
    if len(block) < 216:
        raise ProxyProtocolError("PROXY v2: Unix address block too short")
    return "unix", 0
