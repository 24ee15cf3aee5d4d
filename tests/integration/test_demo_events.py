"""The demo's Server-Sent Events: one shared clock timer, and a broadcast."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from reactor.demo import make_demo
from tests.conftest import Running


def test_clock_reaches_every_subscriber_from_one_timer(serve: Callable[..., Running]) -> None:
    demo = make_demo()
    server = serve(demo)
    url = f"http://{server.host}:{server.port}/events/clock"
    with (
        requests.get(url, stream=True, timeout=5) as first,
        requests.get(url, stream=True, timeout=5) as second,
    ):
        a, b = first.iter_lines(decode_unicode=True), second.iter_lines(decode_unicode=True)
        event_a = [next(a) for _ in range(4)]
        event_b = [next(b) for _ in range(4)]
        assert event_a[0] == event_b[0] == "event: time"
        assert event_a[2].startswith("data: ") and event_a[3] == ""
        assert server.call(lambda: len(demo.clock)) == 2
        # Two subscribers, one timer.
        assert server.call(lambda: demo.clock.ticking)
    deadline = time.monotonic() + 5
    while server.call(lambda: len(demo.clock)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.call(lambda: len(demo.clock)) == 0
    assert not server.call(lambda: demo.clock.ticking)


def test_posted_messages_reach_every_chat_subscriber(serve: Callable[..., Running]) -> None:
    demo = make_demo()
    server = serve(demo)
    base = f"http://{server.host}:{server.port}"
    with (
        requests.get(f"{base}/events/chat", stream=True, timeout=5) as one,
        requests.get(f"{base}/events/chat", stream=True, timeout=5) as two,
    ):
        deadline = time.monotonic() + 5
        while server.call(lambda: len(demo.chat)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        reply = requests.post(f"{base}/chat", data="line one\nline two", timeout=5).json()
        assert reply == {"id": 1, "delivered": 2}
        for response in (one, two):
            lines = response.iter_lines(decode_unicode=True)
            assert [next(lines) for _ in range(5)] == [
                "event: message",
                "id: 1",
                "data: line one",
                "data: line two",
                "",
            ]
