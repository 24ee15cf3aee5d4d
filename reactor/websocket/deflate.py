"""permessage-deflate (RFC 7692): its negotiation and the compression of messages.

:func:`negotiate` reads the client's ``Sec-WebSocket-Extensions`` offers and
accepts the first acceptable ``permessage-deflate`` one: it answers the
response header's value and a :class:`Deflate`, the state one connection
keeps. An offer that is malformed (a bad character, an unknown or repeated
parameter, a window size outside 8-15 or with a leading zero) is skipped, as
RFC 7692 §5 lets a server decline an offer it cannot accept; if none is
left, the connection goes on without compression.

Parameters (RFC 7692 §7.1):

- ``server_no_context_takeover`` offered: accepted, and the server then
  compresses each message with a fresh compressor (it may also choose this on
  its own, to drop the compressor's memory between messages);
- ``client_no_context_takeover`` offered: accepted, and the server then drops
  its decompressor after each message, since the client promised not to
  refer back to earlier ones;
- ``server_max_window_bits=N``: the server's window is at most N. zlib cannot
  make raw deflate streams with an 8-bit window (``compressobj(wbits=-8)``
  is refused), so for 8 it compresses with 9, as other implementations do.
  That is safe: zlib never reaches further back than the window less 262
  bytes (``MAX_DIST``), 250 bytes for a 512-byte window, within the 256
  that a window of 8 bits allows (``tests/unit/websocket`` checks this by
  inflating with an 8-bit window);
- ``client_max_window_bits[=N]``: with a value, answered with the same
  value, and the decompressor's window is that size (smaller windows save
  memory); without one, left out, so the client keeps 15.

Decompression is bounded: the caller passes how many bytes the message may
still grow by, zlib is asked for one more than that, and getting it is a
:class:`~reactor.websocket.frames.WebSocketError` with 1009 (TOO_BIG): a
"decompression bomb" costs at most the limit, however well it compresses.
"""

from __future__ import annotations

import re
import zlib

from .frames import CloseCode, WebSocketError

__all__ = ["Deflate", "negotiate", "parse_extensions"]

EXTENSION = "permessage-deflate"
# RFC 7692 §7.2.1: the four bytes a sync flush ends with, removed on the wire.
_TAIL = b"\x00\x00\xff\xff"


class Deflate:
    """One connection's permessage-deflate state (the server's side)."""

    __slots__ = (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "level",
        "mem_level",
        "_compressor",
        "_decompressor",
    )

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        level: int = 6,
        mem_level: int = 8,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.level = level
        self.mem_level = mem_level
        # Made on first use, so that a connection that never sends or never
        # receives a compressed message owns no zlib state for it.
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return f"<Deflate {self.response_params()}>"

    def response_params(self, *, announce_server_bits: bool = True) -> str:
        """The parameters as the response header states them."""
        params = [EXTENSION]
        if self.server_no_context_takeover:
            params.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            params.append("client_no_context_takeover")
        if self.server_max_window_bits != 15 and announce_server_bits:
            params.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits != 15:
            params.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(params)

    # -- sending --------------------------------------------------------------------

    def compress(self, data: bytes) -> bytes:
        """One whole message's payload, compressed (RFC 7692 §7.2.1)."""
        compressor = self._compressor
        if compressor is None:
            # wbits 8 is refused by zlib for raw deflate; 9 is safe (module docs).
            wbits = -max(self.server_max_window_bits, 9)
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, wbits, self.mem_level)
            if not self.server_no_context_takeover:
                self._compressor = compressor
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        # A sync flush always ends with an empty stored block, 00 00 ff ff.
        out = out[:-4]
        # §7.2.3.6: an empty message is sent as one 0x00 byte.
        return out or b"\x00"

    # -- receiving ------------------------------------------------------------------

    def inflate(self, data: bytes, max_size: int) -> bytes:
        """Decompress a piece of a message; at most ``max_size`` bytes out, else TOO_BIG."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self.client_max_window_bits)
        elif decompressor.eof:
            # The client ended the deflate stream (BFINAL) and then sent more.
            raise WebSocketError(CloseCode.INVALID_DATA, "compressed data after the final block")
        try:
            out = decompressor.decompress(data, max_size + 1)
        except zlib.error:
            raise WebSocketError(CloseCode.INVALID_DATA, "invalid compressed data") from None
        if len(out) > max_size:
            raise WebSocketError(CloseCode.TOO_BIG, "message over the limit once decompressed")
        if decompressor.unused_data:
            raise WebSocketError(CloseCode.INVALID_DATA, "compressed data after the final block")
        return out

    def inflate_end(self, max_size: int) -> bytes:
        """End a message: decompress the removed tail (§7.2.2); the last bytes out."""
        decompressor = self._decompressor
        out = b""
        if decompressor is not None and not decompressor.eof:
            out = self.inflate(_TAIL, max_size)
        if self.client_no_context_takeover or (decompressor is not None and decompressor.eof):
            # The next message starts from an empty window: a fresh decompressor.
            self._decompressor = None
        return out

    def decompress(self, payload: bytes, max_size: int) -> bytes:
        """One whole message's payload, decompressed; TOO_BIG past ``max_size`` bytes."""
        out = self.inflate(payload, max_size)
        return out + self.inflate_end(max_size - len(out))


# -- negotiation ----------------------------------------------------------------------

# token = 1*tchar (RFC 9110 §5.6.2): one character class, repeated, so linear.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# quoted-string: each character matches one alternative only (a backslash
# starts the escape, anything else but a quote is itself), so linear.
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)  # one character after each backslash: linear
# RFC 7692 §7.1.2.1: 8 to 15, no leading zero. A fixed alternation: linear.
_BITS_RE = re.compile(r"[89]|1[0-5]")

Params = list[tuple[str, str | None]]


def parse_extensions(value: str) -> list[tuple[str, Params] | None]:
    """The elements of a ``Sec-WebSocket-Extensions`` value, in order; None for a malformed one.

    extension-list = 1#extension; extension = name *( ";" param );
    param = token [ "=" ( token / quoted-string ) ] (RFC 6455 §9.1).
    """
    elements: list[tuple[str, Params] | None] = []
    lexemes: list[str] = []
    bad = False
    i = 0
    n = len(value)
    while i <= n:
        c = value[i] if i < n else ","
        if c in " \t":
            i += 1
        elif c == ",":
            if bad:
                elements.append(None)
            elif lexemes:  # empty list elements are allowed (RFC 9110 §5.6.1)
                elements.append(_element(lexemes))
            lexemes = []
            bad = False
            i += 1
        elif c in ";=":
            lexemes.append(c)
            i += 1
        elif c == '"':
            match = _QUOTED_RE.match(value, i)
            if match is None:  # an unclosed quote runs to the end
                elements.append(None)
                return elements
            lexemes.append(match.group())
            i = match.end()
        else:
            match = _TOKEN_RE.match(value, i)
            if match is None:
                bad = True
                i += 1
            else:
                lexemes.append(match.group())
                i = match.end()
    return elements


def _element(lexemes: list[str]) -> tuple[str, Params] | None:
    name = lexemes[0]
    if not _is_token(name):
        return None
    params: Params = []
    i = 1
    while i < len(lexemes):
        if lexemes[i] != ";" or i + 1 >= len(lexemes) or not _is_token(lexemes[i + 1]):
            return None
        key = lexemes[i + 1].lower()
        i += 2
        param_value: str | None = None
        if i < len(lexemes) and lexemes[i] == "=":
            if i + 1 >= len(lexemes) or lexemes[i + 1] in (";", "="):
                return None
            raw = lexemes[i + 1]
            param_value = _ESCAPE_RE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
            i += 2
        params.append((key, param_value))
    return name.lower(), params


def _is_token(lexeme: str) -> bool:
    return lexeme not in (";", "=") and not lexeme.startswith('"')


def negotiate(
    offer: str | None,
    *,
    enabled: bool = True,
    server_no_context_takeover: bool = False,
    client_no_context_takeover: bool = False,
    server_max_window_bits: int = 15,
    level: int = 6,
    mem_level: int = 8,
) -> tuple[str, Deflate] | None:
    """Accept the first acceptable permessage-deflate offer: (response value, state), or None.

    ``offer`` is the request's ``Sec-WebSocket-Extensions`` value (its lines
    joined with commas), or None without one. The keyword arguments are the
    server's own preferences: no context takeover on either side even when
    the client did not ask for it, and a smaller window for its compressor.
    """
    if not enabled or not offer:
        return None
    for element in parse_extensions(offer):
        if element is None or element[0] != EXTENSION:
            continue
        deflate = _accept(element[1], server_no_context_takeover, client_no_context_takeover)
        if deflate is None:
            continue
        # §7.1.2.1: server_max_window_bits is answered only when offered; a
        # smaller window the server picks on its own needs no announcing,
        # since any decompressor reads what a smaller window made.
        offered_bits = deflate.server_max_window_bits != 15 or any(
            key == "server_max_window_bits" for key, _ in element[1]
        )
        deflate.server_max_window_bits = min(deflate.server_max_window_bits, server_max_window_bits)
        deflate.level = level
        deflate.mem_level = mem_level
        return deflate.response_params(announce_server_bits=offered_bits), deflate
    return None


def _accept(params: Params, server_nct: bool, client_nct: bool) -> Deflate | None:
    """The state for one offer's parameters, or None to decline it."""
    seen: set[str] = set()
    deflate = Deflate(server_no_context_takeover=server_nct, client_no_context_takeover=client_nct)
    for key, value in params:
        if key in seen:
            return None  # §7: each parameter at most once
        seen.add(key)
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
            setattr(deflate, key, True)
        elif key == "server_max_window_bits":
            if value is None or not _BITS_RE.fullmatch(value):
                return None
            deflate.server_max_window_bits = int(value)
        elif key == "client_max_window_bits":
            if value is not None:
                if not _BITS_RE.fullmatch(value):
                    return None
                deflate.client_max_window_bits = int(value)
        else:
            return None  # an unknown parameter: decline the offer
    return deflate
