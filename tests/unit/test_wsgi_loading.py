"""--app finds a WSGI callable or a reactor App; --interface forces one; the config checks."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from reactor import App, Config
from reactor.cli import load_app, parse_args
from reactor.wsgi import WSGIApp, is_wsgi


def wsgi_hello(environ: dict[str, object], start_response: object) -> list[bytes]:
    return [b"hello"]


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    mod = types.ModuleType("wsgi_loading_fixture")
    mod.application = wsgi_hello  # type: ignore[attr-defined]
    mod.app = App()  # type: ignore[attr-defined]
    mod.number = 3  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_a_wsgi_callable_is_detected_and_wrapped(module: types.ModuleType) -> None:
    loaded = load_app("wsgi_loading_fixture:application")
    assert isinstance(loaded, WSGIApp)
    assert loaded.application is wsgi_hello
    assert load_app("wsgi_loading_fixture:app") is module.app  # an App stays itself
    assert is_wsgi(wsgi_hello) and not is_wsgi(module.app)


def test_interface_forces_the_reading(module: types.ModuleType) -> None:
    with pytest.raises(SystemExit, match="is a function, not an App"):
        load_app("wsgi_loading_fixture:application", "native")
    forced = load_app("wsgi_loading_fixture:app", "wsgi")
    assert isinstance(forced, WSGIApp) and forced.application is module.app
    with pytest.raises(SystemExit, match="neither an App nor a WSGI callable"):
        load_app("wsgi_loading_fixture:number")


def test_flags_reach_the_config() -> None:
    args = parse_args(["--app", "m:a", "--threads", "8", "--thread-queue", "16", "--root-path", "/api"])
    assert (args.config.threads, args.config.thread_queue_count, args.config.root_path) == (8, 16, "/api")
    assert Config().threads == 4
    with pytest.raises(SystemExit):
        parse_args(["--interface", "wsgi"])  # only with --app
    with pytest.raises(SystemExit):
        parse_args(["--root-path", "api/"])


def test_config_refuses_bad_pool_settings() -> None:
    with pytest.raises(ValueError, match="threads"):
        Config(threads=0)
    with pytest.raises(ValueError, match="thread_queue_count"):
        Config(thread_queue_count=0)
    with pytest.raises(ValueError, match="root_path"):
        Config(root_path="/api/")
