"""The flags and config fields of workers and sockets: what is refused before anything starts."""

from __future__ import annotations

import os

import pytest

from reactor import Config
from reactor.cli import parse_args
from reactor.server import systemd_sockets


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-requests", "10"], "max_requests needs workers"),
        (["--workers", "2", "--max-requests-jitter", "5"], "max_requests_jitter needs max_requests"),
        (["--workers", "0"], "'0' is not above 0"),
        (["--uds-mode", "999"], "'999' is not octal permission bits"),
        (["--uds-mode", "1777"], "is not permission bits"),
        (["--fd", "-1"], "'-1' is not a descriptor number"),
    ],
)
def test_bad_values_are_refused_with_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_args(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_good_values_reach_the_config() -> None:
    processes = ["--workers", "3", "--max-requests", "100", "--max-requests-jitter", "10"]
    sockets = ["--uds", "/tmp/r.sock", "--uds-mode", "0o600", "--fd", "5", "--fd", "6"]
    args = parse_args([*processes, *sockets])
    config: Config = args.config
    assert (config.workers, config.max_requests, config.max_requests_jitter) == (3, 100, 10)
    assert (config.uds, config.uds_mode, config.fds) == ("/tmp/r.sock", 0o600, (5, 6))


def test_no_flag_means_one_process_and_no_master() -> None:
    config: Config = parse_args([]).config
    assert (config.workers, config.uds, config.fds) == (0, None, ())


def test_config_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="workers must be a whole number"):
        Config(workers=-1)


def test_listen_fds_for_another_process_is_ignored_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # As sd_listen_fds(3): the variables are for LISTEN_PID only (here: not us).
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert systemd_sockets() == []
    assert os.environ["LISTEN_FDS"] == "1"
