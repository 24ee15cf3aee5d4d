"""The WebSocket protocol's shared ping heartbeat, on a fake loop and transport (no socket)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from reactor.config import Config
from reactor.http.parser import RequestParser
from reactor.http.request import Request
from reactor.websocket.frames import Opcode, client_frame
from reactor.websocket.protocol import CLOSED, WebSocket, heartbeat_for
from tests.unit.fakes import FakeLoop, FakeTransport

CONFIG = Config(ws_ping_interval_s=10.0, ws_ping_timeout_s=5.0)
PING = bytes((0x80 | Opcode.PING, 0))


class Upgraded:
    """The HTTP connection's side: its loop and config, and whether it heard the end."""

    def __init__(self, loop: FakeLoop) -> None:
        self.loop: Any = loop
        self.config = CONFIG
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def request() -> Request:
    parser = RequestParser(CONFIG)
    parser.receive_data(b"GET /ws HTTP/1.1\r\nHost: h\r\n\r\n")
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


def open_sockets(loop: FakeLoop, n: int) -> list[tuple[WebSocket, FakeTransport]]:
    sockets = []
    for _ in range(n):
        transport = FakeTransport(CONFIG)
        ws = WebSocket(Upgraded(loop), object(), request(), max_message=1000)
        transport.protocol = ws
        ws.connection_made(transport)  # type: ignore[arg-type]
        sockets.append((ws, transport))
    return sockets


def test_one_timer_pings_the_quiet_and_cuts_the_silent() -> None:
    loop = FakeLoop()
    sockets = open_sockets(loop, 100)
    assert len(loop._heap) == 1  # one timer for all of them
    (chatty, chatty_transport), (silent, silent_transport) = sockets[0], sockets[1]
    loop.advance(6.0)
    chatty.data_received(client_frame(Opcode.TEXT, b"hi"))  # heard: its interval restarts
    loop.advance(4.5)  # 10.5 s: every other socket is pinged
    assert silent_transport.take() == PING
    assert chatty_transport.take() == b""
    silent.data_received(client_frame(Opcode.PONG, b""))  # answers: back to quiet
    loop.advance(5.0)  # 15.5 s: the pinged that did not answer are cut
    assert silent.state is not CLOSED and chatty.state is not CLOSED
    cut = [ws for ws, transport in sockets[2:] if transport.closed == "abort"]
    assert len(cut) == 98 and all(ws.state is CLOSED for ws in cut)
    assert chatty_transport.take() == b""  # heard at 6.0 s: its ping is due at 16.0 s
    loop.advance(0.6)
    assert chatty_transport.take() == PING
    beat = heartbeat_for(loop, CONFIG)  # type: ignore[arg-type]
    assert beat._timer is not None
    for transport in (chatty_transport, silent_transport):
        transport.abort()
    assert beat._timer is None and not len(beat)  # nobody open: no timer held


def test_the_heartbeat_lets_its_loop_go() -> None:
    loop = FakeLoop()
    ref = weakref.ref(loop)
    beat = heartbeat_for(loop, CONFIG)  # type: ignore[arg-type]
    assert heartbeat_for(loop, CONFIG) is beat  # type: ignore[arg-type]
    assert heartbeat_for(loop, CONFIG.replace(ws_ping_interval_s=1.0)) is not beat  # type: ignore[arg-type]
    del loop, beat
    gc.collect()
    assert ref() is None
