"""The transport: the only code that touches a client socket.

A transport moves bytes between one socket and one *protocol* (the HTTP/1.1
connection in :mod:`reactor.connection`, or whatever it hands the transport
to with :meth:`Transport.set_protocol`), as asyncio's and Twisted's do. It
knows nothing of HTTP. The protocol is called back with:

``connection_made(transport)``
    once, before any data (the protocol may write or pause reading here);
``data_received(data)``
    bytes have arrived;
``eof_received()``
    the peer has sent all it will (it may still read: a half-close);
``pause_writing()`` / ``resume_writing()``
    the unsent output rose above ``write_high_water_bytes`` / fell back to
    ``write_low_water_bytes``;
``resume_producing()``
    only while the protocol is registered with :meth:`Transport.set_producer`:
    the socket can take more, so write (or :meth:`Transport.sendfile`) more;
``connection_lost(exc)``
    the socket is closed (``exc`` is the error that closed it, or None).

What the transport wants decides its selector mask: ``EVENT_READ`` unless the
protocol paused reading or the input has ended, ``EVENT_WRITE`` while output is
unsent or a producer is registered. ``modify()`` runs only when the mask
changes; an empty mask unregisters (a selector cannot watch for nothing).

Output written during a callback is sent when the callback returns, in one
``send`` or one ``sendmsg`` of up to ``IOV_MAX`` buffers; what the socket does
not take stays queued as memoryviews and waits for ``EVENT_WRITE`` (asyncio's
``_write_sendmsg`` and ``_adjust_leftover_buffer``). Output written from
anywhere else (a timer, a push stream's producer) is sent on the next pass, so
that writes made in one pass leave together. The write timeout measures time
without progress while output is pending.

Closing: :meth:`Transport.close` sends what is queued first, then closes;
with ``linger`` it half-closes and drains what the client still sends
(RFC 9112 §9.6) before closing. :meth:`Transport.abort` closes at once.

TLS is a subclass (:class:`reactor.tls.TLSTransport`) with one more phase
(the handshake, before the first read), ``SSLWantReadError``/``SSLWantWriteError``
feeding the mask, and :attr:`Transport.can_sendfile` False. A Unix-domain
socket needs nothing of its own: this class takes any stream socket.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .log import error_log, escape
from .loop import EVENT_READ, EVENT_WRITE, Loop, Timer

if TYPE_CHECKING:
    from .config import Config
    from .metrics import Metrics

__all__ = ["BaseProtocol", "Lingering", "Transport", "TransportOwner"]

# Buffers per sendmsg(): the system's IOV_MAX where it says, else POSIX's minimum.
try:
    _IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, OSError, ValueError):
    _IOV_MAX = 16
# Rounds of send-and-produce per flush: how long one connection keeps the loop.
_FLUSH_ROUNDS = 8
# Resets and broken pipes are the peer leaving: logged at debug level only.
_DISCONNECTED = frozenset((errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT))
# Largest piece of a file read and queued where sendfile cannot be used.
_COPY_PIECE_BYTES = 1 << 16
# Bytes a lingering close drains at most before it gives up on the client.
_LINGER_MAX_BYTES = 1 << 20


class BaseProtocol(Protocol):
    """What a transport calls (see the module docs)."""

    def connection_made(self, transport: Transport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def resume_producing(self) -> None: ...


class TransportOwner(Protocol):
    """What a transport needs from the server that accepted its socket."""

    @property
    def metrics(self) -> Metrics: ...
    def linger(self, sock: socket.socket) -> None: ...


class Transport:
    """A TCP (or Unix-domain) stream socket under one protocol."""

    __slots__ = (
        "sock",
        "loop",
        "protocol",
        "owner",
        "config",
        "_metrics",
        "_out",
        "buffered",
        "received",
        "sent",
        "_mask",
        "_reading",
        "_eof",
        "_paused",
        "_producer",
        "_in_callback",
        "_flush_soon",
        "_closing",
        "_linger",
        "_closed",
        "_write_timer",
    )

    #: Whether :meth:`sendfile` may use the kernel's ``sendfile``. A TLS
    #: transport sets it False: files are then read and queued in bounded pieces.
    can_sendfile = True

    def __init__(
        self, sock: socket.socket, loop: Loop, config: Config, owner: TransportOwner, protocol: BaseProtocol
    ) -> None:
        self.sock = sock
        self.loop = loop
        self.config = config
        self.owner = owner
        self.protocol: BaseProtocol = protocol
        self._metrics = owner.metrics
        # Unsent output; None when empty, so an idle connection owns no buffer.
        self._out: deque[bytes | memoryview] | None = None
        #: Bytes written and not yet sent.
        self.buffered = 0
        #: Bytes received from and sent to this socket, in all.
        self.received = 0
        self.sent = 0
        self._mask = 0  # not in the selector yet: see start()
        self._reading = True  # the protocol has not paused reading, nor input ended
        self._eof = False  # the peer has sent all it will
        self._paused = False  # pause_writing was called, resume_writing not yet
        self._producer = False  # the protocol wants resume_producing calls
        self._in_callback = False  # output is sent when the callback returns
        self._flush_soon = False  # a flush is scheduled for the next pass
        self._closing = False  # close() was called: close once the output is out
        self._linger = False
        self._closed = False
        self._write_timer: Timer | None = None

    def __repr__(self) -> str:
        return f"<Transport fd={self.sock.fileno()} out={self.buffered}B mask={self._mask}>"

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def write_timer(self) -> Timer | None:
        """The write timeout's timer (armed while output waits), or None."""
        return self._write_timer

    # -- starting, and the protocol ------------------------------------------

    def start(self) -> None:
        """Tell the protocol, read at once, then watch the socket.

        Clients send their request right after connecting, so it has often
        arrived by the time it is accepted: a connection answered and closed
        here never enters the selector at all.
        """
        self._in_callback = True
        try:
            self.protocol.connection_made(self)
            if self._reading and not self._closed:
                self._read()
        except Exception as exc:
            self._crashed(exc)
        self._after_callback()

    def set_protocol(self, protocol: BaseProtocol) -> None:
        """Hand this transport to ``protocol`` (an upgrade: WebSockets), which
        gets ``connection_made`` and every callback from now on."""
        self.protocol = protocol
        self._producer = False
        self._paused = False
        protocol.connection_made(self)

    # -- what the protocol asks ----------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data``; it is sent when the current callback returns."""
        if self._closing:  # also set once closed
            return
        out = self._out
        if out is None:
            out = self._out = deque()
        out.append(data)
        self.buffered += len(data)
        if not self._paused and self.buffered > self.config.write_high_water_bytes:
            self._paused = True
            self.protocol.pause_writing()
        if not self._in_callback and not self._flush_soon:
            self._soon()

    def retract(self, first: bytes) -> bool:
        """Drop ``first`` and everything written after it, if none of it was sent."""
        out = self._out
        if out is None:
            return False
        for index, piece in enumerate(out):
            if piece is first:  # a partly sent buffer is a memoryview of it
                while len(out) > index:
                    self.buffered -= len(out.pop())
                if not out:
                    self._out = None
                return True
        return False

    @property
    def writable(self) -> bool:
        """Whether the unsent output is at or below the high-water mark."""
        return not self._closed and self.buffered <= self.config.write_high_water_bytes

    def sendfile(self, file: Any, offset: int, count: int) -> int:
        """Send up to ``count`` bytes of ``file`` from ``offset`` once the
        queued output is out: the bytes sent (0: not now, or closed)."""
        if self._out is not None or self._closed:
            return 0
        if not self.can_sendfile:
            return self._send_file_copy(file, offset, count)
        try:
            sent = os.sendfile(self.sock.fileno(), file.fileno(), offset, count)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._failed(exc)
            return 0
        if sent == 0:
            # The file is shorter than announced (truncated while being sent):
            # the promised length cannot be kept, so the connection must end.
            raise EOFError(f"{file!r} ended {count} bytes early")
        self._metrics.bytes_sent += sent
        self.sent += sent
        return sent

    def _send_file_copy(self, file: Any, offset: int, count: int) -> int:
        """``sendfile`` where the kernel cannot (TLS): read a bounded piece
        and queue it, so the same water marks hold it back."""
        piece = os.pread(file.fileno(), min(count, _COPY_PIECE_BYTES), offset)
        if not piece:
            raise EOFError(f"{file!r} ended {count} bytes early")
        self.write(piece)
        return len(piece)

    def set_producer(self, producing: bool) -> None:
        """Call the protocol's ``resume_producing`` whenever the socket can
        take more (True), or no longer (False)."""
        self._producer = producing
        if not self._in_callback and not self._flush_soon:
            self._soon()

    def pause_reading(self) -> None:
        self._reading = False
        if not self._in_callback and not self._flush_soon:
            self._soon()

    def resume_reading(self) -> None:
        self._reading = not self._eof and not self._closing
        if not self._in_callback and not self._flush_soon:
            self._soon()

    def _soon(self) -> None:
        """Asked from outside a callback (a timer, another connection): send
        and make the mask follow on the next pass, once for all such asks."""
        self._flush_soon = True
        self.loop.call_soon(self._flush_scheduled)

    @property
    def at_eof(self) -> bool:
        """Whether the peer has sent all it will."""
        return self._eof

    def is_closing(self) -> bool:
        return self._closing

    def close(self, linger: bool = False) -> None:
        """Close once the queued output is sent (``linger``: then drain the
        client's input before closing). Nothing more is read or written."""
        if self._closing:
            return
        self._closing = True
        self._linger = linger
        self._reading = False
        self._producer = False
        if self._out is None and not self._in_callback:
            self._finish_close()

    def abort(self, exc: Exception | None = None) -> None:
        """Close now, dropping unsent output."""
        if self._closed:
            return
        self._linger = False
        self._out = None
        self.buffered = 0
        self._finish_close(exc)

    # -- the loop's side -----------------------------------------------------

    def __call__(self, mask: int) -> None:
        """The selector's handler: the socket is ready for ``mask``.

        Being its own handler spares every connection a bound-method object.
        """
        self._in_callback = True
        try:
            if mask & EVENT_READ and self._reading:
                self._read()
        except Exception as exc:
            self._crashed(exc)
        self._after_callback()  # sends, whether or not EVENT_WRITE is in mask

    def _flush_scheduled(self) -> None:
        self._flush_soon = False
        if not self._closed:
            self._in_callback = True
            self._after_callback()

    def _after_callback(self) -> None:
        """Send what the callback wrote, then make the mask follow what is wanted."""
        if self._closed:
            self._in_callback = False
            return
        try:
            if self._out is not None or self._producer:
                self._flush()  # what the protocol writes meanwhile joins the next round
            if self._closing and self._out is None and not self._closed:
                self._finish_close()
        except Exception as exc:
            self._crashed(exc)
        self._in_callback = False
        if self._closed:
            return
        mask = EVENT_READ if self._reading else 0
        if self._out is not None or self._producer:
            mask |= EVENT_WRITE
        if mask != self._mask:
            if not mask:
                self.loop.unregister(self.sock)
            elif not self._mask:
                self.loop.register(self.sock, mask, self)
            else:
                self.loop.modify(self.sock, mask, self)
            self._mask = mask

    def _read(self) -> None:
        try:
            data = self.sock.recv(self.config.recv_bytes)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._failed(exc)
            return
        protocol = self.protocol
        if data:
            size = len(data)
            self._metrics.bytes_received += size
            self.received += size
            protocol.data_received(data)
        else:
            self._eof = True
            self._reading = False
            protocol.eof_received()

    def _flush(self) -> None:
        """Send queued output, and let a producer add more, while the socket takes it."""
        progress = False
        config = self.config
        for _ in range(_FLUSH_ROUNDS):
            out = self._out
            if out is not None:
                try:
                    if len(out) == 1:
                        sent = self.sock.send(out[0])
                    else:
                        sent = self.sock.sendmsg(list(out)[:_IOV_MAX])
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as exc:
                    self._failed(exc)
                    return
                if sent:
                    progress = True
                    self.buffered -= sent
                    self._metrics.bytes_sent += sent
                    self.sent += sent
                if not self.buffered:
                    self._out = None
                else:
                    _adjust_leftover(out, sent)
            if self._paused and self.buffered <= config.write_low_water_bytes:
                self._paused = False
                self.protocol.resume_writing()
                if self._closed:
                    return
                continue  # send what it wrote
            if self._closed or self._out is not None or not self._producer:
                break  # the socket is full, or nothing more will come
            self.protocol.resume_producing()
            progress = True
            if self._closed:
                return
        if self._out is not None or self._producer:
            # Work is left: the write deadline measures time without progress.
            timer = self._write_timer
            if progress or timer is None or timer.cancelled:
                if timer is None:
                    timer = self._write_timer = self.loop.timer(self._write_timed_out)
                timer.reset(self.loop.now + config.write_timeout_s)
        elif self._write_timer is not None:
            self._write_timer.cancel()

    # -- failures and closing --------------------------------------------------

    def _write_timed_out(self) -> None:
        if not self._closed:
            error_log.info("write timeout to %s with %d bytes unsent", _peer(self.sock), self.buffered)
            self.abort(TimeoutError("write timeout"))

    def _failed(self, exc: OSError) -> None:
        if exc.errno in _DISCONNECTED:
            error_log.debug("%s from %s", errno.errorcode.get(exc.errno or 0, exc), _peer(self.sock))
        else:
            error_log.warning("socket error with %s: %s", _peer(self.sock), exc)
        self.abort(exc)

    def _crashed(self, exc: Exception) -> None:
        """The last line of defence: an error nothing else handled closes the
        connection (and is logged), so that it is not left open with no timer."""
        error_log.error(
            "connection with %s failed: %s",
            _peer(self.sock),
            escape(f"{type(exc).__name__}: {exc}"),
            exc_info=exc,
        )
        self.abort(exc)

    def _finish_close(self, exc: Exception | None = None) -> None:
        self._closed = self._closing = True
        self._producer = False
        # Its timer calls back into the transport: released, it no longer holds
        # it, so reference counting alone frees a closed connection.
        if self._write_timer is not None:
            self._write_timer.release()
        if self._mask:
            self.loop.unregister(self.sock)
            self._mask = 0
        self._out = None
        self.buffered = 0
        lingering = self._linger and not self._eof
        if lingering:
            # RFC 9112 §9.6: close the sending side first and drain what the
            # client still sends, so that closing with unread input does not
            # reset the connection before the client has read our answer.
            self.owner.linger(self.sock)
        # The protocol holds the transport: dropping it here breaks the cycle.
        protocol, self.protocol = self.protocol, _GONE
        protocol.connection_lost(exc)
        if not lingering:
            self.sock.close()  # after connection_lost, which may still name its fd


class Lingering:
    """Half-closed sockets drained before they close (RFC 9112 §9.6).

    A transport that closes while the client may still be sending hands its
    socket here: the sending side is shut, and what the client still sends is
    read and dropped until its end of input, ``_LINGER_MAX_BYTES``, or
    ``timeout_s``, so that closing with unread input does not reset the
    connection before the client has read the answer. The server keeps one,
    so that a graceful shutdown waits for them.
    """

    __slots__ = ("loop", "timeout_s", "_socks")

    def __init__(self, loop: Loop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self._socks: dict[socket.socket, tuple[Timer, Callable[[], object]]] = {}

    def __len__(self) -> int:
        return len(self._socks)

    def add(self, sock: socket.socket, on_end: Callable[[], object]) -> None:
        """Half-close ``sock`` and drain it; ``on_end()`` once it is closed."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        timer = self.loop.call_later(self.timeout_s, self.end, sock)
        self._socks[sock] = (timer, on_end)
        self.loop.register(sock, EVENT_READ, partial(self._drain, sock, [0]))

    def _drain(self, sock: socket.socket, drained: list[int], mask: int) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] > _LINGER_MAX_BYTES:
            self.end(sock)

    def end(self, sock: socket.socket) -> None:
        """Stop draining ``sock`` and close it."""
        entry = self._socks.pop(sock, None)
        if entry is None:
            return
        timer, on_end = entry
        timer.release()  # it holds the socket: let both go now, not when it comes due
        self.loop.unregister(sock)
        sock.close()
        on_end()

    def close_all(self) -> None:
        for sock in list(self._socks):
            self.end(sock)


class _Gone:
    """The protocol of a closed transport: it hears nothing."""

    def connection_made(self, transport: Transport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def resume_producing(self) -> None:
        pass


_GONE = _Gone()


def _adjust_leftover(out: deque[bytes | memoryview], sent: int) -> None:
    """Drop the ``sent`` bytes from the front of ``out`` (a partial send)."""
    while sent:
        first = out[0]
        if sent >= len(first):
            sent -= len(first)
            out.popleft()
        else:
            out[0] = memoryview(first)[sent:]
            sent = 0


def _peer(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "?"
    return str(peer[0]) if isinstance(peer, tuple) else (peer or "unix")
