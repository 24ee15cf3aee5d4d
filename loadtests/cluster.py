#!/usr/bin/env python3
"""A cluster in a box: five hosts in network namespaces, nginx in front, Redis between, locust driving.

Usage (as root, from the repository root)::

    python3 loadtests/cluster.py                  # two locust runs of 30 s
    python3 loadtests/cluster.py --run-time 12    # the short version CI runs

It builds, on private addresses that exist only inside the namespaces it
makes (10.77.0.0/24; the host's own network is never touched)::

    PREFIX-locust 10.77.0.30   locust --master, 2 x locust --worker   ─┐
    PREFIX-lb     10.77.0.10   nginx :8080, upstream a and b           │
    PREFIX-a      10.77.0.11   reactor --workers 2 --broker redis://   ├─ bridge br0 in PREFIX-br
    PREFIX-b      10.77.0.12   reactor --workers 2 --broker redis://   │
    PREFIX-redis  10.77.0.20   redis-server :6379                     ─┘

Each host is a namespace joined to the bridge by a veth pair, created
straight into the two namespaces (``ip -n PREFIX-br link add ... peer ...
netns PREFIX-a``), so not even a device appears in the host's namespace.
Then, with the load running:

1. **spread**: each host's access log (one line per request, with the
   worker's pid) counts the requests nginx sent it;
2. **chat**: a subscriber of ``/events/chat`` on host B gets a message posted
   to host A, through Redis;
3. **SIGKILL**: one of host A's workers is killed mid-run, at a moment when
   it has requests in flight (client sockets open in ``/proc/PID/fd``: nginx
   opens one connection per request); locust's failures are counted (each
   user has one request in flight at most, so at most ``--users`` can fail),
   and the master's log says when the replacement was ready; a probe says
   when it first answered;
4. **SIGHUP**: host B's workers are replaced one at a time under a second
   locust run, which must have no failure at all.

nginx is configured to show failures, not hide them: ``proxy_next_upstream
off`` (a request whose upstream failed is not retried on the other host) and
``max_fails=0`` (a host is never taken out of the rotation); it opens a new
connection to reactor per request (no upstream ``keepalive``), so a draining
worker never races a request on a connection it is closing.

Every wait has a deadline, the whole run is bounded by ``--deadline``; every
process is ended by its pid, then any process still in one of the namespaces
(an nginx or reactor worker whose parent went first) by its pid, then every
namespace is deleted (which deletes its veth ends): in a ``finally``, which
SIGINT and SIGTERM reach too. Prints a summary and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
SUBNET = "10.77.0"
ADDRESSES = {
    "lb": f"{SUBNET}.10",
    "a": f"{SUBNET}.11",
    "b": f"{SUBNET}.12",
    "redis": f"{SUBNET}.20",
    "locust": f"{SUBNET}.30",
}
REACTOR_PORT = 8000
NGINX_PORT = 8080
REDIS_PORT = 6379
LOCUST_PATH = "/api/time"
# The worker's pid first, then the client reactor believed (nginx's
# X-Forwarded-For, trusted from the nginx host only), then the request line.
ACCESS_FORMAT = '%(p)s %(h)s "%(r)s" %(s)s'
ACCESS_LINE = re.compile(
    r'^<(\d+)> (\S+) "(\S+) (\S+) [^"]*" (\d{3})$'
)  # anchored, no nested repeats: linear
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")  # fixed widths: linear
CLONE_NEWNET = 0x40000000


def run(*argv: str) -> str:
    """Run a short command (``ip ...``); raise with its stderr if it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def netns_available() -> str | None:
    """None if this process can build the cluster, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    for tool in ("ip", "nginx", "redis-server"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: iproute2, nginx-light, redis-server)"
    probe = f"rx{os.getpid()}-probe"
    try:
        run("ip", "netns", "add", probe)
    except (RuntimeError, OSError) as error:
        return f"ip netns is unavailable: {error}"
    run("ip", "netns", "del", probe)
    return None


def socket_in(namespace: str) -> socket.socket:
    """A TCP socket that belongs to ``namespace``'s network stack.

    A socket keeps the network namespace it was created in. ``setns`` moves
    only the calling thread, so a short-lived thread enters the namespace,
    creates the socket and ends; this process stays where it was.
    """
    made: list[socket.socket | BaseException] = []

    def enter_and_create() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{namespace}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {namespace}")
            made.append(socket.socket())
        except BaseException as error:  # handed to the caller's thread
            made.append(error)

    thread = threading.Thread(target=enter_and_create)
    thread.start()
    thread.join()
    result = made[0]
    if isinstance(result, BaseException):
        raise result
    return result


def http(
    namespace: str, address: str, port: int, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One request on a new connection made from ``namespace``; (status, body)."""
    with socket_in(namespace) as sock:
        sock.settimeout(5)
        sock.connect((address, port))
        head = f"{method} {path} HTTP/1.1\r\nHost: cluster\r\nConnection: close\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), payload


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(step_s)


def children(pid: int) -> set[int]:
    """Live child pids of ``pid`` (zombies not counted), from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def log_time(line: str) -> float:
    """The wall-clock time of a reactor error-log line (``2026-12-02 01:04:16,300 INFO ...``)."""
    match = LOG_TIME.match(line)
    assert match, line
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


class Cluster:
    """The namespaces, the bridge, and the processes in them; :meth:`close` undoes all of it."""

    def __init__(self, prefix: str, workdir: Path) -> None:
        self.prefix = prefix
        self.workdir = workdir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def build(self) -> None:
        bridge = self.ns("br")
        self._add_namespace(bridge)
        run("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", bridge, "link", "set", "br0", "up")
        for host, address in ADDRESSES.items():
            namespace = self.ns(host)
            self._add_namespace(namespace)
            port = f"v-{host}"
            run(
                "ip",
                "-n",
                bridge,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                namespace,
            )
            run("ip", "-n", bridge, "link", "set", port, "master", "br0", "up")
            run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", namespace, "link", "set", "eth0", "up")
            run("ip", "-n", namespace, "link", "set", "lo", "up")

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)

    def spawn(self, host: str, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Run ``argv`` in ``host``'s namespace, stdout and stderr to ``log_name``.

        ``ip netns exec`` execs the command, so the pid is the command's own.
        """
        log = (self.workdir / log_name).open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *argv],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def close(self) -> list[str]:
        """End every process by pid, then any left in the namespaces, then delete them; what went wrong."""
        problems: list[str] = []
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                problems.append(f"pid {proc.pid} ignored SIGTERM: SIGKILL")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for namespace in self.namespaces:
            # Whatever is still inside is a child of one of ours (an nginx
            # worker, a reactor worker) that outlived its parent.
            try:
                left = [int(pid) for pid in run("ip", "netns", "pids", namespace).split()]
            except RuntimeError:
                left = []
            for pid in left:
                problems.append(f"pid {pid} still in {namespace}: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for namespace in reversed(self.namespaces):
            try:
                run("ip", "netns", "del", namespace)
            except RuntimeError as error:
                problems.append(str(error))
        self.namespaces.clear()
        for log in self._logs:
            log.close()
        return problems


def nginx_conf(workdir: Path) -> str:
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    temps = "\n".join(
        f"    {kind}_temp_path {temp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    a, b = ADDRESSES["a"], ADDRESSES["b"]
    return f"""\
worker_processes 1;
error_log {workdir}/nginx-error.log warn;
pid {workdir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temps}
    upstream reactor {{
        server {a}:{REACTOR_PORT} max_fails=0;
        server {b}:{REACTOR_PORT} max_fails=0;
    }}
    server {{
        listen {ADDRESSES["lb"]}:{NGINX_PORT};
        location / {{
            proxy_pass http://reactor;
            proxy_next_upstream off;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def start_services(cluster: Cluster) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    redis_host = ADDRESSES["redis"]
    redis = ["redis-server", "--bind", redis_host, "--port", str(REDIS_PORT), "--save", ""]
    redis += ["--appendonly", "no", "--protected-mode", "no", "--dir", str(cluster.workdir)]
    procs["redis"] = cluster.spawn("redis", redis, "redis.log")
    for host in ("a", "b"):
        reactor = [sys.executable, "-m", "reactor", "--host", ADDRESSES[host], "--port", str(REACTOR_PORT)]
        reactor += ["--workers", "2", "--broker", f"redis://{redis_host}:{REDIS_PORT}"]
        reactor += ["--forwarded-allow-ips", ADDRESSES["lb"], "--access-log-format", ACCESS_FORMAT]
        procs[host] = cluster.spawn(host, reactor, f"{host}.log")
    conf = cluster.workdir / "nginx.conf"
    conf.write_text(nginx_conf(cluster.workdir))
    procs["lb"] = cluster.spawn(
        "lb", ["nginx", "-p", str(cluster.workdir), "-c", str(conf), "-g", "daemon off;"], "nginx.log"
    )
    probe = cluster.ns("locust")
    for host in ("a", "b"):
        wait_for(
            f"host {host} serving",
            lambda host=host: http(probe, ADDRESSES[host], REACTOR_PORT, "GET", "/api/info")[0] == 200,  # type: ignore[misc]
            30,
        )
        wait_for(f"host {host}: two workers", lambda host=host: len(children(procs[host].pid)) == 2, 30)  # type: ignore[misc]
    wait_for(
        "nginx serving", lambda: http(probe, ADDRESSES["lb"], NGINX_PORT, "GET", "/api/time")[0] == 200, 30
    )
    return procs


def brokers_connected(
    cluster: Cluster, procs: dict[str, subprocess.Popen[bytes]], timeout_s: float = 30
) -> None:
    """Every worker of both hosts linked to Redis: /api/info, asked until each pid has said so."""
    probe = cluster.ns("locust")
    for host in ("a", "b"):
        master = procs[host]
        connected: set[int] = set()

        def all_connected(
            host: str = host, master: subprocess.Popen[bytes] = master, connected: set[int] = connected
        ) -> bool:
            status, body = http(probe, ADDRESSES[host], REACTOR_PORT, "GET", "/api/info")
            info = json.loads(body)
            if status == 200 and info.get("broker", {}).get("connected"):
                connected.add(info["pid"])
            return children(master.pid) <= connected

        wait_for(f"host {host}: every worker linked to Redis", all_connected, timeout_s, step_s=0.01)


def chat_across(cluster: Cluster) -> dict[str, Any]:
    """Subscribe on host B, post on host A; the time until B's subscriber has the message."""
    probe = cluster.ns("locust")
    text = f"hello from A to B {os.getpid()}"
    with socket_in(probe) as sub:
        sub.settimeout(10)
        sub.connect((ADDRESSES["b"], REACTOR_PORT))
        sub.sendall(b"GET /events/chat HTTP/1.1\r\nHost: cluster\r\n\r\n")
        seen = b""
        while b"\r\n\r\n" not in seen:
            seen += sub.recv(65536)
        assert seen.startswith(b"HTTP/1.1 200"), seen[:100]
        start = time.monotonic()
        status, reply = http(probe, ADDRESSES["a"], REACTOR_PORT, "POST", "/chat", text.encode())
        deadline = start + 10
        while text.encode() not in seen and time.monotonic() < deadline:
            seen += sub.recv(65536)
        received = text.encode() in seen
        return {
            "posted_to": "a",
            "subscribed_on": "b",
            "post_status": status,
            "post_reply": json.loads(reply),
            "received": received,
            "latency_ms": round((time.monotonic() - start) * 1000, 1) if received else None,
        }


class Locust:
    """One headless locust run: a ``--master`` and two ``--worker`` processes in the locust namespace."""

    def __init__(self, cluster: Cluster, name: str, users: int, run_time_s: int) -> None:
        self.prefix = cluster.workdir / f"locust-{name}"
        self.run_time_s = run_time_s
        base = [sys.executable, "-m", "locust", "-f", "loadtests/locustfiles/cluster.py"]
        master = [*base, "--master", "--headless", "--expect-workers", "2", "--master-bind-host", "127.0.0.1"]
        master += ["-u", str(users), "-r", str(users), "--run-time", f"{run_time_s}s", "--stop-timeout", "5"]
        master += ["--host", f"http://{ADDRESSES['lb']}:{NGINX_PORT}", "--csv", str(self.prefix)]
        self.master = cluster.spawn("locust", [*master, "--only-summary"], f"locust-{name}-master.log")
        self.workers = [
            cluster.spawn(
                "locust", [*base, "--worker", "--master-host", "127.0.0.1"], f"locust-{name}-worker{i}.log"
            )
            for i in range(2)
        ]

    def wait(self) -> dict[str, Any]:
        """Wait for the run to end; its totals from locust's CSV files."""
        self.master.wait(self.run_time_s + 60)
        for worker in self.workers:
            worker.wait(15)
        with open(f"{self.prefix}_stats.csv", newline="") as handle:
            [total] = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
        with open(f"{self.prefix}_failures.csv", newline="") as handle:
            failures = {row["Error"]: int(row["Occurrences"]) for row in csv.DictReader(handle)}
        return {
            "requests": int(total["Request Count"]),
            "failures": int(total["Failure Count"]),
            "failure_kinds": failures,
            "requests_per_s": round(float(total["Requests/s"]), 1),
            "p50_ms": float(total["50%"]),
            "p99_ms": float(total["99%"]),
        }


def access_counts(cluster: Cluster, host: str) -> Counter[int]:
    """Requests for LOCUST_PATH in ``host``'s access log, per worker pid; checks the client reactor saw."""
    counts: Counter[int] = Counter()
    for line in cluster.log(f"{host}.log").splitlines():
        match = ACCESS_LINE.match(line)
        if match and match.group(4) == LOCUST_PATH:
            pid, client = int(match.group(1)), match.group(2)
            # nginx's X-Forwarded-For, believed because nginx is the trusted peer.
            assert client == ADDRESSES["locust"], line
            counts[pid] += 1
    return counts


def load_started(cluster: Cluster, before: int) -> bool:
    return sum(access_counts(cluster, "a").values()) + sum(access_counts(cluster, "b").values()) > before + 50


def sockets(pid: int) -> int:
    """How many sockets ``pid`` has open (its listener, its wakeup pair, Redis, and its clients)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass  # closed meanwhile
    return count


def kill_a_worker(cluster: Cluster, procs: dict[str, subprocess.Popen[bytes]], idle: int) -> dict[str, Any]:
    """SIGKILL one of host A's workers while it has requests in flight.

    nginx opens a connection per request, so a client connection open in the
    worker is a request in flight (or one accepted and not yet read): the
    worker is killed the moment it has one or more, that is, more sockets
    than ``idle``, its count with no load. Returns how many it had, when the
    master had its replacement ready (from the log), and when that first
    answered (a probe).
    """
    master = procs["a"]
    before = children(master.pid)
    victim = min(before)
    probe = cluster.ns("locust")
    deadline = time.monotonic() + 5
    while (in_flight := sockets(victim) - idle) < 1 and time.monotonic() < deadline:
        pass
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    first_answer: float | None = None
    deadline = time.monotonic() + 10
    while first_answer is None and time.monotonic() < deadline:
        try:
            status, body = http(probe, ADDRESSES["a"], REACTOR_PORT, "GET", "/api/info")
        except OSError:
            continue
        if status == 200 and json.loads(body)["pid"] not in before:
            first_answer = time.time()
    wait_for(
        "the kill in host a's log", lambda: f"worker {victim} killed by SIGKILL" in cluster.log("a.log"), 10
    )
    log = cluster.log("a.log")
    lines = log.splitlines()
    [noticed] = [line for line in lines if f"worker {victim} killed by SIGKILL" in line]
    ready = [line for line in lines[lines.index(noticed) :] if re.search(r"worker \d+ ready$", line)]
    ready_at = log_time(ready[0]) if ready else None
    return {
        "victim": victim,
        "in_flight": in_flight,
        "noticed_s": round(log_time(noticed) - killed_at, 3),
        "ready_s": round(ready_at - killed_at, 3) if ready_at else None,
        "first_answer_s": round(first_answer - killed_at, 3) if first_answer else None,
        "log": [noticed, *ready[:1]],
        "workers_after": sorted(children(master.pid)),
    }


def reload_host(
    cluster: Cluster, procs: dict[str, subprocess.Popen[bytes]], timeout_s: float
) -> dict[str, Any]:
    """SIGHUP host B's master; wait until its old workers have all stopped and new ones serve."""
    master = procs["b"]
    old = children(master.pid)
    start = time.monotonic()
    os.kill(master.pid, signal.SIGHUP)

    def replaced() -> bool:
        log = cluster.log("b.log")
        now = children(master.pid)
        return all(f"worker {pid} stopped" in log for pid in old) and len(now) == 2 and not (now & old)

    wait_for("host b's rolling reload", replaced, timeout_s)
    return {
        "old": sorted(old),
        "new": sorted(children(master.pid)),
        "seconds": round(time.monotonic() - start, 2),
    }


def scenario(cluster: Cluster, users: int, run_time_s: int) -> dict[str, Any]:
    result: dict[str, Any] = {"users": users, "run_time_s": run_time_s}
    cluster.build()
    procs = start_services(cluster)
    brokers_connected(cluster, procs)
    # The sockets a worker holds with no load, to tell when it has requests in flight.
    idle = min(sockets(pid) for pid in children(procs["a"].pid))
    result["chat"] = chat = chat_across(cluster)
    print(f"chat: posted to A, B's subscriber had it after {chat['latency_ms']} ms", flush=True)

    # Run 1: spread over the hosts, and a worker of host A killed a third of the way in.
    run1 = Locust(cluster, "kill", users, run_time_s)
    wait_for("load through nginx", lambda: load_started(cluster, 0), 60, step_s=0.1)
    time.sleep(run_time_s / 3)
    result["kill"] = kill = kill_a_worker(cluster, procs, idle)
    result["kill"]["locust"] = stats1 = run1.wait()
    counts = {host: access_counts(cluster, host) for host in ("a", "b")}
    result["spread"] = {host: sum(c.values()) for host, c in counts.items()}
    result["spread_per_worker"] = {host: dict(c) for host, c in counts.items()}
    print(
        f"run 1: {stats1['requests']} requests ({stats1['requests_per_s']}/s, p50 {stats1['p50_ms']} ms, "
        f"p99 {stats1['p99_ms']} ms); host a {result['spread']['a']}, host b {result['spread']['b']}",
        flush=True,
    )
    print(
        f"SIGKILL of worker {kill['victim']} on host a with {kill['in_flight']} requests in flight: "
        f"{stats1['failures']} failed {stats1['failure_kinds']}; master noticed after "
        f"{kill['noticed_s']} s, replacement ready after {kill['ready_s']} s, first answer after "
        f"{kill['first_answer_s']} s",
        flush=True,
    )

    # Run 2: a rolling SIGHUP of host B a quarter of the way in, done before the run ends.
    before = sum(result["spread"].values())
    run2 = Locust(cluster, "reload", users, run_time_s)
    wait_for("load through nginx", lambda: load_started(cluster, before), 60, step_s=0.1)
    time.sleep(run_time_s / 4)
    result["reload"] = reload = reload_host(cluster, procs, timeout_s=run_time_s / 2)
    result["reload"]["locust"] = stats2 = run2.wait()
    served_by_new = {pid: access_counts(cluster, "b")[pid] for pid in reload["new"]}
    result["reload"]["served_by_new"] = served_by_new
    print(
        f"run 2: {stats2['requests']} requests, {stats2['failures']} failed; host b's workers "
        f"{reload['old']} replaced by {reload['new']} in {reload['seconds']} s "
        f"(new ones served {served_by_new})",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Two reactor hosts, nginx, Redis and locust in network namespaces."
    )
    parser.add_argument("--run-time", type=int, default=30, help="seconds of each of the two locust runs")
    parser.add_argument(
        "--users", type=int, default=20, help="locust users (each with one request in flight)"
    )
    parser.add_argument("--prefix", default=f"rx{os.getpid()}", help="namespace name prefix (unique per run)")
    parser.add_argument("--deadline", type=int, default=600, help="end everything after this many seconds")
    parser.add_argument("--json", type=Path, help="where to write the figures (default loadtests/results/)")
    parser.add_argument("--keep-logs", type=Path, help="copy the hosts' logs to this directory")
    args = parser.parse_args(argv)
    why_not = netns_available()
    if why_not:
        print(f"cannot build the cluster: {why_not}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"{signal.Signals(signum).name}: cleaning up")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(args.deadline)
    workdir = Path(tempfile.mkdtemp(prefix=f"{args.prefix}-"))
    cluster = Cluster(args.prefix, workdir)
    status = 1
    try:
        result = scenario(cluster, args.users, args.run_time)
        status = 0
    finally:
        signal.alarm(0)
        problems = cluster.close()
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
        left = [name for name in run("ip", "netns", "list").split() if name.startswith(f"{args.prefix}-")]
        if left:
            print(f"cleanup: namespaces left: {left}", file=sys.stderr)
            status = 1
        if args.keep_logs:
            shutil.copytree(workdir, args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    result["cleanup_problems"] = problems
    out = args.json or RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
