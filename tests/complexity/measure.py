"""Measuring how a cost grows: an input at size n and at 8n, in a child process.

Each case builds its input outside the clock, then runs the real code on it
and reports an outcome (what the code answered, so that a case that starts
failing early cannot pass by doing nothing). The cost is the best of three
CPU times (``time.process_time``): CPU time, not wall time, so a busy machine
does not stretch it, and the best of three, so a stray collection or cache
miss does not either. The runs at n and 8n alternate; the 8n run is not
repeated once it is within the bound, and is tried up to five times while it
is not.

The child is forked and given a budget of CPU seconds, read from
``/proc/PID/stat`` while the parent waits: CPU time, so that a loaded machine
(where the child gets a fraction of a core) cannot time out a linear case.
The C regex engine does not look at signals while it backtracks, so an
exponential pattern can only be stopped from outside: the parent kills the
child and reports the timeout. A wall-clock backstop of ``WALL_FACTOR`` times
the budget ends a child that is starved of the processor altogether.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Growth allowed from n to 8n. Linear is 8x; quadratic 64x; 20x leaves room
#: for noise and for n log n (8x * log(8n)/log(n) stays well below it).
MAX_RATIO = 20.0
#: CPU seconds for one case's measurements. A linear case needs a fraction
#: of a second.
BUDGET_S = 10.0
#: The wall-clock backstop, as a multiple of the budget.
WALL_FACTOR = 10
#: How often the parent reads the child's CPU time.
POLL_S = 0.25
REPEATS = 3
LARGE_REPEATS = 5


@dataclass(frozen=True)
class Growth:
    small_s: float
    large_s: float
    small_outcome: Any
    large_outcome: Any

    @property
    def ratio(self) -> float:
        return self.large_s / max(self.small_s, 1e-9)


def cpu_time(run: Callable[[Any], Any], data: Any, reps: int = 1) -> tuple[float, Any]:
    """CPU seconds of ``reps`` runs of ``run(data)``, and the outcome.

    The collector is paused while the clock runs (none of the code measured
    makes cycles), so that a collection that falls into one run does not count.
    """
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        for _ in range(reps):
            outcome = run(data)
        return time.process_time() - start, outcome
    finally:
        gc.enable()


def _child(conn: Any, build: Callable[[int], Any], run: Callable[[Any], Any], n: int, reps: int) -> None:
    try:
        small, large = build(n), build(8 * n)
        small_s = large_s = float("inf")
        small_outcome = large_outcome = None
        # Interleaved, so that a change in the machine's load between the
        # measurements weighs on both sizes alike. A large run within the
        # bound need not be repeated (more runs could only lower it); one
        # over it is, up to LARGE_REPEATS times, so that one unlucky run on
        # a busy machine is not a failure. A quadratic cost fails them all.
        for _ in range(REPEATS):
            seconds, small_outcome = cpu_time(run, small, reps)
            small_s = min(small_s, seconds)
            if large_s > small_s * MAX_RATIO:
                seconds, large_outcome = cpu_time(run, large, reps)
                large_s = min(large_s, seconds)
            conn.send(("progress", Growth(small_s, large_s, small_outcome, large_outcome)))
        for _ in range(LARGE_REPEATS - REPEATS):
            if large_s <= small_s * MAX_RATIO:
                break
            seconds, large_outcome = cpu_time(run, large, reps)
            large_s = min(large_s, seconds)
            conn.send(("progress", Growth(small_s, large_s, small_outcome, large_outcome)))
        conn.send(("ok", Growth(small_s, large_s, small_outcome, large_outcome)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def growth(
    build: Callable[[int], Any], run: Callable[[Any], Any], n: int, reps: int = 1, budget_s: float = BUDGET_S
) -> Growth:
    """Cost of ``run(build(n))`` and ``run(build(8 * n))``, measured in a forked child.

    ``reps`` runs are timed together: a small n keeps both inputs in the
    processor's caches (so that the larger one is not slower per byte only
    because it spills out of them), and the repeats lift the time far above
    the clock's resolution.

    Raises:
        TimeoutError: the child did not finish within ``budget_s``.
        RuntimeError: the child raised (its traceback is the message).
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, build, run, n, reps), daemon=True)
    child.start()
    sender.close()
    wall_deadline = time.monotonic() + budget_s * WALL_FACTOR
    progress: Growth | None = None
    try:
        while True:
            while not receiver.poll(POLL_S):
                if _cpu_seconds(child.pid) > budget_s or time.monotonic() > wall_deadline:
                    raise TimeoutError(_timeout_message(n, budget_s, progress))
            try:
                status, value = receiver.recv()
            except EOFError:
                child.join(1)
                raise RuntimeError(f"the measuring process died (exit code {child.exitcode})") from None
            if status != "progress":
                break
            progress = value
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()
    if status != "ok":
        raise RuntimeError(f"the measurement raised:\n{value}")
    assert isinstance(value, Growth)
    return value


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU seconds of a live process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command's closing parenthesis, utime and stime are the 12th
    # and 13th fields (14 and 15 of proc(5)), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timeout_message(n: int, budget_s: float, progress: Growth | None) -> str:
    message = f"n={n} and 8n did not finish in {budget_s:.0f} s of CPU time"
    if progress is None or progress.large_s == float("inf"):
        return message + ", far more than a linear cost needs (quadratic or worse: a backtracking regex?)"
    return (
        f"{message}; so far {progress.small_s * 1e3:.2f} ms at n, {progress.large_s * 1e3:.2f} ms at 8n: "
        f"{progress.ratio:.0f}x (linear is 8x, quadratic 64x; the bound is {MAX_RATIO:.0f}x)"
    )
