"""The WebSocket framing of RFC 6455, sans-IO: client bytes in, events out; server frames out.

Theory of operation
-------------------
A :class:`Reader` is fed whatever ``recv()`` returned and answers with the
events those bytes completed: a whole :class:`Message` (``str`` for a text
message, ``bytes`` for a binary one, its fragments reassembled), a
:class:`Ping`, a :class:`Pong` or a :class:`Close`. The first violation of the
protocol raises a :class:`WebSocketError` whose ``code`` is the close code to
answer with (1002 for a framing error, 1007 for bad UTF-8 or bad compressed
data, 1009 for a message over the limit); the events completed before it in
the same call ride on the error as ``events``, so that what the client sent
correctly is still handled. After an error the reader is broken for good.
After a Close frame the reader ignores the rest: RFC 6455 §5.5.1 lets
nothing follow it.

The reader streams the payload of a data frame: each piece is unmasked as it
arrives and, for a text message, pushed through an incremental UTF-8 decoder,
so the first invalid byte fails the connection at once, before the frame or
the message ends. So the reader never holds more than one frame header or one
control frame (at most 2 + 4 + 125 bytes) between calls; the message being
assembled is bounded by ``max_message``, counted when each frame header
announces its length, before its payload is read.

The writer side is a set of functions that build server frames (never masked):
:func:`frame`, :func:`text`, :func:`binary`, :func:`ping`, :func:`pong`,
:func:`close_frame`, and :func:`encode_message`, which frames one message once
so that the same bytes can be queued to many sockets.
"""

from __future__ import annotations

import codecs
import enum
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deflate import Deflate

__all__ = [
    "Close",
    "CloseCode",
    "Event",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "Reader",
    "WebSocketError",
    "binary",
    "client_frame",
    "close_frame",
    "encode_message",
    "frame",
    "is_valid_close_code",
    "mask",
    "parse_close",
    "ping",
    "pong",
    "text",
]


class Opcode(enum.IntEnum):
    """RFC 6455 §5.2; 3-7 and 11-15 are reserved and refused."""

    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


class CloseCode(enum.IntEnum):
    """RFC 6455 §7.4.1 and the IANA registry (1012-1014 were registered later)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED = 1003
    NO_STATUS = 1005  # never on the wire: what a Close without a payload reports
    ABNORMAL = 1006  # never on the wire: the connection died without a Close
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    EXTENSION = 1010
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame (RFC 6455 §7.4).

    1000-1003 and 1007-1011 are the RFC's, 1012-1014 are registered with IANA,
    3000-3999 are for libraries and frameworks, 4000-4999 for applications.
    1004 is reserved, 1005, 1006 and 1015 are for local reporting only, and
    everything else is unassigned.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class WebSocketError(Exception):
    """The peer broke the protocol: close with ``code`` (and ``reason``) and read no more.

    ``events`` holds what the same ``feed`` call had decoded before the
    violation, to be handled before closing.
    """

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code = code
        self.reason = reason
        self.events: list[Event] = []


# -- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message: ``str`` for TEXT, ``bytes`` for BINARY."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's Close: ``code`` is 1005 (NO_STATUS) when its payload was empty."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close


# -- masking ------------------------------------------------------------------------


def mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``key`` repeated (masking and unmasking alike).

    Done on two big integers: one ``int.from_bytes`` over the payload, one over
    the key repeated to its length, one XOR, one ``to_bytes``; all in C and
    linear in the length, some 50 times faster than a loop over the bytes.
    """
    n = len(data)
    if n == 0:
        return b""
    keys = key * ((n + 3) >> 2)
    if len(keys) != n:
        keys = keys[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


# -- the reader ---------------------------------------------------------------------

_PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
_INVALID_DATA = CloseCode.INVALID_DATA
_TOO_BIG = CloseCode.TOO_BIG
_MAX_CONTROL = 125
# Plain ints for the hot path (comparing with an int is cheaper than with an enum member).
_CONTINUATION, _TEXT, _BINARY, _PING, _PONG = 0, 1, 2, 9, 10
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
# The parts of no message: shared, never appended to (a message's own list replaces it).
_NO_PARTS: list[Any] = []


class Reader:
    """Turns the bytes a client sends after the handshake into events. See the module docs.

    ``max_message`` bounds a message's payload, summed over its fragments
    (after decompression when it is compressed; its compressed bytes are
    bounded by it as well); ``max_frame`` bounds one frame's payload and
    defaults to ``max_message``. ``deflate`` is the permessage-deflate state
    the handshake negotiated, or None: without it any RSV bit is an error.
    """

    __slots__ = (
        "max_message",
        "max_frame",
        "deflate",
        "_buf",
        "_error",
        "_closed",
        # the data frame whose payload is being read
        "_left",
        "_fin",
        "_key",
        "_key_at",
        # the message being assembled (_opcode None: none)
        "_opcode",
        "_compressed",
        "_parts",
        "_size",
        "_wire",
        "_decoder",
    )

    def __init__(
        self, max_message: int = 1 << 20, max_frame: int | None = None, deflate: Deflate | None = None
    ) -> None:
        self.max_message = max_message
        self.max_frame = max_message if max_frame is None else max_frame
        self.deflate = deflate
        # Bytes of an incomplete frame header or control frame (at most 131);
        # the shared b"" when there are none, so most reads allocate no buffer.
        self._buf: bytes | bytearray = b""
        self._error: WebSocketError | None = None
        self._closed = False
        self._left = -1  # payload bytes still to come of the current data frame; -1: in no frame
        self._fin = False
        self._key = b""
        self._key_at = 0
        self._opcode: Opcode | None = None
        self._compressed = False
        # str pieces of a text message, bytes of a binary one: a list made when
        # a message spans reads (a whole one in one read needs none), dropped at its end.
        self._parts: list[Any] = _NO_PARTS
        self._size = 0  # payload bytes of the message so far (decompressed)
        self._wire = 0  # payload bytes on the wire of the message so far
        self._decoder: codecs.IncrementalDecoder | None = None

    @property
    def closed(self) -> bool:
        """Whether a Close frame was read (the reader ignores what follows it)."""
        return self._closed

    def feed(self, data: bytes | bytearray) -> list[Event]:
        """Read ``data``; the events it completed, in order. Raises WebSocketError."""
        if self._error is not None:
            raise self._error
        if self._closed:
            return []
        events: list[Event] = []
        buf = self._buf
        if buf:
            buf += data
            view = memoryview(buf)
        else:
            view = memoryview(data)
        try:
            pos = self._parse(view, events)
            # What is left is an incomplete header or control frame: small.
            rest = bytearray(view[pos:]) if pos < len(view) and not self._closed else b""
        except WebSocketError as exc:
            exc.events = events
            self._error = exc
            self._buf = b""
            raise
        finally:
            view.release()
        self._buf = rest
        return events

    # The loop: one frame header, control frame or piece of payload per turn.
    def _parse(self, view: memoryview, events: list[Event]) -> int:
        pos = 0
        end = len(view)
        while True:
            left = self._left
            if left >= 0:  # inside a data frame's payload
                take = min(left, end - pos)
                if take:
                    self._payload(view[pos : pos + take])
                    pos += take
                    left = self._left = left - take
                if left:
                    return pos
                self._left = -1
                if self._fin:
                    events.append(self._finish())
                continue
            if end - pos < 2:
                return pos
            b0 = view[pos]
            b1 = view[pos + 1]
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            self._check_head(b0, b1, opcode, length)
            head = 6 if length < 126 else 8 if length == 126 else 14
            if end - pos < head:
                return pos
            if length == 126:
                length = (view[pos + 2] << 8) | view[pos + 3]
                if length < 126:
                    raise WebSocketError(_PROTOCOL_ERROR, "length not minimally encoded")
            elif length == 127:
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise WebSocketError(_PROTOCOL_ERROR, "64-bit length with the high bit set")
                if length < 65536:
                    raise WebSocketError(_PROTOCOL_ERROR, "length not minimally encoded")
            key = view[pos + head - 4 : pos + head].tobytes()
            if opcode >= 8:
                if end - pos < head + length:
                    return pos
                payload = mask(view[pos + head : pos + head + length], key)
                pos += head + length
                event = self._control(opcode, payload)
                events.append(event)
                if self._closed:
                    return pos
                continue
            if b0 & 0xC0 == 0x80 and opcode and end - pos >= head + length:
                # The common case, taken whole: a message in one frame,
                # uncompressed, all of it here (so there is nothing to fail
                # fast on, and one decode of the payload suffices).
                if length > self.max_frame or length > self.max_message:
                    raise WebSocketError(_TOO_BIG, f"message of {length} bytes over the limit")
                payload = mask(view[pos + head : pos + head + length], key)
                pos += head + length
                if opcode == _TEXT:
                    try:
                        events.append(Message(payload.decode("utf-8")))
                    except UnicodeDecodeError:
                        raise WebSocketError(_INVALID_DATA, "text message is not valid UTF-8") from None
                else:
                    events.append(Message(payload))
                continue
            self._start_frame(b0, opcode, length)
            self._key = key
            self._key_at = 0
            self._left = length
            pos += head

    def _check_head(self, b0: int, b1: int, opcode: int, length: int) -> None:
        """The checks the first two bytes allow (made before the rest arrives)."""
        if opcode not in _KNOWN_OPCODES:
            raise WebSocketError(_PROTOCOL_ERROR, f"reserved opcode {opcode}")
        if not b1 & 0x80:
            raise WebSocketError(_PROTOCOL_ERROR, "client frame not masked")
        if b0 & 0x30:
            raise WebSocketError(_PROTOCOL_ERROR, "RSV2 or RSV3 set without an extension")
        if b0 & 0x40:
            if self.deflate is None:
                raise WebSocketError(_PROTOCOL_ERROR, "RSV1 set without an extension")
            if opcode != _TEXT and opcode != _BINARY:  # noqa: PLR1714 (ints, no tuple per frame)
                raise WebSocketError(_PROTOCOL_ERROR, "RSV1 set on a frame that does not start a message")
        if opcode >= 8:
            if not b0 & 0x80:
                raise WebSocketError(_PROTOCOL_ERROR, "fragmented control frame")
            if length > _MAX_CONTROL:
                raise WebSocketError(_PROTOCOL_ERROR, "control frame over 125 bytes")
        elif opcode == _CONTINUATION:
            if self._opcode is None:
                raise WebSocketError(_PROTOCOL_ERROR, "continuation without a message to continue")
        elif self._opcode is not None:
            raise WebSocketError(_PROTOCOL_ERROR, "new data frame inside a fragmented message")

    def _start_frame(self, b0: int, opcode: int, length: int) -> None:
        if length > self.max_frame:
            raise WebSocketError(_TOO_BIG, f"frame of {length} bytes over the limit of {self.max_frame}")
        if opcode != _CONTINUATION:
            self._opcode = Opcode(opcode)
            self._compressed = bool(b0 & 0x40)
            self._size = self._wire = 0
            self._parts = []
            self._decoder = _Utf8Decoder() if opcode == _TEXT else None
        self._wire += length
        if self._wire > self.max_message:
            raise WebSocketError(_TOO_BIG, f"message over the limit of {self.max_message} bytes")
        self._fin = bool(b0 & 0x80)

    def _payload(self, piece: memoryview) -> None:
        """One piece of a data frame's payload, as it arrived."""
        key = self._key
        at = self._key_at
        if at:
            key = key[at:] + key[:at]
        self._key_at = (at + len(piece)) & 3
        data = mask(piece, key)
        if self._compressed:
            assert self.deflate is not None
            data = self.deflate.inflate(data, self.max_message - self._size)
        self._take(data)

    def _take(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self.max_message:
            raise WebSocketError(_TOO_BIG, f"message over the limit of {self.max_message} bytes")
        decoder = self._decoder
        if decoder is None:
            self._parts.append(data)
            return
        try:
            chunk = decoder.decode(data)
        except UnicodeDecodeError:
            raise WebSocketError(_INVALID_DATA, "text message is not valid UTF-8") from None
        if chunk:
            self._parts.append(chunk)

    def _finish(self) -> Message:
        if self._compressed:
            assert self.deflate is not None
            self._take(self.deflate.inflate_end(self.max_message - self._size))
        decoder = self._decoder
        result: str | bytes
        if decoder is not None:
            try:
                decoder.decode(b"", True)
            except UnicodeDecodeError:
                raise WebSocketError(_INVALID_DATA, "text message ends inside a character") from None
            result = "".join(self._parts)
        else:
            result = b"".join(self._parts)
        self._opcode = None
        self._parts = _NO_PARTS
        self._decoder = None
        return Message(result)

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == _PING:
            return Ping(payload)
        if opcode == _PONG:
            return Pong(payload)
        self._closed = True
        return parse_close(payload)


def parse_close(payload: bytes) -> Close:
    """A Close frame's payload (RFC 6455 §5.5.1): empty, or a valid code and a UTF-8 reason."""
    if not payload:
        return Close(CloseCode.NO_STATUS, "")
    if len(payload) == 1:
        raise WebSocketError(_PROTOCOL_ERROR, "close payload of one byte")
    code = (payload[0] << 8) | payload[1]
    if not is_valid_close_code(code):
        raise WebSocketError(_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(_INVALID_DATA, "close reason is not valid UTF-8") from None
    return Close(code, reason)


# -- the writer ---------------------------------------------------------------------


def _head(b0: int, n: int, mask_bit: int = 0) -> bytes:
    if n < 126:
        return bytes((b0, mask_bit | n))
    if n < 65536:
        return struct.pack("!BBH", b0, mask_bit | 126, n)
    return struct.pack("!BBQ", b0, mask_bit | 127, n)


def frame(opcode: Opcode, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One server frame (never masked), its length minimally encoded."""
    n = len(payload)
    if opcode >= 8 and (n > _MAX_CONTROL or not fin):
        raise ValueError("a control frame carries at most 125 bytes and is never fragmented")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    return _head(b0, n) + payload


def text(s: str) -> bytes:
    """A whole text message in one frame."""
    return frame(Opcode.TEXT, s.encode("utf-8"))


def binary(b: bytes) -> bytes:
    """A whole binary message in one frame."""
    return frame(Opcode.BINARY, b)


def ping(payload: bytes = b"") -> bytes:
    return frame(Opcode.PING, payload)


def pong(payload: bytes = b"") -> bytes:
    return frame(Opcode.PONG, payload)


def close_frame(code: int = CloseCode.NORMAL, reason: str = "") -> bytes:
    """A Close frame. ``code`` must be one that may be sent and the reason at most 123 bytes of UTF-8.

    ``code`` 1005 (NO_STATUS) means a Close without a payload, which is what
    echoing a Close that had none calls for.
    """
    if code == CloseCode.NO_STATUS and not reason:
        return frame(Opcode.CLOSE, b"")
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    encoded = reason.encode("utf-8")
    if len(encoded) > _MAX_CONTROL - 2:
        raise ValueError("a close reason is at most 123 bytes of UTF-8")
    return frame(Opcode.CLOSE, struct.pack("!H", code) + encoded)


def encode_message(data: str | bytes, deflate: Deflate | None = None) -> bytes:
    """One message as one server frame: TEXT for ``str``, BINARY for ``bytes``.

    With ``deflate`` the payload is compressed with that connection's
    compressor (RSV1 set). Such bytes belong to that connection alone when it
    keeps its compression context (the default of RFC 7692), since the next
    message's compressed bytes refer back to this one; so to send the same
    bytes to many sockets, encode without ``deflate``: an uncompressed frame
    is valid on every connection, with or without the extension.
    """
    if isinstance(data, str):
        opcode = Opcode.TEXT
        payload = data.encode("utf-8")
    else:
        opcode = Opcode.BINARY
        payload = bytes(data)
    if deflate is None:
        return frame(opcode, payload)
    return frame(opcode, deflate.compress(payload), rsv1=True)


def client_frame(
    opcode: int,
    payload: bytes,
    key: bytes = b"\x37\xfa\x21\x3d",
    *,
    fin: bool = True,
    rsv: int = 0,
    length_bytes: int | None = None,
) -> bytes:
    """A masked frame as a client sends it, for tests, fuzzing and load tools.

    It builds what the server must refuse as well: any opcode, RSV bits
    (``rsv`` is 0-7 for RSV1-RSV3, RSV1 the highest bit), a control frame
    of any size, and ``length_bytes`` (0, 2 or 8) to force a length encoding.
    """
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    if length_bytes is None:
        head = _head(b0, n, 0x80)
    elif length_bytes == 0:
        head = bytes((b0, 0x80 | n))
    elif length_bytes == 2:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + key + mask(payload, key)
