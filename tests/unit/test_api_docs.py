"""docs/api.md documents every public name: each one in ``__all__`` has a heading there."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"

# The package and the modules that users import by name (README, docs/).
PUBLIC_MODULES = [
    "reactor",
    "reactor.streams",
    "reactor.live",
    "reactor.trace",
    "reactor.wsgi",
    "reactor.pool",
]

# A heading's first backticked name, dotted or not: "### `live.mount(app)`" -> "live.mount".
HEADING_NAME = re.compile(r"^#{2,6} `([A-Za-z_][A-Za-z0-9_.]*)")


def documented(text: str) -> set[str]:
    """The names that headings of ``text`` document: ``a.b.c`` documents ``c``, ``b.c`` and itself."""
    names = set()
    for line in text.splitlines():
        match = HEADING_NAME.match(line)
        if match:
            parts = match.group(1).split(".")
            names.update(".".join(parts[i:]) for i in range(len(parts)))
    return names


def undocumented(module_name: str, text: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = documented(text)
    return [name for name in module.__all__ if name not in names]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_heading(module_name: str) -> None:
    missing = undocumented(module_name, API.read_text())
    assert not missing, f"{module_name}: add a heading with the signature to docs/api.md for {missing}"


def test_every_public_module_has_a_section() -> None:
    sections = [line[3:].strip("` ") for line in API.read_text().splitlines() if line.startswith("## ")]
    assert sections[: len(PUBLIC_MODULES)] == PUBLIC_MODULES


def test_a_removed_heading_is_caught() -> None:
    text = API.read_text()
    assert "### `Broadcast()`" in text
    assert "Broadcast" in undocumented("reactor", text.replace("### `Broadcast()`", "### Broadcasting"))
    # A name in running text or a list item is not a heading.
    assert "Broadcast" not in documented("Use `Broadcast()` for this.\n- `Broadcast()`: a set\n")
