"""Measure reactor against peer servers with wrk, in one command; write the results and the docs page.

Usage (from the repository's root; paths are relative to it)::

    python3 -m loadtests.bench                      # everything: 3 rounds of 10 s per workload
    python3 -m loadtests.bench --quick              # smoke: reactor and uvicorn-uvloop, 1 round of 2 s
    python3 -m loadtests.bench --servers reactor,aiohttp --workloads keepalive,idle
    python3 -m loadtests.bench --report loadtests/results/bench-X.json   # re-write docs/benchmarks.md
    python3 -m loadtests.bench.static               # only the static file, reactor against nginx

One module a job:

* :mod:`~loadtests.bench.servers`: how each server is started (and the peers'
  virtualenv), stopped, and asked whether it answers;
* :mod:`~loadtests.bench.wrk`: the workloads, running wrk and parsing what it prints;
* :mod:`~loadtests.bench.measurement`: readings from ``/proc``: CPU time, RSS,
  the port a process listens on, how busy the machine is (also used by
  ``loadtests/idle.py``);
* :mod:`~loadtests.bench.rounds`: the interleaved rounds, one measurement per
  (server, workload);
* :mod:`~loadtests.bench.idle` and :mod:`~loadtests.bench.static`: the two
  workloads that are not one wrk run against every server;
* :mod:`~loadtests.bench.report`: the JSON results, medians and ratios;
* :mod:`~loadtests.bench.page`: ``docs/benchmarks.md`` and its charts;
* :mod:`~loadtests.bench.__main__`: the command line.

Servers (:data:`SERVERS`): reactor, and as peers the stdlib ``ThreadingHTTPServer``
(HTTP/1.1), waitress, gunicorn's sync worker, tornado, aiohttp, uvicorn with
h11 and with uvloop+httptools, and twisted.web; their apps are in
``loadtests/peers/``. Every server is one process pinned to core 0; wrk to core 1.

Workloads: ``keepalive``, ``close`` (``Connection: close``), ``pipelined`` (16
GETs per batch), ``post-1k`` (:data:`WORKLOADS`, wrk against every server),
``static`` (a 256 MiB file, reactor ``--static`` against nginx, see
:mod:`~loadtests.bench.static`) and ``idle`` (server RSS per idle keep-alive
connection, N of them per server).

What one run does
-----------------
For each round, each server is started in turn on 127.0.0.1, pinned to core
0 (``taskset -c 0``). It binds port 0, so that the kernel gives it a free port
(no probe that another process could race), and the port it got is read from
``/proc`` (the listening socket among the process's file descriptors). It is
checked: every selected workload's
request must get the expected answer. Then, for each workload, wrk (pinned to
core 1) warms the server up for :data:`WARMUP_S` seconds and measures it for
``--duration`` seconds. The server is then stopped by its PID (SIGTERM, then
SIGKILL after :data:`STOP_TIMEOUT_S`). Rounds alternate the order of the
servers so that a drift of the machine favours none of them. Medians over the
rounds are reported. A server that fails to install, start or answer is left
out (with the reason in the results) and the run goes on with the others.

Figures per (server, workload)
------------------------------
* requests/s, and p50 and p99 latency, from ``wrk --latency`` (for pipelined
  GETs wrk counts every answer, but its latencies are per batch and skewed:
  see :data:`NO_LATENCY_WORKLOADS`);
* server CPU per request: user+system CPU time of the server process and its
  children (``/proc/PID/stat`` before and after the wrk run, in clock ticks of
  ``SC_CLK_TCK``) divided by the requests wrk completed;
* server CPU utilisation: that CPU time over the wall time of the run (100 %
  means the server's core was saturated, so requests/s is CPU-bound);
* other CPU: busy CPU on the machine that is neither the server's nor wrk's.

A shared machine
----------------
Others may use the machine (test suites, builds) while a run lasts minutes.
Before each warm-up the script waits (``--quiet-wait`` s at most) until the
machine has been idle for a second; a measurement during which others used
more than ``--max-other`` % of a core is redone (``--retries`` times at most,
keeping the least disturbed one; the others stay in the JSON as
``discarded``). CPU per request is the steadier figure under such noise;
requests/s suffers first.

The servers run from a copy of ``reactor/`` and ``loadtests/`` taken at the
start (``--no-snapshot``: from the work tree; ``--src DIR``: from another
checkout, e.g. a ``git worktree`` of an older commit, to compare two
versions), so edits made meanwhile do not mix two versions in one table; a
hash of the measured ``reactor/`` sources is in the report.

Output: progress lines, then a markdown table of medians on stdout; every raw
run and the medians in a JSON file (``loadtests/results/bench-<timestamp>.json``
unless ``--out`` says otherwise); and, unless ``--no-docs`` (or ``--quick``),
``docs/benchmarks.md`` with PNG charts in ``docs/img/``, drawn with matplotlib
by the peers' virtualenv's python (reactor's own runtime stays the standard
library). ``--report JSON`` re-writes the page and charts from a results file.

The peers run from a private virtualenv (``--venv``, by default
``loadtests/.venv-peers``) that the command creates and fills with pip, by
package name, when it lacks them. Adding a server or a workload is one entry
in :data:`~loadtests.bench.servers.SERVERS` or :data:`~loadtests.bench.wrk.WORKLOADS`.

Every process the command starts is stopped by its PID before it exits; all
traffic goes to 127.0.0.0/8; every wrk run and every wait has a time limit.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"
RESULTS = LOADTESTS / "results"

HOST = "127.0.0.1"
SERVER_CPU = "0"  # taskset -c for the server under test
CLIENT_CPU = "1"  # taskset -c for wrk
WARMUP_S = 1


def progress(message: str) -> None:
    """A progress line on stdout, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
