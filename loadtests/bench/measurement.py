"""Readings from ``/proc``: a process's CPU time, its RSS, the port it listens on, the machine's load.

One helper for each, for every tool in ``loadtests/`` (the benchmark, its
static-file part, ``loadtests/idle.py``). Linux only; standard library only.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path

from loadtests.bench import progress

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Before each measured run, wait (at most --quiet-wait s) until the whole
# machine is at most this busy, in percent of one core, over one second.
QUIET_BUSY_PERCENT = 10.0
# The state of a listening socket in /proc/net/tcp (TCP_LISTEN, in hex).
_LISTEN = "0A"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """The PIDs of ``pid``'s children, their children, and so on."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of ``pid``, its reaped children and its live descendants."""
    fields = _stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(f"process {pid} is gone")
    # Fields 14-17: utime, stime, cutime, cstime (indices 11-14 from field 3).
    user = int(fields[11]) + int(fields[13])
    system = int(fields[12]) + int(fields[14])
    for child in descendants(pid):
        child_fields = _stat_fields(child)
        if child_fields is not None:
            user += int(child_fields[11])
            system += int(child_fields[12])
    return user, system


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and its descendants so far (see :func:`cpu_ticks`)."""
    user, system = cpu_ticks(pid)
    return (user + system) / CLK_TCK


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB (``VmRSS`` of /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    raise ProcessLookupError(f"process {pid} is gone (or is a zombie, with no RSS)")


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` and all its live descendants (gunicorn's worker, say), in KiB."""
    total = 0
    for member in (pid, *descendants(pid)):
        try:
            total += rss_kib(member)
        except ProcessLookupError:
            pass  # exited meanwhile
    return total


def listening_ports(pid: int) -> set[int]:
    """The TCP ports ``pid`` has a listening socket on, from /proc.

    Its file descriptors name their sockets by inode (``socket:[INODE]``);
    /proc/PID/net/tcp and tcp6 list every socket of its network namespace with
    its state and inode. A server forked from ``pid`` that inherited the socket
    (gunicorn's worker) does not matter: the parent holds it too.
    """
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(pid: int, exited: Callable[[], bool], timeout_s: float) -> int:
    """The port ``pid`` listens on, once it does: a server that bound port 0 says which it got.

    Raises RuntimeError if ``exited()`` turns true first, or after ``timeout_s``,
    or if the process listens on more than one port (which would be a guess).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        ports = listening_ports(pid)
        if len(ports) == 1:
            return ports.pop()
        if len(ports) > 1:
            raise RuntimeError(f"process {pid} listens on several ports: {sorted(ports)}")
        if exited():
            raise RuntimeError(f"process {pid} exited before it listened")
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not listen within {timeout_s:.0f} s")
        time.sleep(0.05)


def probe_free_port(host: str) -> int:
    """A TCP port on ``host`` that is free now, and may not be a moment later.

    Only for a server that cannot bind port 0 (nginx's ``listen`` refuses it);
    whoever uses it checks with :func:`wait_listening` that the server got it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy, fields[7]


def wait_quiet(timeout_s: float, busy_limit_percent: float = QUIET_BUSY_PERCENT) -> float:
    """Wait until the machine is idle for a second (others share it); returns the seconds waited.

    Between runs the server is idle and wrk is not running, so any busy CPU is
    someone else's. Gives up after ``timeout_s`` and measures anyway.
    """
    start = time.monotonic()
    while True:
        busy_before, _ = machine_ticks()
        time.sleep(1.0)
        busy = (machine_ticks()[0] - busy_before) / CLK_TCK * 100.0
        waited = time.monotonic() - start
        if busy <= busy_limit_percent or waited >= timeout_s:
            if waited > 1.5:
                progress(f"waited {waited:.0f} s for the machine to go quiet (now {busy:.0f}% busy)")
            return waited


def children_cpu_s() -> float:
    """User+system seconds of this process's reaped children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
