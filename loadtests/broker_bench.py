"""What the broker costs: the RESP codec, messages through Redis, and a chat hop between processes.

    python -m loadtests.broker_bench [--messages N] [--posts N]

Starts its own ``redis-server`` on a free loopback port (and stops it), and
for the last part two ``python -m reactor --broker`` processes. Prints one
line per figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time

from loadtests.serverproc import start_reactor, stop
from reactor.broker import Broker, RespParser, encode_command
from reactor.loop import Loop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(port: int) -> subprocess.Popen[bytes]:
    redis = shutil.which("redis-server")
    if redis is None:
        raise SystemExit("needs redis-server (Debian: apt-get install redis-server)")
    proc = subprocess.Popen(
        [redis, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def codec(messages: int) -> None:
    reply = b"*3\r\n$7\r\nmessage\r\n$12\r\nreactor:chat\r\n$116\r\n" + b"x" * 116 + b"\r\n"
    data = reply * messages
    best = float("inf")
    for _ in range(3):
        parser = RespParser(max_reply_bytes=1 << 30)
        started = time.perf_counter()
        for i in range(0, len(data), 65536):
            parser.feed(data[i : i + 65536])
        best = min(best, time.perf_counter() - started)
    each_us = best / messages * 1e6
    print(f"codec: parse {messages} pub/sub messages of 116 B in 64 KiB reads: {each_us:.2f} us each")
    started = time.perf_counter()
    for _ in range(messages):
        encode_command("PUBLISH", b"reactor:chat", b"x" * 116)
    took = time.perf_counter() - started
    print(f"codec: encode a PUBLISH of 116 B: {took / messages * 1e6:.2f} us each")


def through_redis(url: str, messages: int) -> None:
    loop = Loop()
    sender, receiver = Broker(loop, url), Broker(loop, url)
    got = [0]

    def count(data: bytes) -> None:
        got[0] += 1

    receiver.subscribe("bench", count)
    sender.start()
    receiver.start()
    while not (sender.connected and receiver.connected):
        loop.call_later(0.01, lambda: None)
        loop.run_once()
    payload = b"x" * 100
    cpu, wall = time.process_time(), time.perf_counter()
    sent = 0
    while got[0] < messages:
        # 100 at a time, as a busy server would publish between passes.
        while sent < messages and sent - got[0] < 1000:
            for _ in range(100):
                sender.publish("bench", payload)
            sent += 100
        loop.call_later(0.01, lambda: None)
        loop.run_once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"through Redis, one process publishing and receiving: {messages} messages of 100 B in "
        f"{wall:.2f}s ({messages / wall:.0f}/s), {cpu / messages * 1e6:.1f} us of our CPU each "
        f"(publish + receive); dropped {sender.dropped}"
    )
    sender.close()
    receiver.close()
    loop.close()


def chat_hop(url: str, posts: int) -> None:
    a, address_a = start_reactor("--broker", url, "--no-access-log")
    b, address_b = start_reactor("--broker", url, "--no-access-log")
    try:
        time.sleep(1.0)  # both brokers connect
        for label, post_to in (("A itself", address_a), ("B, relayed by Redis", address_b)):
            sub = socket.create_connection(address_a, timeout=5)
            sub.sendall(b"GET /events/chat HTTP/1.1\r\nHost: x\r\n\r\n")
            sub.recv(65536)  # the head: subscribed
            post = socket.create_connection(post_to, timeout=5)
            times = []
            for n in range(posts):
                body = b"m%d" % n
                started = time.perf_counter()
                post.sendall(
                    b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                seen = b""
                while b"data: " + body + b"\n" not in seen:
                    seen += sub.recv(65536)
                times.append(time.perf_counter() - started)
                post.recv(65536)  # the POST's response
            times.sort()
            print(
                f"chat, POST to {label}, until the SSE subscriber on A has it: median "
                f"{statistics.median(times) * 1e3:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1e3:.2f} ms "
                f"({posts} posts, one at a time)"
            )
            post.close()
            sub.close()
    finally:
        stop(a)
        stop(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--posts", type=int, default=300)
    args = parser.parse_args()
    codec(args.messages)
    port = free_port()
    redis = start_redis(port)
    try:
        url = f"redis://127.0.0.1:{port}"
        through_redis(url, args.messages)
        chat_hop(url, args.posts)
    finally:
        os.kill(redis.pid, signal.SIGTERM)
        redis.wait()


if __name__ == "__main__":
    main()
