"""Measuring how a cost grows: an input at size n and at 8n, in a child process.

Each case builds its input outside the clock, then runs the real code on it
and reports an outcome (what the code answered, so that a case that starts
failing early cannot pass by doing nothing). The cost is the best of three
CPU times (``time.process_time``): CPU time, not wall time, so a busy machine
does not stretch it, and the best of three, so a stray collection or cache
miss does not either. The runs at n and 8n alternate, and the 8n run is not
repeated once it is within the bound.

The child is forked and given a wall-clock budget. The C regex engine does
not look at signals while it backtracks, so an exponential pattern can only
be stopped from outside: the parent kills the child and reports the timeout.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Growth allowed from n to 8n. Linear is 8x; quadratic 64x; 20x leaves room
#: for noise and for n log n (8x * log(8n)/log(n) stays well below it).
MAX_RATIO = 20.0
#: Wall-clock seconds for one case's six measurements. A linear case needs a
#: fraction of a second; a loaded machine may triple that.
BUDGET_S = 10.0
REPEATS = 3


@dataclass(frozen=True)
class Growth:
    small_s: float
    large_s: float
    small_outcome: Any
    large_outcome: Any

    @property
    def ratio(self) -> float:
        return self.large_s / max(self.small_s, 1e-9)


def cpu_time(run: Callable[[Any], Any], data: Any) -> tuple[float, Any]:
    """CPU seconds of one ``run(data)``, and its outcome.

    The collector is paused while the clock runs (none of the code measured
    makes cycles), so that a collection that falls into one run does not count.
    """
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        outcome = run(data)
        return time.process_time() - start, outcome
    finally:
        gc.enable()


def _child(conn: Any, build: Callable[[int], Any], run: Callable[[Any], Any], n: int) -> None:
    try:
        small, large = build(n), build(8 * n)
        small_s = large_s = float("inf")
        small_outcome = large_outcome = None
        # Interleaved, so that a change in the machine's load between the
        # measurements weighs on both sizes alike. A large run within the
        # bound need not be repeated: more runs could only lower it.
        for _ in range(REPEATS):
            seconds, small_outcome = cpu_time(run, small)
            small_s = min(small_s, seconds)
            if large_s > small_s * MAX_RATIO:
                seconds, large_outcome = cpu_time(run, large)
                large_s = min(large_s, seconds)
        conn.send(("ok", Growth(small_s, large_s, small_outcome, large_outcome)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def growth(
    build: Callable[[int], Any], run: Callable[[Any], Any], n: int, budget_s: float = BUDGET_S
) -> Growth:
    """Cost of ``run(build(n))`` and ``run(build(8 * n))``, measured in a forked child.

    Raises:
        TimeoutError: the child did not finish within ``budget_s``.
        RuntimeError: the child raised (its traceback is the message).
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, build, run, n), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(budget_s):
            raise TimeoutError(
                f"n={n} and 8n did not finish in {budget_s:.0f} s of wall time, far more than "
                "a linear cost needs (quadratic at best, exponential backtracking at worst)"
            )
        try:
            status, value = receiver.recv()
        except EOFError:
            child.join(1)
            raise RuntimeError(f"the measuring process died (exit code {child.exitcode})") from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()
    if status != "ok":
        raise RuntimeError(f"the measurement raised:\n{value}")
    assert isinstance(value, Growth)
    return value
