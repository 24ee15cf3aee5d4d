"""settle_collector: what python -m reactor does to the cyclic garbage collector (docs/wsgi.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from reactor.cli import GC_FULL_PASS_EVERY, settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    """Put the test process's collector back as it was."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_full_pass_waits_for_many_middle_ones_and_start_up_objects_are_frozen(collector: None) -> None:
    gc.set_threshold(700, 10, 10)  # Python's defaults
    settle_collector()
    assert gc.get_threshold() == (700, 10, GC_FULL_PASS_EVERY)
    assert gc.get_freeze_count() > 0
    # Garbage in a cycle made after it is still found (by a young pass here).
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect(0) >= 1


def test_an_applications_own_thresholds_are_kept(collector: None) -> None:
    gc.set_threshold(5000, 20, 50)
    settle_collector()
    assert gc.get_threshold() == (5000, 20, 50)
