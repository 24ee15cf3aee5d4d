"""``--broker``: the demo's chat across processes through a real ``redis-server``.

Each test starts its own ``redis-server`` on a free loopback port (no disk,
no persistence) and stops it by pid; without Debian's redis-server they skip.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.serverproc import start_reactor, stop
from reactor.broker import Broker
from reactor.loop import Loop
from reactor.streams import Broadcast
from tests.conftest import complete_chunks

Address = tuple[str, int]

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="needs Debian's redis-server (apt-get install redis-server)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Redis:
    """A ``redis-server`` child on ``port``: started, killed and restarted by pid."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16) == b"+PONG\r\n":
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis(free_port())
    server.start()
    yield server
    server.kill(signal.SIGTERM)


class Subscriber:
    """A raw-socket ``GET /events/chat`` that collects the chat's message texts."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.sock.sendall(b"GET /events/chat HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        self.raw = b""
        while b"\r\n\r\n" not in self.raw:
            self._read(time.monotonic() + 5)
        head = self.raw.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 200 "), head  # subscribed: the head comes after add()

    def _read(self, deadline: float) -> None:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return
        assert chunk, "the server closed the event stream"
        self.raw += chunk

    def messages(self) -> list[str]:
        body = complete_chunks(self.raw.partition(b"\r\n\r\n")[2]).decode()
        texts = []
        for block in body.split("\n\n")[:-1]:
            lines = block.split("\n")
            if "event: message" in lines:
                texts.append("\n".join(line[6:] for line in lines if line.startswith("data: ")))
        return texts

    def wait_for(self, text: str, timeout_s: float = 10.0) -> list[str]:
        """Read until ``text`` has arrived; returns every message so far."""
        deadline = time.monotonic() + timeout_s
        while text not in self.messages():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not arrive; got {self.messages()}")
            self._read(deadline)
        return self.messages()

    def close(self) -> None:
        self.sock.close()


def http(address: tuple[str, int], method: str, path: str, body: bytes = b"") -> tuple[int, Any, float]:
    """One request on a new connection: (status, JSON body, seconds taken)."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(payload), time.monotonic() - started


def broker_info(address: tuple[str, int]) -> dict[str, Any]:
    info: dict[str, Any] = http(address, "GET", "/api/info")[1]["broker"]
    return info


def wait_connected(address: tuple[str, int], connects: int = 2, timeout_s: float = 15.0) -> dict[str, Any]:
    """Wait until both links are up, subscribed, and have connected ``connects`` times in all."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = broker_info(address)
        if info["connected"] and info["connects"] >= connects:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker did not connect: {info}")
        time.sleep(0.05)


@pytest.fixture
def two_servers(redis: Redis, tmp_path: Path) -> Iterator[tuple[Address, Address, list[Path]]]:
    """Servers A and B, each ``python -m reactor --broker`` on the test's Redis."""
    procs, addresses, logs = [], [], []
    try:
        for name in "ab":
            log = tmp_path / f"{name}.log"
            with log.open("w") as stderr:
                proc, address = start_reactor("--broker", redis.url, stderr=stderr)
            procs.append(proc)
            addresses.append(address)
            logs.append(log)
        for address in addresses:
            wait_connected(address)
        yield addresses[0], addresses[1], logs
    finally:
        for proc in procs:
            stop(proc)
    # SIGTERM: a graceful shutdown, then the CLI closes the demo's broker; exit 0.
    assert [proc.returncode for proc in procs] == [0, 0]
    for log in logs:
        assert "Traceback" not in log.read_text()


def test_a_message_posted_to_one_server_reaches_the_other_exactly_once(
    two_servers: tuple[Address, Address, list[Path]],
) -> None:
    a, b, _ = two_servers
    on_a, on_b = Subscriber(a), Subscriber(b)
    try:
        status, reply, _ = http(b, "POST", "/chat", b"hello from B")
        assert status == 200
        assert reply["broker"] == "sent" and reply["delivered"] == 1  # B's own subscriber
        on_a.wait_for("hello from B")
        status, reply, _ = http(a, "POST", "/chat", b"and from A, line one\nline two")
        assert status == 200 and reply["broker"] == "sent"
        on_b.wait_for("and from A, line one\nline two")
        # Each wait above let Redis deliver a message to both subscribers (and
        # the echo to its own publisher) before the next post, so the order is
        # fixed, and a copy not ignored would have arrived before the marker
        # (Redis keeps the order of a channel on each connection).
        http(b, "POST", "/chat", b"marker")
        expected = ["hello from B", "and from A, line one\nline two", "marker"]
        assert on_a.wait_for("marker") == expected
        assert on_b.wait_for("marker") == expected
        # Each server ignored its own echo from Redis, and got the other's
        # (B's echo of the marker may still be on its way: wait for it).
        deadline = time.monotonic() + 5
        while broker_info(b)["echoes"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        info_a, info_b = broker_info(a), broker_info(b)
        assert (info_a["echoes"], info_a["received"]) == (1, 2)
        assert (info_b["echoes"], info_b["received"]) == (2, 1)
        assert on_a.messages() == on_b.messages() == expected  # nothing more came meanwhile
    finally:
        on_a.close()
        on_b.close()


def test_servers_reconnect_and_resubscribe_after_redis_restarts(
    redis: Redis, two_servers: tuple[Address, Address, list[Path]]
) -> None:
    a, b, logs = two_servers
    on_a, on_b = Subscriber(a), Subscriber(b)
    try:
        http(b, "POST", "/chat", b"before")
        on_a.wait_for("before")
        redis.kill()
        deadline = time.monotonic() + 10
        while broker_info(b)["publisher"] == "ready" and time.monotonic() < deadline:
            time.sleep(0.02)

        # Redis is down: a post is accepted at once (this server's subscribers
        # get it; the broker queues it), and other requests are served promptly.
        status, reply, took = http(b, "POST", "/chat", b"while down")
        assert status == 200 and reply["broker"] == "queued", reply
        assert took < 1.0, f"a post took {took:.2f}s while Redis was down"
        assert on_b.wait_for("while down", timeout_s=2)[-1] == "while down"
        slowest = 0.0
        for _ in range(20):
            for address in (a, b):
                status, _, took = http(address, "GET", "/api/time")
                assert status == 200
                slowest = max(slowest, took)
        assert slowest < 1.0, f"a request took {slowest:.2f}s while Redis was down"
        assert broker_info(b)["queued"] == 1

        redis.start()  # the same port
        for address in (a, b):
            info = wait_connected(address, connects=4)
            assert info["subscribed"] == ["reactor:chat"]
        assert broker_info(b)["queued"] == 0
        http(b, "POST", "/chat", b"after")
        got = on_a.wait_for("after")
        assert got.count("after") == 1 and got.count("before") == 1
        # The queued message was published when B came back; whether it reached A
        # depends on whether A had resubscribed by then (pub/sub is at most once).
        assert got.count("while down") <= 1
        assert got[0] == "before" and got[-1] == "after"
    finally:
        on_a.close()
        on_b.close()
    for log in logs:
        text = log.read_text()
        # "Redis closed the connection", or a reset: the kernel closed Redis's sockets.
        assert re.search(r"WARNING broker: subscriber: .*; retrying in \d\.\d\ds", text), text
        assert text.count("broker: subscriber connected to 127.0.0.1") >= 2


# -- the broker alone, on a loop in this thread ------------------------------------


def run_until(loop: Loop, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        loop.call_later(0.02, lambda: None)  # run_once waits no longer than this
        loop.run_once()


def test_a_reply_over_the_limit_drops_the_connection_and_it_recovers(redis: Redis) -> None:
    loop = Loop()
    sender = Broker(loop, redis.url)
    small = Broker(loop, redis.url, max_reply_bytes=5000)
    got: list[bytes] = []
    small.subscribe("c", got.append)
    sender.start()
    small.start()
    try:
        run_until(loop, lambda: sender.connected and small.connected)
        assert sender.publish("c", b"x" * 6000)  # fits the sender's limit, not the receiver's
        run_until(loop, lambda: small.status()["subscriber"] != "ready")
        run_until(loop, lambda: small.connected)
        assert small.status()["connects"] == 3  # the subscriber connected again, and resubscribed
        assert sender.publish("c", b"small")
        run_until(loop, lambda: got == [b"small"])
        assert not small.publish("c", b"y" * 1000)  # over its own message limit: refused
        assert small.too_large == 1
    finally:
        sender.close()
        small.close()
        loop.close()


def test_the_queue_is_bounded_while_redis_is_down() -> None:
    port = free_port()  # nothing listens there
    loop = Loop()
    broker = Broker(loop, f"redis://127.0.0.1:{port}", max_queue_messages=5, backoff_min_s=0.05)
    broker.start()
    try:
        run_until(loop, lambda: broker.status()["publisher"] == "down" and broker._publisher.attempts >= 2)
        started = time.monotonic()
        for n in range(8):
            assert broker.publish("c", b"message %d" % n)
        assert time.monotonic() - started < 0.5
        assert broker.status()["queued"] == 5 and broker.dropped == 3
        assert [data for _, data in broker._queue] == [b"message %d" % n for n in range(3, 8)]
        later = Redis(port)
        later.start()
        try:
            run_until(loop, lambda: broker.connected and broker.published == 5)
            assert broker.status()["queued"] == 0
        finally:
            later.kill(signal.SIGTERM)
    finally:
        broker.close()
        loop.close()


def _use_and_close_a_broker(url: str) -> list[int]:
    """Link a broadcast through a broker, publish, close; returns the sockets' fds."""
    loop = Loop()
    chat = Broadcast()
    broker = Broker(loop, url)
    chat.link(broker, "c")
    broker.start()
    run_until(loop, lambda: broker.connected)
    chat.publish(b"hello")
    run_until(loop, lambda: broker.echoes == 1)
    fds = [link._sock.fileno() for link in (broker._publisher, broker._subscriber) if link._sock]
    assert len(fds) == 2
    broker.close()
    loop.close()
    return fds


def test_a_closed_broker_is_freed_by_reference_counting(redis: Redis) -> None:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        fds = _use_and_close_a_broker(redis.url)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [obj for obj in gc.garbage if type(obj).__module__.startswith("reactor")]
        assert not ours, f"only a garbage collection would free: {ours[:10]}"
        for fd in fds:  # both Redis sockets are closed, not left to a finaliser
            with pytest.raises(OSError):
                os.fstat(fd)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def test_a_peer_that_never_replies_is_dropped_at_the_reply_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """Every wait has a deadline: a silent "Redis" (it accepts, reads, says nothing) is left and retried."""
    caplog.set_level(logging.DEBUG, "reactor.error")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        loop = Loop()
        broker = Broker(
            loop, f"redis://127.0.0.1:{listener.getsockname()[1]}", reply_timeout_s=0.3, backoff_min_s=0.05
        )
        broker.subscribe("c", lambda data: None)
        broker.start()
        accepted: list[socket.socket] = []

        def accept() -> bool:
            try:
                accepted.append(listener.accept()[0])
            except BlockingIOError:
                pass
            return len(accepted) >= 6  # two links, each connected three times

        started = time.monotonic()
        try:
            run_until(loop, accept)
            took = time.monotonic() - started
            assert 0.6 <= took < 5, took  # two reply deadlines passed
            assert broker._subscriber.connects >= 2 and not broker.connected
            asked = []
            for sock in accepted:
                sock.setblocking(False)
                try:
                    asked.append(sock.recv(100))
                except BlockingIOError:
                    pass  # already read
            subscribe = b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"
            assert any(data.startswith(b"*1\r\n$4\r\nPING\r\n") for data in asked), asked
            assert any(data.endswith(subscribe) for data in asked), asked  # asked, never answered
            # A link that connects but never gets a reply is not a success: the backoff grows.
            assert broker._subscriber.attempts >= 2
            messages = [record.getMessage() for record in caplog.records]
            assert any(m.startswith("broker: subscriber: no reply in 0.3s; retrying in") for m in messages)
        finally:
            broker.close()
            loop.close()
            for sock in accepted:
                sock.close()
