"""The demo chat's history: a client reconnecting with ``Last-Event-ID`` gets what it missed."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import requests

from reactor.demo import CHAT_HISTORY_BYTES, CHAT_HISTORY_MESSAGES, Demo, make_demo
from tests.conftest import Running, complete_chunks


def _post(base: str, text: str) -> int:
    reply = requests.post(f"{base}/chat", data=text.encode(), timeout=5)
    assert reply.status_code == 200
    message_id: int = reply.json()["id"]
    return message_id


def _resume(server: Running, demo: Demo, last_event_id: str | None) -> list[tuple[int, str]]:
    """Subscribe over a raw socket (sending ``last_event_id`` if not None), post one live
    message, and return the (id, data) of every event up to and including it."""
    base = f"http://{server.host}:{server.port}"
    before = server.call(lambda: len(demo.chat))
    header = "" if last_event_id is None else f"Last-Event-ID: {last_event_id}\r\n"
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(
            f"GET /events/chat HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{header}\r\n".encode()
        )
        deadline = time.monotonic() + 5
        while server.call(lambda: len(demo.chat)) <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        live = _post(base, "live")
        end = f"id: {live}\ndata: live\n\n".encode()
        received = b""
        while b"\r\n\r\n" not in received or end not in complete_chunks(received.partition(b"\r\n\r\n")[2]):
            chunk = sock.recv(1 << 16)
            assert chunk, "the server closed the event stream"
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    events = []
    for block in complete_chunks(body).decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line.startswith(("id: ", "data: "))]
        if lines and lines[0].startswith("id: "):
            events.append((int(lines[0][4:]), "\n".join(line[6:] for line in lines[1:])))
    assert events and events[-1] == (live, "live")
    return events


def test_reconnecting_client_gets_the_messages_after_its_last_event_id(serve: Callable[..., Running]) -> None:
    demo = make_demo()
    server = serve(demo)
    base = f"http://{server.host}:{server.port}"
    for n in range(1, 6):
        assert _post(base, f"message {n}") == n
    events = _resume(server, demo, "2")
    assert events == [(3, "message 3"), (4, "message 4"), (5, "message 5"), (6, "live")]
    # The newest id: nothing to replay, only what comes next.
    assert _resume(server, demo, "6") == [(7, "live")]
    # No Last-Event-ID: a new client, which gets new messages only.
    assert _resume(server, demo, None) == [(8, "live")]


def test_bogus_or_unknown_ids_get_the_whole_history(serve: Callable[..., Running]) -> None:
    demo = make_demo()
    server = serve(demo)
    base = f"http://{server.host}:{server.port}"
    for n in range(1, 4):
        _post(base, f"m{n}")
    kept = [(1, "m1"), (2, "m2"), (3, "m3")]
    # Not a number, a number from before a restart (newer than any message), a huge one.
    assert _resume(server, demo, "not-a-number") == [*kept, (4, "live")]
    kept.append((4, "live"))
    assert _resume(server, demo, "999") == [*kept, (5, "live")]
    kept.append((5, "live"))
    assert _resume(server, demo, "9" * 40) == [*kept, (6, "live")]


def test_history_is_bounded_in_messages(serve: Callable[..., Running]) -> None:
    demo = make_demo()
    server = serve(demo)
    base = f"http://{server.host}:{server.port}"
    total = CHAT_HISTORY_MESSAGES + 20
    with requests.Session() as session:
        for n in range(1, total + 1):
            assert session.post(f"{base}/chat", data=f"m{n}", timeout=5).status_code == 200
    # Id 1 is too old: only the last CHAT_HISTORY_MESSAGES are kept.
    events = _resume(server, demo, "1")
    replayed = events[:-1]
    assert len(replayed) == CHAT_HISTORY_MESSAGES
    assert replayed[0] == (total - CHAT_HISTORY_MESSAGES + 1, f"m{total - CHAT_HISTORY_MESSAGES + 1}")
    assert replayed[-1] == (total, f"m{total}")


def test_history_is_bounded_in_bytes(serve: Callable[..., Running]) -> None:
    demo = make_demo()
    server = serve(demo)
    base = f"http://{server.host}:{server.port}"
    size = 10_000
    count = 3 * CHAT_HISTORY_BYTES // size  # far more bytes than the history keeps
    assert count < CHAT_HISTORY_MESSAGES  # so that the byte bound is the one that bites
    with requests.Session() as session:
        for n in range(1, count + 1):
            body = str(n % 10) * size
            assert session.post(f"{base}/chat", data=body, timeout=5).status_code == 200
    events = _resume(server, demo, "0")
    replayed = events[:-1]
    frame_bytes = len(f"event: message\nid: {count}\ndata: \n\n") + size
    assert len(replayed) == CHAT_HISTORY_BYTES // frame_bytes
    assert [message_id for message_id, _ in replayed] == list(range(count - len(replayed) + 1, count + 1))
    assert all(data == str(message_id % 10) * size for message_id, data in replayed)
