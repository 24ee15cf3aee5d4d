"""``python -m reactor``: read the flags, build the app and the server, run.

With no flags it serves the built-in demo on http://127.0.0.1:8000. ``--app
module:attribute`` serves any :class:`~reactor.app.App`; ``--static DIR``
serves a directory at ``/`` and nothing else (see :mod:`reactor.static`);
``--port 0`` picks a free port. The bound address is printed on standard
output. ``--workers N`` runs N worker processes under a master
(:mod:`reactor.master`); ``--uds``, ``--fd`` and systemd socket activation
take the listening socket from elsewhere (:func:`reactor.server.open_listeners`).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from functools import partial

from . import __version__, broker, reload, trace
from .app import App
from .config import Config
from .demo import make_demo
from .log import configure
from .master import Master, run_worker
from .server import Server, describe_listener, open_listeners
from .tls import CERT_REQS, TLSConfigError, make_context
from .wsgi import WSGIApp

__all__ = [
    "build_app",
    "descriptor",
    "file_mode",
    "load_app",
    "main",
    "parse_args",
    "port_number",
    "positive_float",
    "positive_int",
    "static_app",
]

_CACHE_CONTROL = "no-cache"  # what --static sends unless --cache-control says otherwise

# -- argument types ---------------------------------------------------------
# Each refuses a bad value with ArgumentTypeError, which argparse prints as its
# own one-line error (``reactor: error: argument --port: ...``) and exit
# status 2: a bad flag is never a traceback, and never silently another value.


def port_number(text: str) -> int:
    """A TCP port, 0 to 65535 (0: the kernel picks a free one)."""
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return value


def positive_int(text: str) -> int:
    """A whole number above 0: a count or a size in bytes."""
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0: a time in seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number above 0")
    return value


def _broker_url(text: str) -> str:
    try:
        broker.parse_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def file_mode(text: str) -> int:
    """Permission bits in octal, ``660`` or ``0o660``."""
    try:
        value = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not octal permission bits") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not permission bits (0 to 777)")
    return value


def descriptor(text: str) -> int:
    """A file descriptor number, 0 or more."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a descriptor number")
    return value


def _gzip_level(text: str) -> int:
    """A zlib compression level, 1 to 9."""
    value = _integer(text)
    if not 1 <= value <= 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a level from 1 to 9")
    return value


def _cert_reqs(text: str) -> int:
    if text.lower() in CERT_REQS:
        return int(CERT_REQS[text.lower()])
    if text in ("0", "1", "2"):
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not 0/none, 1/optional or 2/required")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


# Flags that map one-to-one onto Config fields: (flag, field, type, help).
# Every one is a positive number, checked by its type.
_CONFIG_FLAGS: list[tuple[str, str, Callable[[str], object], str]] = [
    ("--header-timeout", "header_timeout_s", positive_float, "seconds to receive a request head"),
    ("--body-timeout", "body_timeout_s", positive_float, "longest gap between body reads, seconds"),
    ("--request-timeout", "request_timeout_s", positive_float, "seconds to receive a whole request"),
    ("--keepalive-timeout", "keepalive_timeout_s", positive_float, "idle seconds between requests"),
    ("--write-timeout", "write_timeout_s", positive_float, "seconds a write may make no progress"),
    ("--shutdown-timeout", "shutdown_timeout_s", positive_float, "seconds a graceful shutdown waits"),
    ("--max-connections", "max_connections", positive_int, "open connections at most"),
    ("--max-request-line", "max_request_line_bytes", positive_int, "request line bytes (414 above)"),
    ("--max-header-line", "max_header_line_bytes", positive_int, "one header line's bytes (431 above)"),
    ("--max-head", "max_head_bytes", positive_int, "whole request head bytes (431 above)"),
    ("--max-headers", "max_header_count", positive_int, "header fields per request (431 above)"),
    ("--max-body", "max_body_bytes", positive_int, "request body bytes (413 above)"),
    ("--backlog", "backlog", positive_int, "listen(2) backlog"),
    ("--gzip-min", "gzip_min_bytes", positive_int, "bodies shorter are not gzipped, bytes"),
    (
        "--worker-boot-timeout",
        "worker_boot_timeout_s",
        positive_float,
        "seconds a new worker may take to be ready",
    ),
    (
        "--watchdog",
        "watchdog_threshold_s",
        positive_float,
        "log handlers that block the loop longer, seconds",
    ),
    (
        "--ws-max-message",
        "ws_max_message_bytes",
        positive_int,
        "largest WebSocket message, bytes (1009 above)",
    ),
    (
        "--ws-ping-interval",
        "ws_ping_interval_s",
        positive_float,
        "seconds before a quiet WebSocket is pinged",
    ),
    ("--ws-ping-timeout", "ws_ping_timeout_s", positive_float, "seconds a WebSocket ping may go unanswered"),
    ("--ws-close-timeout", "ws_close_timeout_s", positive_float, "seconds to wait for a WebSocket Close"),
    ("--threads", "threads", positive_int, "threads for blocking handlers and WSGI apps"),
    ("--thread-queue", "thread_queue_count", positive_int, "requests waiting for a thread (503 above)"),
    ("--thread-stuck", "thread_stuck_s", positive_float, "log a pool handler running longer, seconds"),
]


def _parser() -> argparse.ArgumentParser:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="A one-thread selectors HTTP/1.1 server.",
        # Short, so that an error is the second line of two, not the last of sixteen.
        usage="%(prog)s [--app MODULE:ATTRIBUTE | --static DIR] [--host HOST] [--port PORT] [flags]",
    )
    parser.add_argument("--host", default=defaults.host, help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=port_number, default=defaults.port, help="port, 0 to 65535; 0 picks a free one"
    )
    served = parser.add_mutually_exclusive_group()
    served.add_argument("--app", help="serve module:attribute, an App or a WSGI callable (default: the demo)")
    served.add_argument("--static", metavar="DIR", help="serve the files under DIR at / (and nothing else)")
    parser.add_argument(
        "--listing", action="store_true", help="with --static: list directories that have no index.html"
    )
    parser.add_argument(
        "--cache-control",
        metavar="VALUE",
        help=f"with --static: the Cache-Control of files (default {_CACHE_CONTROL}; '' sends none)",
    )
    parser.add_argument(
        "--interface",
        choices=["auto", "native", "wsgi"],
        default="auto",
        help="with --app: what it is (default auto: an App if it has handle(), else WSGI)",
    )
    parser.add_argument(
        "--root-path",
        default="",
        metavar="PREFIX",
        help="the URL prefix the app is mounted under (WSGI's SCRIPT_NAME), e.g. /api",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="level of the reactor.error and reactor.access loggers",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    parser.add_argument(
        "--no-gzip", action="store_true", help="send every body as it is: no gzip, no precompressed .gz files"
    )
    parser.add_argument(
        "--gzip-level",
        type=_gzip_level,
        default=defaults.gzip_level,
        help="zlib compression level, 1 (fastest) to 9 (default %(default)s)",
    )
    parser.add_argument(
        "--access-log-format",
        metavar="FORMAT",
        help="the access log's line in gunicorn's atoms, e.g. '%%(h)s \"%%(r)s\" %%(s)s %%(M)s'",
    )
    parser.add_argument("--access-log-json", action="store_true", help="one JSON object per access log line")
    parser.add_argument(
        "--reload",
        action="store_true",
        help="with --app: restart when a module of the app changes (development)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="log every connection's state moves and selector events"
    )
    parser.add_argument(
        "--broker", type=_broker_url, metavar="URL", help="redis://HOST:PORT: broadcast through Redis pub/sub"
    )
    parser.add_argument("--version", action="version", version=f"reactor {__version__}")
    processes = parser.add_argument_group("processes and sockets (docs/scaling.md, docs/deployment.md)")
    processes.add_argument(
        "--workers",
        type=positive_int,
        default=defaults.workers,
        help="run N worker processes under a master (default: one process, no master)",
    )
    processes.add_argument(
        "--max-requests",
        type=positive_int,
        default=defaults.max_requests,
        help="replace a worker after N responses",
    )
    processes.add_argument(
        "--max-requests-jitter",
        type=positive_int,
        default=defaults.max_requests_jitter,
        help="add 0 to N to each worker's --max-requests",
    )
    processes.add_argument("--uds", metavar="PATH", help="listen on a Unix socket instead of --host/--port")
    processes.add_argument(
        "--uds-mode",
        type=file_mode,
        default=defaults.uds_mode,
        help=f"permission bits of the --uds socket, octal (default {defaults.uds_mode:o})",
    )
    processes.add_argument(
        "--fd",
        type=descriptor,
        action="append",
        default=[],
        help="serve an inherited listening socket, by descriptor number (repeatable)",
    )
    proxy = parser.add_argument_group("behind a proxy (docs/deployment.md)")
    proxy.add_argument(
        "--forwarded-allow-ips",
        metavar="LIST",
        default=defaults.forwarded_allow_ips,
        help="addresses and CIDR networks (comma-separated; * for all) whose X-Forwarded-*, "
        "Forwarded and PROXY headers are believed (default %(default)s)",
    )
    proxy.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="read HAProxy's PROXY protocol v1/v2 header first on each connection (trusted peers only)",
    )
    tls = parser.add_argument_group("TLS (docs/tls.md)")
    tls.add_argument("--certfile", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    tls.add_argument("--keyfile", metavar="FILE", help="its private key (PEM; default: in --certfile)")
    tls.add_argument("--keyfile-password", metavar="PASSWORD", help="the password of an encrypted --keyfile")
    tls.add_argument(
        "--ca-certs", metavar="FILE", help="CA certificates (PEM) to verify client certificates against"
    )
    tls.add_argument(
        "--cert-reqs",
        type=_cert_reqs,
        help="client certificate: 0/none, 1/optional, 2/required (default: required with --ca-certs)",
    )
    tls.add_argument(
        "--ssl-ciphers", metavar="LIST", help="OpenSSL cipher list for TLS 1.2 (default: Python's)"
    )
    tls.add_argument(
        "--handshake-timeout",
        dest="handshake_timeout_s",
        type=positive_float,
        default=defaults.handshake_timeout_s,
        help=f"seconds from accept to the end of the TLS handshake (default {defaults.handshake_timeout_s})",
    )
    parser.add_argument(
        "--ws-origins",
        metavar="LIST",
        default=None,
        help="Origin values allowed to open WebSockets (comma-separated; default: any)",
    )
    limits = parser.add_argument_group("limits and timeouts")
    for flag, field, kind, text in _CONFIG_FLAGS:
        default = getattr(defaults, field)
        limits.add_argument(flag, dest=field, type=kind, default=default, help=f"{text} (default {default})")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse command-line flags; a bad one exits with argparse's error and status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    # Flags that only --static reads would otherwise be ignored without a word.
    for flag, given in (("--listing", args.listing), ("--cache-control", args.cache_control is not None)):
        if given and not args.static:
            parser.error(f"argument {flag}: only with --static")
    if args.reload and not args.app:
        parser.error("argument --reload: only with --app")
    if args.interface != "auto" and not args.app:
        parser.error("argument --interface: only with --app")
    if args.cache_control is None:
        args.cache_control = _CACHE_CONTROL
    # Config checks what no single flag can (low-water under high-water, say).
    try:
        args.config = Config(
            host=args.host,
            port=args.port,
            access_log=not args.no_access_log,
            access_log_format=args.access_log_format,
            access_log_json=args.access_log_json,
            trace=args.trace,
            broker=args.broker,
            workers=args.workers,
            max_requests=args.max_requests,
            max_requests_jitter=args.max_requests_jitter,
            uds=args.uds,
            uds_mode=args.uds_mode,
            fds=tuple(args.fd),
            forwarded_allow_ips=args.forwarded_allow_ips,
            proxy_protocol=args.proxy_protocol,
            gzip=not args.no_gzip,
            gzip_level=args.gzip_level,
            certfile=args.certfile,
            keyfile=args.keyfile,
            keyfile_password=args.keyfile_password,
            ca_certs=args.ca_certs,
            cert_reqs=args.cert_reqs,
            ssl_ciphers=args.ssl_ciphers,
            handshake_timeout_s=args.handshake_timeout_s,
            ws_origins=args.ws_origins,
            root_path=args.root_path,
            **{field: getattr(args, field) for _, field, _, _ in _CONFIG_FLAGS},
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.config.certfile is not None:
        # Loaded once here so that a bad file stops the start (status 2),
        # before any fork; each process then makes its own context.
        try:
            make_context(args.config)
        except TLSConfigError as exc:
            parser.error(f"TLS: {exc}")
    return args


def load_app(spec: str, interface: str = "auto") -> App:
    """Import ``module:attribute`` and return the app it names: a reactor
    :class:`~reactor.app.App` (it has ``handle``), or a WSGI callable, which
    is wrapped in a :class:`~reactor.wsgi.WSGIApp` (``interface`` forces one
    reading or the other)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"--app takes module:attribute, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r}: {exc}") from None
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"module {module_name!r} has no attribute {attribute!r}") from None
    if interface == "native" or (interface == "auto" and hasattr(app, "handle")):
        if not hasattr(app, "handle"):
            raise SystemExit(f"{spec} is a {type(app).__name__}, not an App")
        return app  # type: ignore[no-any-return]
    if not callable(app):
        raise SystemExit(f"{spec} is a {type(app).__name__}: neither an App nor a WSGI callable")
    return WSGIApp(app)  # type: ignore[return-value]


def static_app(directory: str, **options: object) -> App:
    """An app that serves ``directory`` at ``/``: what ``--static`` runs."""
    app = App()
    try:
        app.static("/", directory, **options)
    except NotADirectoryError:
        raise SystemExit(f"--static takes a directory, and {directory!r} is not one") from None
    return app


def build_app(args: argparse.Namespace) -> App:
    """The app the flags name: ``--app``, ``--static`` or the demo."""
    if args.app:
        return load_app(args.app, args.interface)
    if args.static:
        return static_app(args.static, listing=args.listing, cache_control=args.cache_control or None)
    return make_demo()


def main(argv: Sequence[str] | None = None, serve: Callable[[Server], None] | None = None) -> int:
    """Run the server; returns the exit status. ``serve`` replaces the run (tests)."""
    args = parse_args(argv)
    config: Config = args.config
    configure(
        args.log_level,
        access=not args.no_access_log,
        trace=args.trace,
        access_format=config.access_log_format,
        access_json=config.access_log_json,
    )
    if args.reload:
        return reload.supervise(list(sys.argv[1:] if argv is None else argv), config)
    if args.trace:
        trace.enable()
    # With workers the app is built in each worker, never here (see reactor.master).
    server = None if config.workers else Server(build_app(args), config)
    # Under --reload the supervisor holds the socket and hands it to each child.
    inherited = reload.inherited_socket()
    try:
        listeners = [inherited] if inherited is not None else open_listeners(config)
    except OSError as exc:
        where = config.uds or (
            f"fd {', '.join(map(str, config.fds))}" if config.fds else f"{config.host}:{config.port}"
        )
        print(f"reactor: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    plural = "" if config.workers == 1 else "s"
    how = (
        f"master pid {os.getpid()}, {config.workers} worker{plural}"
        if config.workers
        else f"pid {os.getpid()}"
    )
    for sock in listeners:
        print(
            f"reactor {__version__} serving {describe_listener(sock, config.certfile is not None)} ({how})",
            flush=True,
        )
    try:
        if server is None:
            return Master(config, listeners, partial(_boot_worker, args)).run()
        if serve is None:
            settle_collector()
        server.adopt(listeners)
        if inherited is not None and serve is None:
            # A child of --reload stops as a worker does, draining: the next
            # child serves the same socket, and no request may be lost between.
            run_worker(server, lambda: None, 0)
        else:
            (serve or Server.serve_forever)(server)
        _close_app(server)
        return 0
    finally:
        if config.uds is not None:
            _remove_socket_file(config.uds)


def _boot_worker(
    args: argparse.Namespace, listeners: list[socket.socket], ready: Callable[[], None], max_requests: int
) -> int:
    """A worker's life, after the fork: build the app and serve (see reactor.master)."""
    server = Server(build_app(args), args.config)
    settle_collector()
    server.adopt(listeners)
    try:
        return run_worker(server, ready, max_requests)
    finally:
        _close_app(server)


#: How many of the collector's middle passes may run between two full ones
#: (Python's default: 10). See :func:`settle_collector`.
GC_FULL_PASS_EVERY = 1000


def settle_collector() -> None:
    """Set the cyclic garbage collector up for a long-lived server process,
    once the application is loaded (docs/wsgi.md, "The p99 with idle
    connections").

    A full pass of the collector visits every object that is alive, each idle
    connection's five among them (its socket, selector key, transport,
    parser and connection), and holds the interpreter lock while it does: 50
    ms with 10,000 connections open, during which no request is answered.
    Python starts one after ten middle passes once the old generation has
    grown by a quarter, which a loaded server reaches every second or two
    (the objects of the requests in progress when a pass runs survive it).
    So the objects that exist now (the modules, the application) are moved
    out of the collector's sight (``gc.freeze()``), and a full pass waits
    for :data:`GC_FULL_PASS_EVERY` middle passes (a minute or more under
    load) instead of 10. Young and middle passes are unchanged: garbage in
    cycles is still found, most of it in the young generation; what reaches
    the old one waits longer. An application that set its own thresholds
    keeps them.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if old == 10:
        gc.set_threshold(young, middle, GC_FULL_PASS_EVERY)


def _close_app(server: Server) -> None:
    """Let an app release what it holds past its server (the demo's broker connections)."""
    getattr(server.app, "close", lambda: None)()


def _remove_socket_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
