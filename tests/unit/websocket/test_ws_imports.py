"""The WebSocket codec is sans-IO: importing it loads no socket and no selector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_websocket_codec_loads_no_socket_or_selector() -> None:
    statement = "import sys, reactor.websocket, reactor.websocket.deflate"
    check = "print('socket' in sys.modules, 'selectors' in sys.modules, 'reactor.loop' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", f"{statement}; {check}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["False", "False", "False"]
