"""The thread pool: blocking handlers run off the loop, over real loopback sockets."""

from __future__ import annotations

import gc
import json
import logging
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest

from reactor import App, Request, Response
from reactor.connection import Connection
from reactor.live import mount
from tests.conftest import Parsed, Running, connect, parse_responses, read_until_close, recv_response

Serve = Callable[..., Running]


def pool_app(gate: threading.Event, started: threading.Event) -> App:
    app = App()

    @app.get("/")
    def index(request: Request) -> str:
        return "Hello, World!"

    @app.get("/sleep", blocking=True)
    def sleep(request: Request) -> Response:
        time.sleep(float(request.query.get("s", "1")))
        return Response.text("slept\n", 201, headers=[("X-Handler", "sleep")])

    @app.get("/wait", blocking=True)
    def wait(request: Request) -> str:
        started.set()
        assert gate.wait(10)
        return "released\n"

    @app.get("/stream", blocking=True)
    def stream(request: Request) -> Iterator[bytes]:
        for _ in range(64):
            yield b"s" * 65536

    @app.get("/small", blocking=True)
    def small(request: Request) -> bytes:
        return b"m" * 32768

    @app.post("/count", blocking=True)
    def count(request: Request) -> str:
        return str(len(request.body))

    mount(app)
    return app


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker waiting


def test_a_blocking_route_does_not_delay_another_client(serve: Serve, gate: threading.Event) -> None:
    running = serve(pool_app(gate, threading.Event()))
    with connect(running.address) as slow:
        began = time.monotonic()
        slow.sendall(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)  # the handler is asleep in its thread now
        with connect(running.address) as quick:
            quick.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(quick).body == b"Hello, World!"
            quick_done = time.monotonic() - began
        response = recv_response(slow, timeout=10)
        slow_done = time.monotonic() - began
    # Its real status and headers, after the sleep.
    assert response.status == 201
    assert response.header("X-Handler") == "sleep"
    assert response.body == b"slept\n"
    assert slow_done >= 1.5
    assert quick_done < slow_done / 3, (quick_done, slow_done)


def test_past_the_queue_bound_the_answer_is_503_with_retry_after(
    serve: Serve, gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()
    running = serve(pool_app(gate, started), threads=1, thread_queue_count=1)
    first, second, third = (connect(running.address) for _ in range(3))
    try:
        first.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        assert started.wait(5)  # the one thread is busy
        second.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")  # queued
        time.sleep(0.2)
        third.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        refused = parse_responses(read_until_close(third))[0]
        assert refused.status == 503
        assert refused.header("Retry-After") == "1"
        assert refused.header("Connection") == "close"
        metrics = _get(running, "/_reactor/metrics").body.decode()
        assert "reactor_pool_busy 1\n" in metrics
        assert "reactor_pool_queued 1\n" in metrics
        assert "reactor_pool_rejected_total 1\n" in metrics
        gate.set()
        assert recv_response(first).body == b"released\n"
        assert recv_response(second).body == b"released\n"
    finally:
        for sock in (first, second, third):
            sock.close()
    assert any("the thread pool's queue is full" in r.getMessage() for r in caplog.records)
    metrics = _get(running, "/_reactor/metrics").body.decode()
    assert "reactor_pool_wait_seconds_count 2\n" in metrics
    assert "reactor_pool_completed_total 2\n" in metrics
    pool = json.loads(_get(running, "/_reactor/stats").body)["thread_pool"]
    assert pool["threads"] == 1
    assert pool["completed"] == 2
    assert pool["rejected"] == 1
    assert sum(pool["wait_counts"]) == 2


def test_a_client_that_leaves_while_its_handler_runs_is_freed(serve: Serve, gate: threading.Event) -> None:
    started = threading.Event()
    running = serve(pool_app(gate, started))
    refs: list[weakref.ref[Connection]] = []
    with connect(running.address) as sock:
        sock.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        assert started.wait(5)
        refs.extend(weakref.ref(c) for c in running.call(lambda: list(running.server.connections)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: a reset
    _until(lambda: not running.call(lambda: len(running.server.connections)))
    gate.set()  # the handler returns; its answer has nobody to go to
    _until(lambda: running.server.pool is not None and running.server.pool.completed == 1)
    running.call(lambda: None)  # the loop has run the dropped answer
    was = gc.isenabled()
    gc.disable()
    try:
        assert [ref() for ref in refs] == [None], "the connection outlived its client"
    finally:
        if was:
            gc.enable()
    with connect(running.address) as sock:  # and the server goes on
        sock.sendall(b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_response(sock).status == 201


def test_a_streamed_body_is_pulled_in_the_worker(serve: Serve, gate: threading.Event) -> None:
    running = serve(pool_app(gate, threading.Event()))
    with connect(running.address) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        sock.settimeout(5)
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            assert chunk
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body.count(b"s") == 64 * 65536


def test_one_hundred_slow_readers_do_not_exhaust_the_pool(serve: Serve, gate: threading.Event) -> None:
    running = serve(pool_app(gate, threading.Event()))
    readers = []
    try:
        for _ in range(100):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(running.address)
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")  # and never read
            readers.append(sock)
        time.sleep(0.3)
        began = time.monotonic()
        with connect(running.address) as sock:
            sock.sendall(b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(sock).status == 201
        assert time.monotonic() - began < 2.0
        # No thread is held by a reader that does not read. The worker leaves
        # the running set just after it hands its answer to the loop, so the
        # count may lag the response by a moment: wait for it, with a deadline.
        pool = running.server.pool
        assert pool is not None
        deadline = time.monotonic() + 5.0
        while pool.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.busy == 0
    finally:
        for sock in readers:
            sock.close()


def test_graceful_shutdown_lets_pool_work_finish(serve: Serve, gate: threading.Event) -> None:
    started = threading.Event()
    running = serve(pool_app(gate, started), shutdown_timeout_s=5)
    with connect(running.address) as sock:
        sock.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        assert started.wait(5)
        running.server.loop.call_soon_threadsafe(running.server.shutdown)
        time.sleep(0.3)
        assert running.thread.is_alive(), "the server stopped with a handler still running"
        gate.set()
        response = parse_responses(read_until_close(sock))[0]
    assert response.status == 200
    assert response.body == b"released\n"
    assert response.header("Connection") == "close"
    running.thread.join(5)
    assert not running.thread.is_alive()


def test_a_stuck_handler_is_reported_and_its_thread_kept(
    serve: Serve, gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reactor.error")
    started = threading.Event()
    running = serve(pool_app(gate, started), thread_stuck_s=0.2)
    with connect(running.address) as sock:
        sock.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        assert started.wait(5)
        _until(lambda: any("has run in the pool" in r.getMessage() for r in caplog.records), 5)
        gate.set()
        assert recv_response(sock).body == b"released\n"
    warning = next(r.getMessage() for r in caplog.records if "has run in the pool" in r.getMessage())
    assert warning.startswith("handler for GET /wait has run in the pool for ")
    assert "(1 of 4 busy)" in warning


def test_a_blocking_post_gets_its_whole_body(serve: Serve, gate: threading.Event) -> None:
    running = serve(pool_app(gate, threading.Event()))
    with connect(running.address) as sock:
        body = b"p" * 300000
        sock.sendall(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert recv_response(sock).body == b"300000"
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection goes on
        assert recv_response(sock).body == b"Hello, World!"


def _get(running: Running, path: str) -> Parsed:
    with connect(running.address) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        return recv_response(sock)


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def streaming_app(seen: list[int]) -> App:
    app = App()

    @app.post("/stream", stream=True, max_body=8 << 20)
    def upload(request: Request) -> str:
        total = 0
        for piece in request.stream():
            seen.append(len(piece))
            total += len(piece)
        return str(total)

    @app.post("/spool", stream=True)
    def spool(request: Request) -> str:
        with request.body_file(spool_bytes=65536) as file:
            rolled = bool(getattr(file, "_rolled", False))
            return f"{len(file.read())} {'on disk' if rolled else 'in memory'}"

    @app.post("/small", blocking=True, max_body=10)
    def small(request: Request) -> str:
        return request.text()

    return app


def test_request_stream_gives_the_body_as_it_arrives(serve: Serve) -> None:
    seen: list[int] = []
    running = serve(streaming_app(seen), max_body_bytes=64 << 20)
    with connect(running.address) as sock:
        sock.sendall(b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + b"a" * 1000)
        _until(lambda: sum(seen) == 1000)  # the handler has the first bytes before the rest is sent
        sock.sendall(b"a" * 199000)
        assert recv_response(sock).body == b"200000"
        chunked = b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        sock.sendall(b"POST /stream HTTP/1.1\r\nHost: t\r\n" + chunked)
        assert recv_response(sock).body == b"3"


def test_a_routes_max_body_is_its_own(serve: Serve) -> None:
    running = serve(streaming_app([]), max_body_bytes=64 << 20)
    refused = parse_responses(
        _exchange(running, b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (9 << 20))
    )[0]
    assert refused.status == 413
    assert refused.header("Connection") == "close"
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"c" * (1 << 20))
    with connect(running.address) as sock:  # a chunked body is counted as it comes
        sock.sendall(b"POST /stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(9):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed
        assert parse_responses(read_until_close(sock))[0].status == 413
    with connect(running.address) as sock:
        sock.sendall(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        assert recv_response(sock).body == b"hello"
        sock.sendall(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
        assert recv_response(sock).status == 413  # the body was all in: the connection may go on


def test_body_file_spools_a_large_body_to_disk(serve: Serve) -> None:
    running = serve(streaming_app([]), max_body_bytes=64 << 20)
    with connect(running.address) as sock:
        sock.sendall(b"POST /spool HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"s" * 100)
        assert recv_response(sock).body == b"100 in memory"
        body = b"S" * (1 << 20)
        sock.sendall(b"POST /spool HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert recv_response(sock).body == b"1048576 on disk"


def _exchange(running: Running, data: bytes) -> bytes:
    with connect(running.address) as sock:
        sock.sendall(data)
        return read_until_close(sock)


def test_a_stopped_server_with_pool_traffic_is_freed_by_reference_counting(gate: threading.Event) -> None:
    from reactor import Config, Server
    from reactor.wsgi import WSGIApp
    from tests.integration.test_lifecycle import _ours, gc_off

    def _read_whole(sock: socket.socket) -> None:
        sock.settimeout(10)
        data = b""
        while not (data.endswith(b"0\r\n\r\n") or data.endswith((b"hello", b"slept\n", b"3"))):
            chunk = sock.recv(1 << 20)
            assert chunk, data[-200:]
            data += chunk

    def hello(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        environ["wsgi.input"].read()  # type: ignore[attr-defined]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    gate.set()
    for make in (lambda: pool_app(gate, threading.Event()), lambda: WSGIApp(hello)):
        app = make()
        server = Server(app, Config(port=0))
        server.listen()
        thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False}, daemon=True)
        running = Running(server, thread)
        with gc_off():
            thread.start()
            for request in (
                b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n",
                b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n",
                b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            ):
                with connect(running.address) as sock:
                    sock.sendall(request)
                    read_until_close(sock, 10) if b"close" in request else _read_whole(sock)
            pool = server.pool
            assert pool is not None
            _until(lambda: pool.busy == 0 and pool.completed == 3)  # noqa: B023 (called at once)
            running.stop()
            refs = [weakref.ref(server), weakref.ref(server.loop), weakref.ref(app)]
            del server, running, app, thread
            assert [ref() for ref in refs] == [None, None, None]
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            ours = [obj for obj in gc.garbage if _ours(obj)]
            gc.set_debug(0)
            assert not ours, f"only a garbage collection would free: {ours[:10]}"


class _Owner:
    """A connection's side of a handoff that only counts what comes back."""

    def __init__(self) -> None:
        self.failed: list[BaseException] = []

    def pool_answer(self, handoff: object, response: object) -> None: ...

    def pool_failed(self, handoff: object, exc: BaseException) -> None:
        self.failed.append(exc)

    def pool_resume_reading(self, handoff: object) -> None: ...


def test_handoffs_submitted_in_one_pass_each_get_a_sleeping_worker_when_the_pass_ends() -> None:
    from reactor.loop import Loop
    from reactor.pool import Handoff, Pool

    loop = Loop()
    pool = Pool(threads=3, queue_count=8, stuck_s=30.0, loop=loop)
    owner = _Owner()

    def handoff(work: Callable[[Handoff], None]) -> Handoff:
        return Handoff(owner, loop, work, "GET /", 65536, 5.0, 5.0)

    release = threading.Event()
    running: list[int] = []
    try:
        # Three workers, started for three handoffs that none finishes before
        # all are in, then asleep.
        go = threading.Event()
        for _ in range(3):
            assert pool.submit(handoff(lambda h: go.wait(10) and None))
        go.set()
        _until(lambda: pool.completed == 3 and len(pool._sleeping) == 3)
        # Three more in one pass: none runs until the pass is over...

        def blocking(handoff: Handoff) -> None:
            running.append(1)
            release.wait(10)

        for _ in range(3):
            assert pool.submit(handoff(blocking))
        time.sleep(0.05)
        assert running == [] and pool.queued == 3
        # ...then each has a worker of its own, all three at once.
        loop.call_later(0.01, lambda: None)  # the pass's wait ends by itself
        loop.run_once()
        _until(lambda: len(running) == 3)
        assert pool.busy == 3 and pool.queued == 0
        release.set()
        _until(lambda: pool.completed == 6)
    finally:
        release.set()
        pool.close(5.0)
        loop.close()
