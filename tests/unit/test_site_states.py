"""The demo's home page names the connection states as ``reactor.connection.State`` does."""

from __future__ import annotations

import re
from pathlib import Path

from reactor.connection import State
from reactor.demo import SITE


def test_home_page_script_lists_every_open_state_in_enum_order() -> None:
    script = (Path(SITE) / "app.js").read_text()
    match = re.search(r"const STATES = \[([^\]]*)\];", script)
    assert match, "app.js has no STATES list"
    listed = re.findall(r'"([A-Z_]+)"', match.group(1))
    assert listed == [state.name for state in State if state is not State.CLOSED]
    # The label it shows for a name is the enum's value.
    assert 'name.toLowerCase().replaceAll("_", " ")' in script
    assert all(state.name.lower().replace("_", " ") == state.value for state in State)


def test_home_page_prose_names_every_state_by_its_value() -> None:
    page = (Path(SITE) / "index.html").read_text()
    prose = re.search(r"a small table of states \((.*?)\)", page, re.DOTALL)
    assert prose, "index.html no longer describes the states"
    named = re.findall(r"<em>([a-z ]+)</em>", prose.group(1))
    assert named == [state.value for state in State]
