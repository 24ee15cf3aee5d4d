"""A broker between processes and hosts: Redis pub/sub on reactor's own loop.

With ``--broker redis://HOST:PORT`` a :class:`~reactor.streams.Broadcast`
that is linked to a channel publishes what it sends to Redis, and what other
processes publish on that channel reaches its local subscribers: a chat
message posted to any worker on any host reaches every subscriber.

Why a client of our own
-----------------------
The runtime uses the standard library only, and the loop is a plain
``selectors`` loop: a blocking client (redis-py) would stall every connection
for each round trip, and an asyncio client needs another loop in another
thread, with locks and a wakeup between the two. RESP, Redis's protocol, is
small: five reply types, each a line that says its type and length. So this
module is two parts, in the project's usual shape:

* :class:`RespParser` and :func:`encode_command`: a sans-IO codec (bytes in,
  replies out; no socket, no clock). It runs in linear time however the bytes
  are split, and it counts every byte of a reply against ``max_reply_bytes``:
  a larger reply raises :class:`RespProtocolError`, and the connection is
  dropped, so that a broken or hostile peer can never make us buffer more.
* :class:`Broker`: two :class:`RedisLink` connections driven by the loop (a
  connection in ``SUBSCRIBE`` mode may send nothing but (un)subscriptions and
  ``PING``, so publishing needs a second one). A link connects without
  blocking, reconnects after a failure with exponential backoff and jitter
  (the loop's :class:`~reactor.loop.Timer`), and the subscriber resubscribes
  to every channel when it is back. While the publisher is down, messages
  wait in a bounded queue; when it is full the oldest is dropped and
  counted (``dropped``). Nothing here ever blocks the loop.

Exactly once, locally
---------------------
A message published here is delivered to local subscribers at once, by the
caller, and Redis's copy of it (every subscriber of a channel gets each
message, the publisher's own subscriber connection too) is recognised by the
origin id in front of it and ignored. Delivering only from Redis's copy would
give every process the same order, but local chat would stop whenever Redis
is down, and the response to a post could not say who got the message.

Redis pub/sub is at most once: a message published while a subscriber is
reconnecting is lost for it, and a message in flight when the publisher's
connection breaks may or may not have reached Redis (``unconfirmed`` counts
those). The chat history of each process (``Last-Event-ID``) holds what that
process saw.
"""

from __future__ import annotations

import errno
import os
import random
import re
import socket
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .log import error_log, escape
from .loop import EVENT_READ, EVENT_WRITE

if TYPE_CHECKING:
    from .loop import Loop, Timer

__all__ = [
    "Broker",
    "RedisLink",
    "Reply",
    "RespError",
    "RespParser",
    "RespProtocolError",
    "encode_command",
    "parse_url",
]

#: Replies are at most this many bytes unless the caller says otherwise.
MAX_REPLY_BYTES = 2 << 20
#: Arrays nest at most this deep (pub/sub replies are one deep).
MAX_DEPTH = 8
#: The origin id in front of every published message: 16 hex digits.
ORIGIN_BYTES = 16
# The publisher stops taking messages from the queue while this much output is
# unsent: the queue, which is bounded, holds the rest.
_OUTPUT_HIGH_WATER = 64 << 10
# An integer line: an optional minus and digits, nothing else (int() would
# also take spaces, underscores and a plus). One way to match: linear time.
_INTEGER = re.compile(rb"-?[0-9]{1,19}")


# -- the codec: bytes in, replies out ------------------------------------------


class RespError:
    """An error reply (``-ERR ...``): a value, as Redis sends it, not an exception."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


#: A reply: a simple string (str), an error, an integer, a bulk string
#: (bytes), a null (None), or an array of replies.
Reply = str | RespError | int | bytes | None | list[Any]


class RespProtocolError(Exception):
    """The peer broke RESP, or a reply is over the limit: drop the connection."""


def encode_command(*args: bytes | str | int) -> bytes:
    """A command as Redis reads it: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = bytes(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class RespParser:
    """Parse RESP2 replies from bytes as they arrive. See the module docs.

    :meth:`feed` returns the replies that the bytes so far complete. Each
    byte is looked at a bounded number of times: a line is searched for its
    CRLF from where the last search stopped, a bulk string is waited for by
    its length, and arrays are built with an explicit stack (no recursion).
    """

    __slots__ = ("max_reply_bytes", "_buf", "_pos", "_start", "_scan", "_bulk", "_stack")

    def __init__(self, max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self.max_reply_bytes = max_reply_bytes
        self._buf = bytearray()
        self._pos = 0  # the next byte to parse
        self._start = 0  # where the reply being parsed began
        self._scan = 0  # where the next search for CRLF starts
        self._bulk = -1  # the length of the bulk string awaited, or -1
        self._stack: list[list[Any]] = []  # [elements still to come, elements so far]

    def feed(self, data: bytes) -> list[Reply]:
        """Take ``data``; returns the replies it completes (oldest first)."""
        buf = self._buf
        if self._start:
            # Drop the bytes of complete replies; the reply in progress stays,
            # and it is bounded by max_reply_bytes.
            del buf[: self._start]
            self._pos -= self._start
            self._scan -= self._start
            self._start = 0
        buf += data
        replies = self._parse()
        if len(buf) - self._start > self.max_reply_bytes:
            raise RespProtocolError(f"a reply is over {self.max_reply_bytes} bytes")
        return replies

    def _parse(self) -> list[Reply]:
        buf, limit, stack = self._buf, self.max_reply_bytes, self._stack
        replies: list[Reply] = []
        pos = self._pos
        while True:
            value: Reply
            if self._bulk >= 0:
                end = pos + self._bulk
                if len(buf) < end + 2:
                    break
                if buf[end : end + 2] != b"\r\n":
                    raise RespProtocolError("a bulk string does not end with CRLF")
                value = bytes(buf[pos:end])
                pos = end + 2
                self._bulk = -1
            else:
                eol = buf.find(b"\r\n", max(pos, self._scan))
                if eol < 0:
                    self._scan = max(pos, len(buf) - 1)  # a CR may end the buffer
                    break
                kind, line = bytes(buf[pos : pos + 1]), bytes(buf[pos + 1 : eol])
                pos = self._scan = eol + 2
                if kind == b"+":
                    value = line.decode("utf-8", "replace")
                elif kind == b"-":
                    value = RespError(line.decode("utf-8", "replace"))
                elif kind in (b":", b"$", b"*"):
                    if not _INTEGER.fullmatch(line):
                        raise RespProtocolError(f"not an integer: {line[:40]!r}")
                    number = int(line)
                    if kind == b":":
                        value = number
                    elif number == -1:
                        value = None  # a null bulk string or a null array
                    elif number < 0:
                        raise RespProtocolError(f"a negative length: {number}")
                    elif kind == b"$":
                        if pos - self._start + number + 2 > limit:
                            raise RespProtocolError(f"a reply is over {limit} bytes")
                        self._bulk = number
                        continue
                    elif number == 0:
                        value = []
                    else:
                        # Each element takes 3 bytes at least ("+\r\n").
                        if pos - self._start + 3 * number > limit:
                            raise RespProtocolError(f"a reply is over {limit} bytes")
                        if len(stack) >= MAX_DEPTH:
                            raise RespProtocolError(f"arrays nested over {MAX_DEPTH} deep")
                        stack.append([number, []])
                        continue
                else:
                    raise RespProtocolError(f"not a RESP2 type: {kind!r}")
            # A value is complete: it ends the arrays that it fills.
            while stack:
                top = stack[-1]
                top[1].append(value)
                top[0] -= 1
                if top[0]:
                    break
                value = top[1]
                stack.pop()
            else:
                if pos - self._start > limit:
                    raise RespProtocolError(f"a reply is over {limit} bytes")
                replies.append(value)
                self._start = pos
        self._pos = pos
        return replies


def parse_url(url: str) -> tuple[str, int]:
    """``redis://HOST[:PORT][/]`` -> ``(host, port)``; anything else is a ValueError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"{url!r} is not a redis:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a user or password in the broker URL is not supported")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: only redis://HOST:PORT is supported (no database, no options)")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    return parts.hostname, port


# -- one connection, driven by the loop ---------------------------------------


class RedisLink:
    """One Redis connection: connect, send commands, read replies, reconnect.

    States: ``down`` (waiting to retry), ``connecting``, ``ready``, ``closed``.
    One timer serves every deadline: the connect timeout while connecting; in
    ``ready``, the reply timeout while replies are awaited and a ``PING``
    after ``ping_interval_s`` of quiet otherwise (so a peer that vanished
    without a word is noticed); the reconnect delay while ``down``.
    """

    __slots__ = (
        "name",
        "state",
        "attempts",
        "connects",
        "_loop",
        "_address",
        "_owner",
        "_parser",
        "_sock",
        "_out",
        "_events",
        "_awaiting",
        "_timer",
        "_settings",
    )

    def __init__(
        self,
        loop: Loop,
        name: str,
        address: tuple[int, tuple[Any, ...]],
        owner: Broker,
        settings: dict[str, float],
    ) -> None:
        self.name = name
        self.state = "down"
        self.attempts = 0  # failures since the last success: the backoff exponent
        self.connects = 0
        self._loop = loop
        self._address = address
        self._owner: Broker | None = owner
        self._settings = settings
        self._parser = RespParser(int(settings["max_reply_bytes"]))
        self._sock: socket.socket | None = None
        self._out = bytearray()
        self._events = 0
        self._awaiting = 0  # replies owed to us
        self._timer: Timer = loop.timer(self._on_timer)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def unsent(self) -> int:
        """Bytes of commands not yet written to the socket."""
        return len(self._out)

    def connect(self) -> None:
        """Start a non-blocking connect (the result arrives as EVENT_WRITE)."""
        if self.state in ("closed", "connecting", "ready"):
            return
        family, address = self._address
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors, say: try again later
            self._fail(f"socket: {exc.strerror}")
            return
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EINTR):
            sock.close()
            self._fail(f"connect: {os.strerror(code)}")
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.state = "connecting"
        self._events = EVENT_WRITE
        self._loop.register(sock, EVENT_WRITE, self._on_io)
        self._timer.reset(self._loop.time() + self._settings["connect_timeout_s"])

    def send(self, command: bytes, replies: int = 1) -> None:
        """Write ``command`` (encoded), which earns ``replies`` replies."""
        if self.state != "ready":
            return
        if not self._awaiting and replies:
            self._timer.reset(self._loop.time() + self._settings["reply_timeout_s"])
        self._awaiting += replies
        self._out += command
        self._flush()

    def _on_io(self, mask: int) -> None:
        sock = self._sock
        if sock is None:
            return
        if self.state == "connecting":
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(f"connect: {os.strerror(code)}")
                return
            self.state = "ready"
            self.connects += 1
            self._want(EVENT_READ)
            error_log.info("broker: %s connected to %s:%d", self.name, *self._address[1][:2])
            # A first PING proves that a Redis answers (see _on_reply); its
            # reply deadline replaces the connect deadline on the timer.
            self.send(encode_command("PING"))
            if self._owner is not None:
                self._owner._link_ready(self)
            return
        if mask & EVENT_READ:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as exc:
                self._fail(f"recv: {exc.strerror}")
                return
            if data == b"":
                self._fail("Redis closed the connection")
                return
            if data:
                try:
                    replies = self._parser.feed(data)
                except RespProtocolError as exc:
                    self._fail(f"protocol error: {exc}")
                    return
                for reply in replies:
                    self._on_reply(reply)
                    if self._sock is not sock:
                        return  # the reply closed or failed the link
        if mask & EVENT_WRITE and self._sock is sock:
            self._flush()

    def _on_reply(self, reply: Reply) -> None:
        # A reply, not a connect, proves the peer works: only now does the
        # backoff start again from its shortest delay (a peer that accepts
        # and never answers would otherwise be retried at that rate for ever).
        self.attempts = 0
        push = isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message"
        if not push and self._awaiting:
            self._awaiting -= 1
            deadline = "reply_timeout_s" if self._awaiting else "ping_interval_s"
            self._timer.reset(self._loop.time() + self._settings[deadline])
        if self._owner is not None:
            self._owner._link_reply(self, reply)

    def _flush(self) -> None:
        sock = self._sock
        if sock is None:
            return
        if self._out:
            try:
                sent = sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(f"send: {exc.strerror}")
                return
            del self._out[:sent]
        self._want(EVENT_READ | EVENT_WRITE if self._out else EVENT_READ)
        if not self._out and self._owner is not None:
            self._owner._link_drained(self)

    def _want(self, events: int) -> None:
        if events != self._events and self._sock is not None:
            self._loop.modify(self._sock, events, self._on_io)
            self._events = events

    def _on_timer(self) -> None:
        if self.state == "down":
            self.connect()
        elif self.state == "connecting":
            self._fail("connect timed out")
        elif self.state == "ready":
            if self._awaiting:
                self._fail(f"no reply in {self._settings['reply_timeout_s']}s")
            else:
                self.send(encode_command("PING"))

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                self._loop.unregister(sock)
            except (KeyError, ValueError):
                pass  # the loop was closed first, and its selector with it
            sock.close()
        self._out.clear()
        self._events = 0
        self._parser = RespParser(self._parser.max_reply_bytes)

    def _fail(self, reason: str) -> None:
        """Drop the connection and retry after a backoff delay with jitter."""
        was_ready = self.state == "ready"
        unconfirmed = self._awaiting
        self._awaiting = 0
        self._drop_socket()
        self.state = "down"
        self.attempts += 1
        # Exponential backoff, capped; "equal jitter" (half fixed, half
        # random) keeps a host's workers from reconnecting in step.
        delay = min(
            self._settings["backoff_max_s"], self._settings["backoff_min_s"] * 2 ** min(self.attempts - 1, 30)
        )
        delay = delay / 2 + random.uniform(0, delay / 2)
        self._timer.reset(self._loop.time() + delay)
        level = error_log.warning if was_ready or self.attempts == 1 else error_log.debug
        level("broker: %s: %s; retrying in %.2fs", self.name, escape(reason), delay)
        if self._owner is not None:
            self._owner._link_down(self, unconfirmed)

    def close(self) -> None:
        """Close for good: the socket, the timer, the reference to the broker."""
        self.state = "closed"
        self._drop_socket()
        self._timer.release()  # its callback is this link's _on_timer
        self._owner = None

    def __repr__(self) -> str:
        return f"<RedisLink {self.name} {self.state}>"


# -- the broker ------------------------------------------------------------------


class Broker:
    """Publish and subscribe through Redis; see the module docs.

    Args:
        loop: the loop the two connections run on.
        url: ``redis://HOST:PORT``. The host name is resolved once, here.
        max_reply_bytes: the largest reply accepted; a published message must
            fit in it (with 4 KiB to spare for the framing and the channel
            name), or :meth:`publish` refuses it. Use the same value in every
            process.
        max_queue_messages, max_queue_bytes: bounds of the queue that holds
            messages while the publisher is not connected (a message larger
            than ``max_queue_bytes`` is refused too).
    """

    __slots__ = (
        "url",
        "origin",
        "max_message_bytes",
        "max_queue_messages",
        "max_queue_bytes",
        "published",
        "received",
        "echoes",
        "dropped",
        "too_large",
        "unconfirmed",
        "errors",
        "_loop",
        "_handlers",
        "_subscribed",
        "_queue",
        "_queued_bytes",
        "_publisher",
        "_subscriber",
        "_closed",
    )

    def __init__(
        self,
        loop: Loop,
        url: str,
        *,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        max_queue_messages: int = 1000,
        max_queue_bytes: int = 1 << 20,
        connect_timeout_s: float = 2.0,
        reply_timeout_s: float = 5.0,
        ping_interval_s: float = 10.0,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        host, port = parse_url(url)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.url = url
        self.origin = b""  # chosen in start(), in the process that runs the loop
        # A message must fit in a reply (with room for its framing and
        # channel) and in the queue, or publish() refuses it.
        self.max_message_bytes = min(max_reply_bytes - 4096, max_queue_bytes)
        self.max_queue_messages = max_queue_messages
        self.max_queue_bytes = max_queue_bytes
        #: Counters (see docs/broker.md).
        self.published = 0  # PUBLISH commands written
        self.received = 0  # messages from other processes, delivered
        self.echoes = 0  # our own messages, back from Redis, ignored
        self.dropped = 0  # the oldest queued message, pushed out by a new one
        self.too_large = 0  # refused by publish()
        self.unconfirmed = 0  # written, but the connection broke before Redis replied
        self.errors = 0  # error replies from Redis
        self._loop = loop
        self._handlers: dict[bytes, Callable[[bytes], object]] = {}
        self._subscribed: set[bytes] = set()
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued_bytes = 0
        settings = {
            "max_reply_bytes": float(max_reply_bytes),
            "connect_timeout_s": connect_timeout_s,
            "reply_timeout_s": reply_timeout_s,
            "ping_interval_s": ping_interval_s,
            "backoff_min_s": backoff_min_s,
            "backoff_max_s": backoff_max_s,
        }
        self._publisher = RedisLink(loop, "publisher", (family, address), self, settings)
        self._subscriber = RedisLink(loop, "subscriber", (family, address), self, settings)
        self._closed = False

    # -- what callers use ------------------------------------------------------

    def start(self) -> None:
        """Connect both links on the loop's next pass (after a fork, if any)."""
        self._loop.call_soon(self._begin)

    def _begin(self) -> None:
        if self._closed:
            return
        self.origin = os.urandom(ORIGIN_BYTES // 2).hex().encode()
        self._publisher.connect()
        self._subscriber.connect()

    def subscribe(self, channel: str, handler: Callable[[bytes], object]) -> None:
        """Call ``handler(data)`` for each message other processes publish on ``channel``."""
        name = channel.encode()
        self._handlers[name] = handler
        if self._subscriber.ready:
            self._subscriber.send(encode_command("SUBSCRIBE", name))

    def publish(self, channel: str, data: bytes) -> bool:
        """Send ``data`` to the other processes' subscribers of ``channel``.

        Never blocks: the message is written if the publisher is connected and
        queued otherwise. Returns False if it is too large to send.
        """
        if self._closed:
            return False
        if len(data) + ORIGIN_BYTES > self.max_message_bytes:
            self.too_large += 1
            return False
        queue = self._queue
        queue.append((channel.encode(), data))
        self._queued_bytes += len(data)
        while len(queue) > self.max_queue_messages or self._queued_bytes > self.max_queue_bytes:
            _, old = queue.popleft()
            self._queued_bytes -= len(old)
            self.dropped += 1
        self._pump()
        return True

    @property
    def connected(self) -> bool:
        """Whether both connections are up and every channel is subscribed."""
        return self._publisher.ready and self._subscriber.ready and self._subscribed == set(self._handlers)

    def status(self) -> dict[str, Any]:
        """The links' states and the counters (for /api/info and tests)."""
        return {
            "url": self.url,
            "publisher": self._publisher.state,
            "subscriber": self._subscriber.state,
            "subscribed": sorted(name.decode() for name in self._subscribed),
            "connected": self.connected,
            "connects": self._publisher.connects + self._subscriber.connects,
            "queued": len(self._queue),
            "published": self.published,
            "received": self.received,
            "echoes": self.echoes,
            "dropped": self.dropped,
            "too_large": self.too_large,
            "unconfirmed": self.unconfirmed,
            "errors": self.errors,
        }

    def close(self) -> None:
        """Close both connections and forget the handlers (they may refer back)."""
        self._closed = True
        self._publisher.close()
        self._subscriber.close()
        self._handlers.clear()
        self._subscribed.clear()
        self._queue.clear()
        self._queued_bytes = 0

    # -- what the links tell us ------------------------------------------------

    def _pump(self) -> None:
        """Move queued messages to the publisher while its output is small."""
        link, queue = self._publisher, self._queue
        while queue and link.ready and link.unsent < _OUTPUT_HIGH_WATER:
            channel, data = queue.popleft()
            self._queued_bytes -= len(data)
            self.published += 1
            link.send(encode_command("PUBLISH", channel, self.origin + data))

    def _link_ready(self, link: RedisLink) -> None:
        if link is self._subscriber:
            self._subscribed.clear()
            if self._handlers:
                link.send(encode_command("SUBSCRIBE", *self._handlers), len(self._handlers))
        else:
            self._pump()

    def _link_drained(self, link: RedisLink) -> None:
        if link is self._publisher and self._queue:
            self._pump()

    def _link_down(self, link: RedisLink, unconfirmed: int) -> None:
        if link is self._subscriber:
            self._subscribed.clear()
        else:
            self.unconfirmed += unconfirmed

    def _link_reply(self, link: RedisLink, reply: Reply) -> None:
        if isinstance(reply, RespError):
            self.errors += 1
            error_log.warning("broker: %s: Redis said %s", link.name, escape(reply.message))
            return
        if not isinstance(reply, list) or len(reply) != 3 or link is not self._subscriber:
            return  # PUBLISH's receiver count, PONG
        kind, channel, data = reply
        if kind == b"subscribe" and isinstance(channel, bytes):
            self._subscribed.add(channel)
        elif kind == b"message" and isinstance(data, bytes) and isinstance(channel, bytes):
            if data[:ORIGIN_BYTES] == self.origin:
                self.echoes += 1
                return
            handler = self._handlers.get(channel)
            if handler is not None:
                self.received += 1
                handler(data[ORIGIN_BYTES:])

    def __repr__(self) -> str:
        return f"<Broker {self.url} publisher={self._publisher.state} subscriber={self._subscriber.state}>"
