"""``request_timeout_s``: its default, its validation and its flag (no sockets)."""

from __future__ import annotations

import pytest

from reactor import Config
from reactor.cli import parse_args


def test_request_timeout_default_and_flag() -> None:
    assert Config().request_timeout_s == 300.0
    assert parse_args([]).request_timeout_s == 300.0
    assert parse_args(["--request-timeout", "12.5"]).request_timeout_s == 12.5


def test_request_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="request_timeout_s must be positive"):
        Config(request_timeout_s=0)
