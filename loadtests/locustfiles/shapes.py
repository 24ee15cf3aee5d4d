"""Load shapes: how many users run over time, scaled to ``--users`` and ``--run-time``.

======  =============================================================================
step    four equal steps: 1/4, 2/4, 3/4 and all of ``--users``, each a quarter of
        the run, each step spawned at ``--spawn-rate``
spike   a fifth of ``--users`` for 40 % of the run, then all of them at once (in
        at most a second) for 20 %, then back to a fifth for the last 40 %
soak    ramp up at ``--spawn-rate`` and hold ``--users`` until ``--run-time``: a
        long run (``--run-time 30m``) to show drift in latency and memory
======  =============================================================================

A scenario module uses the shape that ``$LOADTEST_SHAPE`` names (``run.py
--shape NAME`` sets it) by binding :func:`selected` to a module-level name,
since locust uses any concrete :class:`~locust.LoadTestShape` subclass it finds
in a locustfile. The classes here are never seen by locust otherwise: a shape
module is imported, not passed with ``-f``.

Each shape reads ``--users``, ``--spawn-rate`` and ``--run-time``
(``use_common_options``), and ends the test at ``--run-time``: with a shape,
locust's own run-time limit is not armed until the shape has finished.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

__all__ = ["SHAPES", "SoakShape", "SpikeShape", "StepShape", "selected"]

ENV = "LOADTEST_SHAPE"
# Used when locust runs without --users, --spawn-rate or --run-time.
DEFAULT_USERS = 10
DEFAULT_SPAWN_RATE = 10.0
DEFAULT_RUN_TIME_S = 60.0


class _ScaledShape(LoadTestShape):
    """A shape that is a function of the fraction of ``--run-time`` elapsed."""

    abstract = True
    use_common_options = True

    def _options(self) -> tuple[int, float, float]:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        users = getattr(options, "num_users", None) or DEFAULT_USERS
        spawn_rate = getattr(options, "spawn_rate", None) or DEFAULT_SPAWN_RATE
        run_time = getattr(options, "run_time", None) or DEFAULT_RUN_TIME_S
        return int(users), float(spawn_rate), float(run_time)

    def tick(self) -> tuple[int, float] | None:
        users, spawn_rate, run_time = self._options()
        elapsed = self.get_run_time()  # type: ignore[no-untyped-call]
        if elapsed >= run_time:
            return None
        return self.at(elapsed / run_time, users, spawn_rate)

    def at(self, fraction: float, users: int, spawn_rate: float) -> tuple[int, float]:
        """(user count, spawn rate) at ``fraction`` (0 to 1) of the run."""
        raise NotImplementedError


class StepShape(_ScaledShape):
    steps = 4

    def at(self, fraction: float, users: int, spawn_rate: float) -> tuple[int, float]:
        step = min(int(fraction * self.steps), self.steps - 1) + 1
        return max(1, users * step // self.steps), spawn_rate


class SpikeShape(_ScaledShape):
    def at(self, fraction: float, users: int, spawn_rate: float) -> tuple[int, float]:
        baseline = max(1, users // 5)
        if 0.4 <= fraction < 0.6:
            return users, max(spawn_rate, float(users))
        return baseline, max(spawn_rate, float(users))


class SoakShape(_ScaledShape):
    def at(self, fraction: float, users: int, spawn_rate: float) -> tuple[int, float]:
        return users, spawn_rate


SHAPES: dict[str, type[LoadTestShape]] = {"step": StepShape, "spike": SpikeShape, "soak": SoakShape}


def selected() -> type[LoadTestShape] | None:
    """The shape class ``$LOADTEST_SHAPE`` names, or None (a constant load) if it is unset or empty."""
    name = os.environ.get(ENV, "")
    if not name:
        return None
    try:
        return SHAPES[name]
    except KeyError:
        raise SystemExit(f"${ENV}={name!r} is not a shape; choose from {', '.join(SHAPES)}") from None
