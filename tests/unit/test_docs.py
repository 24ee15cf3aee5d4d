"""The docs that are generated from code must match the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from reactor.connection import TRANSITIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_state_diagram", DOCS / "make_state_diagram.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_state_diagram_matches_the_transition_table() -> None:
    text = (DOCS / "state-machine.md").read_text()
    assert _generator().render(text) == text, "run: python docs/make_state_diagram.py"
    for (source, event), target in TRANSITIONS.items():
        assert f"    {source.name} --> {target.name}: {event}\n" in text


def test_diagram_check_catches_a_stale_file(tmp_path: Path) -> None:
    generator = _generator()
    text = (DOCS / "state-machine.md").read_text()
    stale = text.replace("WRITING --> IDLE: keep-alive", "WRITING --> IDLE: kept")
    assert generator.render(stale) != stale
