"""The cluster in a box (``loadtests/cluster.py``): two reactor hosts behind nginx, Redis, locust.

Five network namespaces on a bridge in a sixth, on 10.77.0.0/24 inside them
only. Needs root and ``ip netns`` (skips otherwise, saying which). The short
version (two locust runs of 10 s) runs in CI; the long one (60 s each) is marked
slow and runs with ``REACTOR_LONG_TESTS=1``.
Whatever happens, the teardown checks that no namespace of the run is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from loadtests.cluster import netns_available  # noqa: E402

WHY_NOT = netns_available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"the cluster cannot be built: {WHY_NOT}")
USERS = 20


def namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def run_cluster(tmp_path: Path, run_time_s: int) -> dict[str, Any]:
    prefix = f"rx{os.getpid()}t{run_time_s}"
    out = tmp_path / "cluster.json"
    argv = [sys.executable, "loadtests/cluster.py", "--run-time", str(run_time_s), "--users", str(USERS)]
    argv += ["--prefix", prefix, "--json", str(out), "--deadline", str(6 * run_time_s + 90)]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=6 * run_time_s + 150)
    finally:
        if proc.poll() is None:
            # The tool cleans up on SIGTERM, in its finally.
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(60)
        left = [name for name in namespaces() if name.startswith(f"{prefix}-")]
        assert not left, f"namespaces left behind: {left}"
    assert proc.returncode == 0, output
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["cleanup_problems"] == [], result["cleanup_problems"]
    result["output"] = output
    return result


def check(result: dict[str, Any]) -> None:
    # The load spread over both hosts: each served at least a third.
    spread = result["spread"]
    total = spread["a"] + spread["b"]
    assert total > 500, result["output"]
    assert min(spread.values()) > total / 3, spread
    # Both workers of each host served some of it.
    for host in ("a", "b"):
        assert len(result["spread_per_worker"][host]) >= 2, result["spread_per_worker"]

    # A chat message posted to host A reached a subscriber on host B, through Redis.
    chat = result["chat"]
    assert chat["post_status"] == 200 and chat["post_reply"]["broker"] == "sent", chat
    assert chat["received"], chat

    # SIGKILL, with requests in flight on that worker: only those fail (the
    # slack of 2 is for a connection accepted between the count and the
    # kill), each a 502 from nginx; the master had a replacement ready
    # within a second, and it answered.
    kill = result["kill"]
    stats = kill["locust"]
    assert kill["in_flight"] >= 1, kill
    assert stats["failures"] <= min(USERS, kill["in_flight"] + 2), (kill["in_flight"], stats)
    assert all("502" in kind for kind in stats["failure_kinds"]), stats["failure_kinds"]
    assert kill["ready_s"] is not None and kill["ready_s"] < 1.0, kill
    assert kill["first_answer_s"] is not None, kill
    assert kill["victim"] not in kill["workers_after"] and len(kill["workers_after"]) == 2, kill
    # The victim served before it was killed: the kill came mid-load.
    assert result["spread_per_worker"]["a"].get(str(kill["victim"]), 0) > 0, result["spread_per_worker"]

    # A rolling SIGHUP of host B under load: no failed request, and the new workers served.
    reload = result["reload"]
    assert reload["locust"]["requests"] > 200, reload
    assert reload["locust"]["failures"] == 0, reload
    assert not set(reload["old"]) & set(reload["new"])
    assert all(count > 0 for count in reload["served_by_new"].values()), reload


@pytest.mark.timeout(300)  # two 10 s locust runs, their start-up and the cleanup, on a busy machine
def test_cluster_short(tmp_path: Path) -> None:
    check(run_cluster(tmp_path, run_time_s=10))


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("REACTOR_LONG_TESTS") != "1", reason="long: set REACTOR_LONG_TESTS=1 to run it"
)
@pytest.mark.timeout(700)
def test_cluster_long(tmp_path: Path) -> None:
    check(run_cluster(tmp_path, run_time_s=60))
