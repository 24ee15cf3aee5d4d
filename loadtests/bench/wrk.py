"""The workloads, running wrk, and parsing what it prints.

wrk is always pinned to :data:`~loadtests.bench.CLIENT_CPU`, bounded in time,
and pointed at 127.0.0.1. Adding a workload is one entry in :data:`WORKLOADS`.
"""

from __future__ import annotations

import re
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.bench import CLIENT_CPU, HOST, ROOT

# wrk is killed if it runs this much longer than asked (it never should).
WRK_GRACE_S = 30.0
WRK_TIMEOUT_S = 10


# -- the workloads -----------------------------------------------------------

ECHO_BODY = b"x" * 1024

_POST_ECHO_LUA = """\
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
"""

#: Pipelined GETs: wrk's classic pipeline.lua. ``request`` returns 16 requests in
#: one buffer; wrk parses that buffer once to learn the depth, writes it, and
#: writes the next batch when all 16 answers are in. It counts every answer as
#: a request (so its requests/s and our CPU per request are per GET), but
#: records one latency per batch: from writing the 16 to reading the 16th answer.
PIPELINE_DEPTH = 16
_PIPELINE_LUA = f"""\
init = function(args)
  local batch = {{}}
  for i = 1, {PIPELINE_DEPTH} do
    batch[i] = wrk.format(nil, "/")
  end
  pipeline = table.concat(batch)
end

request = function()
  return pipeline
end
"""


@dataclass(frozen=True)
class Workload:
    """One wrk load: what it sends, and the answer a server must give to it."""

    name: str
    description: str
    path: str = "/"
    #: Extra request headers (wrk -H).
    headers: tuple[str, ...] = ()
    #: A wrk Lua script, written to a temporary file (wrk -s).
    lua: str | None = None
    threads: int = 1
    connections: int = 50
    #: The check run before measuring: method, body, expected response body.
    check_method: str = "GET"
    check_body: bytes | None = None
    expect_body: bytes = b"Hello, World!"


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload("keepalive", "GET / on 50 keep-alive connections"),
        Workload(
            "close",
            "GET / with Connection: close (a new connection per request)",
            headers=("Connection: close",),
        ),
        Workload(
            "pipelined",
            f"GET / pipelined {PIPELINE_DEPTH} deep on 50 keep-alive connections (latency: per batch of 16)",
            lua=_PIPELINE_LUA,
        ),
        Workload(
            "post-1k",
            "POST /echo with a 1 KiB body, keep-alive",
            path="/echo",
            lua=_POST_ECHO_LUA,
            check_method="POST",
            check_body=ECHO_BODY,
            expect_body=ECHO_BODY,
        ),
    )
}


#: Other names a workload answers to on the command line (``--workloads post``).
WORKLOAD_ALIASES = {"post": "post-1k"}


#: Workloads that are not a wrk run against every server: the big static file
#: (reactor and nginx only, :mod:`~loadtests.bench.static`) and the memory of
#: idle connections (:mod:`~loadtests.bench.idle`).
EXTRA_WORKLOADS = ("static", "idle")
ALL_WORKLOADS: dict[str, Any] = {**WORKLOADS, **dict.fromkeys(EXTRA_WORKLOADS)}


# -- wrk with latencies --------------------------------------------------------

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    elapsed_s: float
    requests_per_s: float
    latency_ms: dict[str, float]  # percentile ("50", "75", "90", "99") -> ms
    socket_errors: dict[str, int]  # connect, read, write, timeout
    non_2xx: int

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx


def parse_wrk(output: str) -> WrkResult:
    """Parse the text of ``wrk --latency``."""
    done = re.search(rf"(\d+) requests in {_NUMBER}", output)
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if done is None or rate is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    latency = {
        match.group(1): float(match.group(2)) * _UNITS_S[match.group(3)] * 1000.0
        for match in re.finditer(rf"^\s+(50|75|90|99)%\s+{_NUMBER}\s*$", output, re.MULTILINE)
    }
    # No latency recorded (wrk prints 0.00us): gunicorn's pipelined batches never
    # complete, as it closes after the first answer. Not a figure: NaN.
    latency = {key: value if value > 0 else float("nan") for key, value in latency.items()}
    if not {"50", "99"} <= latency.keys():
        raise ValueError(f"no latency distribution in wrk output:\n{output}")
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors is not None:
        socket_errors = dict(zip(socket_errors, (int(group) for group in errors.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(done.group(1)),
        elapsed_s=float(done.group(2)) * _UNITS_S[done.group(3)],
        requests_per_s=float(rate.group(1)),
        latency_ms=latency,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_argv(workload: Workload, port: int, duration_s: int, script: Path | None) -> list[str]:
    argv = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        f"-t{workload.threads}",
        f"-c{workload.connections}",
        f"-d{duration_s}s",
        # Latencies beyond the timeout are not in wrk's histogram (they count as
        # timeouts): 10 s rather than 2 s keeps slow servers' p99 measurable.
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        "--latency",
    ]
    for header in workload.headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(f"http://{HOST}:{port}{workload.path}")
    return argv


def run_wrk(argv: list[str], duration_s: int) -> str:
    """Run wrk to completion (bounded) and return its output."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + WRK_GRACE_S, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


# -- downloads: bytes and seconds, exactly ----------------------------------------

#: wrk's summary rounds bytes to two decimals of a unit: a ``done`` hook prints
#: the exact figures on one line that :func:`download` parses.
DONE_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT bytes=%d duration_us=%d requests=%d errors=%d\\n",
    summary.bytes, summary.duration, summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def download(url: str, duration_s: float, connections: int, script: Path) -> dict[str, Any]:
    """``wrk -t1 -cN`` on ``url`` with :data:`DONE_SCRIPT` in ``script``: bytes, seconds, requests,
    errors, and wrk's own CPU over the time it ran."""
    argv = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "60s",
        "-s",
        str(script),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    match = re.search(r"RESULT bytes=(\d+) duration_us=(\d+) requests=(\d+) errors=(\d+)", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}\n{result.stderr}")
    read, micros, requests, errors = (int(group) for group in match.groups())
    seconds = micros / 1e6
    return {
        "bytes": read,
        "seconds": seconds,
        "requests": requests,
        "errors": errors,
        "client_cpu_utilisation": client_cpu / seconds,
    }
