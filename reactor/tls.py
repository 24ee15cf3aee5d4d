"""TLS: the server's context, and the transport that speaks TLS on a socket.

A :class:`TLSTransport` is a :class:`~reactor.transport.Transport` with one
more phase before its data phase: the handshake.

.. code-block:: text

    accept ──> HANDSHAKING ──(do_handshake() done)──> OPEN ──> closed
                  │  SSLWantRead:  mask = EVENT_READ            (close_notify,
                  │  SSLWantWrite: mask = EVENT_WRITE            then close)
                  └─ handshake_timeout_s, a TLS error, plain HTTP ──> closed

The protocol is told of the connection at accept (so that its header
deadline runs from accept, as on plain TCP), but reads nothing until the
handshake is done, and what it writes meanwhile waits in the output queue.

Why ``SSLContext.wrap_socket(do_handshake_on_connect=False)`` and not a
memory BIO (``ssl.MemoryBIO`` and ``SSLObject``, as asyncio's ``sslproto``)?
The loop watches real sockets, so OpenSSL may as well read and write the
descriptor itself: the ciphertext never becomes a Python object, there are no
two BIOs per connection, and each read or write is one call into C. A memory
BIO is what a transport needs when it does not own the descriptor (asyncio
layers TLS over any transport); this one does.

Three things differ from plain TCP, and this class is where they are handled:

- ``SSLWantReadError`` and ``SSLWantWriteError`` say which readiness OpenSSL
  waits for; it is added to the mask (a read may need to write, and a write
  to read, in the rare renegotiation or key update).
- A TLS record is decrypted whole: bytes left over from a short read are in
  OpenSSL (``pending()``), not in the kernel, so the selector would never
  report them. Reads go on while ``pending()`` says so, and resuming reading
  reads what is pending.
- An ``SSL_write`` that could not finish must be retried with the same bytes.
  Small buffers are joined into one record of up to 16 KiB before sending
  (one record, one system call, for a head and a small body), and a buffer
  that is being retried is never joined again.

No kernel ``sendfile`` (it would send the file unencrypted):
:attr:`~reactor.transport.Transport.can_sendfile` is False, so a file is read
in pieces of 64 KiB and queued, under the same water marks.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from typing import TYPE_CHECKING

from .log import error_log, escape
from .loop import EVENT_READ, EVENT_WRITE, Loop, Timer
from .transport import _FLUSH_ROUNDS, BaseProtocol, Transport, TransportOwner, _adjust_leftover, _peer

if TYPE_CHECKING:
    from .config import Config

__all__ = ["CERT_REQS", "TLSConfigError", "TLSTransport", "make_context"]

#: ``--cert-reqs`` values, as gunicorn takes them (0, 1, 2) or by name.
CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
# The most plaintext one TLS record holds (RFC 8446 §5.1): small buffers are
# joined up to it, so that one record carries a head and a small body.
_RECORD_BYTES = 16384
# Most plaintext handed to one SSL_write: bounded, so that the write timer
# sees progress at least every 64 KiB.
_SEND_BYTES = 1 << 16
# Reads per wakeup while OpenSSL holds decrypted bytes (pending()).
_PENDING_READS = 16
# What nginx answers to plain HTTP on its TLS port, as plain text.
_PLAIN_HTTP_BODY = b"400 Bad Request: The plain HTTP request was sent to HTTPS port\n"
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_PLAIN_HTTP_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _PLAIN_HTTP_BODY
)


class TLSConfigError(ValueError):
    """A certificate, key or setting that cannot make a TLS context."""


def make_context(config: Config) -> ssl.SSLContext:
    """The server's TLS context from ``config``'s ``certfile`` and friends.

    TLS 1.2 at least, ALPN ``http/1.1``, no compression, no renegotiation;
    client certificates checked against ``ca_certs`` when it is given
    (``cert_reqs`` says whether one is required). Raises
    :class:`TLSConfigError` with a message that names the file at fault.
    """
    if config.certfile is None:
        raise TLSConfigError("no certfile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    for flag, path in (
        ("certfile", config.certfile),
        ("keyfile", config.keyfile),
        ("ca_certs", config.ca_certs),
    ):
        if path is not None and not os.path.isfile(path):
            raise TLSConfigError(f"{flag} {path!r}: no such file")
    try:
        context.load_cert_chain(config.certfile, config.keyfile, config.keyfile_password)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"certfile {config.certfile!r} / keyfile {config.keyfile or config.certfile!r}: "
            f"not a certificate and its key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise TLSConfigError(f"certfile {config.certfile!r}: {exc.strerror or exc}") from None
    if config.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"ca_certs {config.ca_certs!r}: no CA certificates ({exc})") from None
        context.verify_mode = ssl.VerifyMode(
            config.cert_reqs if config.cert_reqs is not None else ssl.CERT_REQUIRED
        )
    elif config.cert_reqs:
        raise TLSConfigError("cert_reqs needs ca_certs: the CAs to check client certificates against")
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"ssl_ciphers {config.ssl_ciphers!r}: no cipher matches") from None
    return context


class TLSTransport(Transport):
    """A TLS connection on a socket wrapped by :func:`make_context`'s context."""

    __slots__ = (
        "_handshaking",
        "_handshake_timer",
        "_want",
        "_read_needs_write",
        "_write_needs_read",
        "_retry",
    )

    can_sendfile = False

    sock: ssl.SSLSocket

    def __init__(
        self, sock: ssl.SSLSocket, loop: Loop, config: Config, owner: TransportOwner, protocol: BaseProtocol
    ) -> None:
        super().__init__(sock, loop, config, owner, protocol)
        self._handshaking = True
        self._handshake_timer: Timer | None = None
        self._want = EVENT_READ  # what the handshake waits for
        self._read_needs_write = False  # a read raised SSLWantWriteError
        self._write_needs_read = False  # a write raised SSLWantReadError
        self._retry = False  # the first output buffer must be sent again as it is

    def __repr__(self) -> str:
        phase = "handshaking" if self._handshaking else "open"
        return f"<TLSTransport fd={self.sock.fileno()} {phase} out={self.buffered}B mask={self._mask}>"

    @property
    def handshaking(self) -> bool:
        """Whether the TLS handshake is still under way."""
        return self._handshaking

    def start(self) -> None:
        self._in_callback = True
        try:
            self.protocol.connection_made(self)
            if not self._closed:
                timer = self._handshake_timer = self.loop.timer(self._handshake_timed_out)
                timer.reset(self.loop.now + self.config.handshake_timeout_s)
                self._handshake()
        except Exception as exc:
            self._crashed(exc)
        self._after_callback()

    def __call__(self, mask: int) -> None:
        self._in_callback = True
        try:
            if self._handshaking:
                self._handshake()
            elif (mask & EVENT_READ and self._reading) or (mask & EVENT_WRITE and self._read_needs_write):
                self._read()
        except Exception as exc:
            self._crashed(exc)
        self._after_callback()

    def resume_reading(self) -> None:
        super().resume_reading()
        # Bytes OpenSSL has decrypted already: no selector event will say so.
        if self._reading and not self._handshaking and self.sock.pending():
            self.loop.call_soon(self._read_pending)

    def _read_pending(self) -> None:
        if self._closed or not self._reading:
            return
        self._in_callback = True
        try:
            self._read()
        except Exception as exc:
            self._crashed(exc)
        self._after_callback()

    # -- the handshake -------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want = EVENT_READ
            return
        except ssl.SSLWantWriteError:
            self._want = EVENT_WRITE
            return
        except ssl.SSLError as exc:
            self._handshake_failed(exc)
            return
        except OSError as exc:
            self._failed(exc)
            return
        self._handshaking = False
        if self._handshake_timer is not None:
            self._handshake_timer.release()
            self._handshake_timer = None
        if self._reading:
            self._read()  # the request often came with the client's last handshake message

    def _handshake_timed_out(self) -> None:
        if not self._closed:
            error_log.info("TLS handshake timeout for %s", _peer(self.sock))
            self.abort(TimeoutError("TLS handshake timeout"))

    def _handshake_failed(self, exc: ssl.SSLError) -> None:
        if exc.reason == "HTTP_REQUEST":
            # Plain HTTP on the TLS port: say so in plain HTTP, as nginx does,
            # then drain what the client sent so that it reads the answer.
            error_log.info("plain HTTP request from %s on the TLS port: answered 400", _peer(self.sock))
            try:
                socket.socket.send(self.sock, PLAIN_HTTP_ANSWER)
            except OSError:
                pass
            self._linger = True
            self._finish_close(exc)
            return
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            error_log.debug("TLS handshake with %s ended by the client", _peer(self.sock))
        else:
            error_log.info(
                "TLS handshake with %s failed: %s", _peer(self.sock), escape(str(exc.reason or exc))
            )
        self.abort(exc)

    # -- data ----------------------------------------------------------------

    def _read(self) -> None:
        sock = self.sock
        size = self.config.recv_bytes
        for _ in range(_PENDING_READS):
            self._read_needs_write = False
            try:
                data = sock.recv(size)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self._read_needs_write = True
                return
            except ssl.SSLError as exc:
                self._tls_failed(exc)
                return
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._failed(exc)
                return
            protocol = self.protocol
            if not data:
                self._eof = True
                self._reading = False
                protocol.eof_received()
                return
            count = len(data)
            self._metrics.bytes_received += count
            self.received += count
            protocol.data_received(data)
            if self._closed or not self._reading or not sock.pending():
                return
        self.loop.call_soon(self._read_pending)  # more is decrypted: after the others' turn

    def retract(self, first: bytes) -> bool:
        # A buffer OpenSSL is retrying is sent already, as far as anyone can tell.
        if self._retry and self._out is not None and self._out[0] is first:
            return False
        return super().retract(first)

    def _send_first(self) -> int:
        """Send the first output buffer (joined with the small ones after it)."""
        out = self._out
        assert out is not None
        first = out[0]
        if not self._retry and len(out) > 1 and len(first) < _RECORD_BYTES:
            pieces = []
            size = 0
            while out and size + len(out[0]) <= _RECORD_BYTES:
                piece = out.popleft()
                pieces.append(piece)
                size += len(piece)
            first = b"".join(pieces)
            out.appendleft(first)
        elif len(first) > _SEND_BYTES:
            first = memoryview(first)[:_SEND_BYTES]
        self._retry = True  # until it is sent: SSL_write must get the same bytes again
        sent = self.sock.send(first)
        self._retry = False
        return sent

    def _flush(self) -> None:
        """The base class's flush, with TLS's sends (see the module docs)."""
        if self._handshaking:
            return
        progress = False
        config = self.config
        self._write_needs_read = False
        for _ in range(_FLUSH_ROUNDS):
            out = self._out
            if out is not None:
                try:
                    sent = self._send_first()
                except ssl.SSLWantWriteError:
                    sent = 0
                except ssl.SSLWantReadError:
                    self._write_needs_read = True
                    sent = 0
                except ssl.SSLError as exc:
                    self._tls_failed(exc)
                    return
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
                continue
            if self._closed or self._out is not None or not self._producer:
                break
            self.protocol.resume_producing()
            progress = True
            if self._closed:
                return
        if self._out is not None or self._producer:
            timer = self._write_timer
            if progress or timer is None or timer.cancelled:
                if timer is None:
                    timer = self._write_timer = self.loop.timer(self._write_timed_out)
                timer.reset(self.loop.now + config.write_timeout_s)
        elif self._write_timer is not None:
            self._write_timer.cancel()

    def _after_callback(self) -> None:
        if self._handshaking and not self._closed:
            self._in_callback = False
            if self._closing:
                self.abort()  # the protocol gave up (its header deadline) before the handshake ended
            else:
                self._set_mask(self._want)
            return
        super()._after_callback()
        if not self._closed and (self._read_needs_write or self._write_needs_read):
            mask = self._mask
            if self._read_needs_write:
                mask |= EVENT_WRITE
            if self._write_needs_read:
                mask |= EVENT_READ
            self._set_mask(mask)

    def _set_mask(self, mask: int) -> None:
        if mask != self._mask:
            if not mask:
                self.loop.unregister(self.sock)
            elif not self._mask:
                self.loop.register(self.sock, mask, self)
            else:
                self.loop.modify(self.sock, mask, self)
            self._mask = mask

    # -- failures and closing ------------------------------------------------

    def _tls_failed(self, exc: ssl.SSLError) -> None:
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            error_log.debug(
                "TLS connection with %s ended: %s", _peer(self.sock), escape(str(exc.reason or exc))
            )
        else:
            error_log.info("TLS error with %s: %s", _peer(self.sock), escape(str(exc.reason or exc)))
        self.abort(exc)

    def _finish_close(self, exc: Exception | None = None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.release()
            self._handshake_timer = None
        if exc is None and not self._handshaking and not self._closed:
            self._close_notify()
        super()._finish_close(exc)

    def _close_notify(self) -> None:
        """Send TLS's close_notify alert: one non-blocking try, no waiting for
        the client's (RFC 8446 §6.1 lets the closing side close at once)."""
        try:
            self.sock.unwrap()
        except (ssl.SSLError, OSError) as exc:
            if not isinstance(exc, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
                code = getattr(exc, "errno", None)
                error_log.debug(
                    "close_notify to %s: %s", _peer(self.sock), errno.errorcode.get(code or 0, exc)
                )
