"""The handler table: routes from method and path to a handler.

A handler is a plain function ``handler(request) -> result`` that runs on the
loop thread, so it must not block. The result is a
:class:`~reactor.http.response.Response`, or a shorthand for one:

============== ======================================================
``str``        ``text/plain; charset=utf-8``
``bytes``      ``application/octet-stream``
``dict``       ``application/json`` (also ``list``)
``None``       ``204 No Content``
a generator    a streamed ``application/octet-stream`` body, pulled
               as the socket drains (any iterator of bytes or str)
a PushStream   a long-lived body written to later; an ``EventStream``
               is ``text/event-stream`` (see :mod:`reactor.streams`)
============== ======================================================

Paths are matched exactly (a dictionary look-up) or by pattern: ``{name}``
matches one path segment, ``{name:path}`` the rest of the path, and the values
land in ``request.params``. A path that matches with the wrong method gets 405
with ``Allow``; one that matches nothing gets 404; a method that no route of
the app knows gets 501 (see :meth:`App.knows`). ``HEAD`` is answered by the
``GET`` handler (the connection sends the headers alone), and ``OPTIONS`` gets
the ``Allow`` list unless a handler is registered for it.

:meth:`App.websocket` adds a WebSocket route (RFC 6455): the ``GET`` of its
path runs the opening handshake, and an accepted socket calls its handler's
``on_open(ws)``, ``on_message(ws, data)``, ``on_close(ws, code, reason)`` and
``on_drain(ws)`` on the loop thread (see :mod:`reactor.websocket`). An
``Upgrade: websocket`` request to any other route is answered as a plain
request (RFC 9110 §7.8: the upgrade is optional).

A handler that raises :class:`~reactor.http.errors.HTTPError` answers with its
status, a one-line text body and its headers (``raise HTTPError(404, "no such
item")``); :meth:`Request.json <reactor.http.request.Request.json>` raises one
(400) for a body that is not JSON.

:meth:`App.static` mounts a directory of files (:class:`reactor.static.StaticFiles`)
under a prefix. Exact paths are looked up before patterns, and patterns are
tried in the order they were added: mount ``"/"`` last so that it only gets
what no other route takes.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .compress import Gzip
from .http.errors import HTTPError
from .http.request import Request
from .http.response import Response, status_text
from .log import error_log, escape
from .pool import Handoff, Offload
from .static import StaticFiles
from .streams import EventStream, PushStream
from .websocket.route import WebSocketRoute

if TYPE_CHECKING:
    from .server import Server

__all__ = ["App", "Handler", "to_response"]

Handler = Callable[[Request], Any]
H = TypeVar("H", bound=Handler)

# Caches must not keep an event stream, and proxies must not buffer it.
_EVENT_STREAM_HEADERS = [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]

# Shared by every exact route, and read-only, so that no request can write
# into another's parameters.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})

# Runs on route paths the application registers, never on client bytes.
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")

# Methods every app knows, whatever its routes: RFC 9110 §9.1 requires a
# general-purpose server to support GET and HEAD, so on a path without them
# they are 405, never 501; OPTIONS is answered by the app itself (the Allow
# list) on every path.
_ALWAYS_KNOWN = frozenset(("GET", "HEAD", "OPTIONS"))


class _Route:
    __slots__ = ("path", "pattern", "handlers")

    def __init__(self, path: str, pattern: re.Pattern[str] | None) -> None:
        self.path = path
        self.pattern = pattern
        self.handlers: dict[str, Handler] = {}

    def allow(self) -> str:
        methods = set(self.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        methods.add("OPTIONS")
        return ", ".join(sorted(methods))


def _compile(path: str) -> re.Pattern[str] | None:
    """A regex for a path with ``{params}``, or None for a plain path.

    The pattern runs on every request's path, so it is built to match one way
    only (linear time): a ``{name}`` parameter is ``[^/]+``, which cannot take
    a "/", and each path segment holds at most one parameter, so every
    parameter is pinned between fixed slashes; a ``{name:path}`` parameter
    (``.+``) must be the last one, so no other parameter competes with it for
    the same characters. ``/{a}-{b}`` or ``/{a:path}/{b}`` could be cut in many
    ways, and a failing match would try them all: they are refused here.
    """
    if not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    if "{" not in path:
        return None
    parts = []
    last = 0
    segment_of_last_param = -1
    after_path_param = False
    for match in _PARAM.finditer(path):
        if after_path_param:
            raise ValueError(f"route {path!r}: a {{name:path}} parameter must be the last one")
        segment = path.count("/", 0, match.start())
        if segment == segment_of_last_param:
            raise ValueError(f"route {path!r}: one parameter per path segment")
        segment_of_last_param = segment
        parts.append(re.escape(path[last : match.start()]))
        after_path_param = bool(match.group(2))
        body = ".+" if after_path_param else "[^/]+"
        parts.append(f"(?P<{match.group(1)}>{body})")
        last = match.end()
    parts.append(re.escape(path[last:]))
    return re.compile("".join(parts))


class App:
    """A table of routes. Use :meth:`route` or :meth:`add_route` to fill it."""

    def __init__(self) -> None:
        self._exact: dict[str, _Route] = {}
        self._patterns: list[_Route] = []
        self._methods: set[str] = set()  # every method some route registers
        self._attach_hooks: list[Callable[[Server], object]] = []
        self._static: list[StaticFiles] = []
        #: Whether some route takes its request at the head (``stream=True``
        #: or ``max_body=``): only then does the connection ask
        #: :meth:`stream_body`, so that a request with a body otherwise costs
        #: one attribute look-up, not a call and a second routing.
        self.at_head = False
        # Set from the server's Config on attach (None: responses go as they are).
        self._compress: Gzip | None = None
        self._websockets: list[WebSocketRoute] = []

    def attach(self, server: Server) -> None:
        """Called by the :class:`~reactor.server.Server` that serves this app."""
        config = server.config
        if config.gzip:
            self._compress = Gzip(config.gzip_level, config.gzip_min_bytes)
        else:
            self._compress = None
            for handler in self._static:
                handler.gzip_static = False
        for route in self._websockets:
            route.config = config
        for hook in self._attach_hooks:
            hook(server)

    def on_attach(self, hook: Callable[[Server], object]) -> None:
        """Call ``hook(server)`` when a server takes this app (for mounted tools)."""
        self._attach_hooks.append(hook)

    def add_route(
        self,
        path: str,
        handler: Handler,
        methods: Iterable[str] = ("GET",),
        *,
        blocking: bool = False,
        stream: bool = False,
        max_body: int | None = None,
    ) -> None:
        """Answer ``methods`` on ``path`` with ``handler``.

        ``blocking=True``: the handler may block (a database query, a file,
        ``time.sleep``), so it runs in the server's thread pool, never on the
        loop (see docs/wsgi.md); its result is what it would be on the loop.
        ``stream=True`` (blocking too): the handler is called as soon as the
        head is in and reads the body as it arrives with
        :meth:`Request.stream` (or :meth:`Request.body_file`), so an upload
        never sits in memory whole. ``max_body``: this route's own body limit
        in bytes (413 above it), at most the server's ``max_body_bytes``,
        which the parser applies to every request first.

        Raises:
            ValueError: the path does not start with ``/``, or a method on it
                already has a handler.
        """
        if max_body is not None and max_body < 0:
            raise ValueError(f"max_body must be 0 or more, not {max_body!r}")
        if blocking or stream:
            handler = _Blocking(self, handler, stream, max_body)
            self.at_head = self.at_head or stream or max_body is not None
        elif max_body is not None:
            raise ValueError("max_body needs blocking=True or stream=True")
        pattern = _compile(path)
        if pattern is None:
            route = self._exact.setdefault(path, _Route(path, None))
        else:
            for route in self._patterns:
                if route.pattern is not None and route.pattern.pattern == pattern.pattern:
                    break
            else:
                route = _Route(path, pattern)
                self._patterns.append(route)
        for method in methods:
            method = method.upper()
            if method in route.handlers:
                raise ValueError(f"{method} {path} already has a handler")
            route.handlers[method] = handler
            self._methods.add(method)

    def knows(self, method: str) -> bool:
        """Whether some route of this app (a static mount included) takes ``method``.

        A method no route knows is answered 501 Not Implemented on every path
        (RFC 9110 §9.1 and §15.6.2: the server does not support it for any
        resource); a known one on a path that does not take it is 405 with
        ``Allow``. GET, HEAD and OPTIONS are always known (see
        ``_ALWAYS_KNOWN``). Routes added later, by a mounted tool on
        :meth:`attach` say, count from then on.
        """
        return method in self._methods or method in _ALWAYS_KNOWN

    def route(
        self,
        path: str,
        methods: Iterable[str] = ("GET",),
        *,
        blocking: bool = False,
        stream: bool = False,
        max_body: int | None = None,
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`add_route`."""

        def register(handler: H) -> H:
            self.add_route(path, handler, methods, blocking=blocking, stream=stream, max_body=max_body)
            return handler

        return register

    def websocket(
        self,
        path: str,
        handler: Callable[[], Any] | None = None,
        *,
        on_open: Callable[..., object] | None = None,
        on_message: Callable[..., object] | None = None,
        on_close: Callable[..., object] | None = None,
        on_drain: Callable[..., object] | None = None,
        subprotocols: Iterable[str] = (),
        origins: str | Iterable[str] | None = None,
        max_message: int | None = None,
        compression: bool = True,
    ) -> Any:
        """Serve WebSockets at ``path`` (path parameters work as in :meth:`route`).

        Either decorate a class (or any factory) whose instances handle one
        socket each, with any of ``on_open(ws)``, ``on_message(ws, data)``,
        ``on_close(ws, code, reason)`` and ``on_drain(ws)``::

            @app.websocket("/echo")
            class Echo:
                def on_message(self, ws, data):
                    ws.send(data)

        or pass the callbacks themselves (``app.websocket("/echo",
        on_message=echo)``), shared by every socket. ``subprotocols`` are the
        ones the route speaks, most preferred first; ``origins`` the allowed
        ``Origin`` values (default: the server's ``ws_origins``);
        ``max_message`` the largest message in bytes (default:
        ``ws_max_message_bytes``); ``compression`` whether to accept
        permessage-deflate.

        Raises:
            ValueError: as :meth:`add_route` (the path's GET is taken).
        """
        callbacks = {
            name: callback
            for name, callback in (
                ("on_open", on_open),
                ("on_message", on_message),
                ("on_close", on_close),
                ("on_drain", on_drain),
            )
            if callback is not None
        }

        def register(factory: Callable[[], Any]) -> Any:
            route = WebSocketRoute(factory, subprotocols, origins, max_message, compression)
            self.add_route(path, route, methods=("GET",))
            self._websockets.append(route)
            return factory

        if callbacks:
            if handler is not None:
                raise TypeError("give a handler factory or callbacks, not both")
            shared = _Callbacks(callbacks)
            register(lambda: shared)
            return shared
        if handler is not None:
            return register(handler)
        return register

    def get(self, path: str, *, blocking: bool = False) -> Callable[[H], H]:
        """``@app.get(path)``: :meth:`route` for GET (and so HEAD)."""
        return self.route(path, ("GET",), blocking=blocking)

    def post(
        self, path: str, *, blocking: bool = False, stream: bool = False, max_body: int | None = None
    ) -> Callable[[H], H]:
        """``@app.post(path)``: :meth:`route` for POST."""
        return self.route(path, ("POST",), blocking=blocking, stream=stream, max_body=max_body)

    def stream_body(self, request: Request) -> Callable[[Handoff], None] | None:
        """At the head of a request with a body: the work for a route that
        takes its body as it arrives (``stream=True``), or one that answers
        413 for a body over its ``max_body``; None to read the body first."""
        selected = self._select(request)
        if type(selected) is not _Blocking:
            return None
        limit = selected.max_body
        if limit is not None and request.content_length is not None and request.content_length > limit:
            refusal = Response.text(status_text(413, f"the body is over {limit} bytes"), 413)
            return lambda handoff: handoff.respond(refusal)
        if not selected.stream:
            return None
        handler = selected.handler

        def work(handoff: Handoff) -> None:
            request._reader = partial(handoff.read, partial=True)
            request._limit = limit
            self.run_blocking(handler, request, handoff)

        return work

    def run_blocking(self, handler: Handler, request: Request, handoff: Handoff) -> None:
        """In a pool thread: what :meth:`handle` does after routing, for a
        blocking handler; the response goes back through ``handoff``."""
        try:
            response = to_response(handler(request))
        except HTTPError as exc:
            response = _error_response(request, exc)
        else:
            compress = self._compress
            if compress is not None:
                body = response.body
                if type(body) is not bytes or len(body) >= compress.min_bytes:
                    response = compress(request, response)
        handoff.respond(response)

    def static(self, prefix: str, directory: str | os.PathLike[str], **options: Any) -> StaticFiles:
        """Serve the files under ``directory`` at ``prefix`` (GET and HEAD).

        ``options`` go to :class:`~reactor.static.StaticFiles`: ``index``,
        ``listing``, ``show_dotfiles``, ``cache_control``, ``max_ranges``,
        ``gzip_static`` (turned off when the server's ``Config.gzip`` is).
        ``/static`` redirects to ``/static/``, which serves the index.

        Raises:
            ValueError: ``prefix`` does not start with ``/``, or a route it
                needs is taken.
            NotADirectoryError: ``directory`` is not a directory.
        """
        handler = StaticFiles(directory, prefix=prefix, **options)
        self._static.append(handler)
        for path in handler.routes():
            self.add_route(path, handler, methods=("GET",))
        return handler

    def _match(self, request: Request) -> tuple[_Route | None, Mapping[str, str]]:
        for route in self._patterns:
            assert route.pattern is not None
            match = route.pattern.fullmatch(request.path)
            if match is not None:
                return route, match.groupdict()
        return None, _NO_PARAMS

    def _select(self, request: Request) -> Handler | Response:
        """The handler for ``request``, or the response that refuses it."""
        if request.path == "*":
            methods = self._methods | ({"OPTIONS", "HEAD"} if "GET" in self._methods else {"OPTIONS"})
            return Response(b"", 204, headers=[("Allow", ", ".join(sorted(methods)))])
        route = self._exact.get(request.path)
        params: Mapping[str, str] = _NO_PARAMS
        if route is None:
            route, params = self._match(request)
        method = request.method
        # The 501 check runs only on the way to a refusal: a request that
        # finds its handler never pays for it.
        if route is None:
            if not self.knows(method):
                return Response.text("501 Not Implemented\n", 501)
            return Response.text("404 Not Found\n", 404)
        handler = route.handlers.get(method)
        if handler is None and method == "HEAD":
            handler = route.handlers.get("GET")
        if handler is None:
            if method == "OPTIONS":
                return Response(b"", 204, headers=[("Allow", route.allow())])
            if not self.knows(method):
                return Response.text("501 Not Implemented\n", 501)
            return Response.text("405 Method Not Allowed\n", 405, headers=[("Allow", route.allow())])
        request.params = params
        request.route = route.path
        return handler

    def handle(self, request: Request) -> Response:
        """Route ``request`` and turn the handler's result into a response.

        An :class:`~reactor.http.errors.HTTPError` from the handler becomes
        its response. Any other exception propagates: the connection answers
        500 and logs the traceback. A handler's response is then gzipped
        when the client accepts it and the server's ``Config.gzip`` is on
        (see :mod:`reactor.compress`).
        """
        selected = self._select(request)
        if isinstance(selected, Response):
            return selected
        try:
            result = selected(request)
            # A Response, the common result, needs no call to become one.
            response = result if result.__class__ is Response else to_response(result)
        except HTTPError as exc:
            return _error_response(request, exc)
        compress = self._compress
        if compress is None:
            return response
        body = response.body
        if type(body) is bytes and len(body) < compress.min_bytes:
            return response  # most small answers stop here, at no call's cost
        return compress(request, response)

    def respond_early(self, request: Request) -> Response | None:
        """For ``Expect: 100-continue``: the 404, 405 or 501 that makes the body moot."""
        selected = self._select(request)
        return selected if isinstance(selected, Response) else None

    def __call__(self, request: Request) -> Response:
        return self.handle(request)


class _Callbacks:
    """The handler of a route given its callbacks: one object shared by every socket."""

    def __init__(self, callbacks: Mapping[str, Callable[..., object]]) -> None:
        for name, callback in callbacks.items():
            setattr(self, name, callback)  # an instance attribute: called as callback(ws, ...)


class _Blocking:
    """A blocking handler as the route table holds it: called on the loop, it
    asks the connection to run the real one in the pool (see reactor.pool)."""

    __slots__ = ("app", "handler", "stream", "max_body")

    def __init__(self, app: App, handler: Handler, stream: bool, max_body: int | None) -> None:
        # Weak: the app holds its routes, and a route holding the app back
        # would be a cycle, freed only by a garbage collection.
        self.app = weakref.ref(app)
        self.handler = handler
        self.stream = stream  # called at the head; reads the body with request.stream()
        self.max_body = max_body

    def __call__(self, request: Request) -> Any:
        app, handler, limit = self.app(), self.handler, self.max_body
        assert app is not None, "a route outlived its app"
        if limit is not None and len(request.body) > limit:  # a chunked body read whole
            raise HTTPError(413, f"the body is over {limit} bytes")

        def work(handoff: Handoff) -> None:
            app.run_blocking(handler, request, handoff)

        raise Offload(work)


def _error_response(request: Request, error: HTTPError) -> Response:
    """The answer to a handler's :class:`HTTPError`, logged on one line.

    An HTTPError is an answer the handler chose, not a crash: no traceback.
    A 5xx is logged at INFO (the server could not do something), a 4xx at
    DEBUG (the client asked for something it cannot have; the access log has
    the status anyway).
    """
    status = error.status
    text = status_text(status, error.detail)
    # A bad header here (a CR in a WWW-Authenticate built from input, say)
    # raises LocalProtocolError: the connection answers 500 and logs it, with
    # this HTTPError as its context, so the traceback shows the raise.
    response = Response.text(text, status, headers=error.headers)
    level = logging.INFO if status >= 500 else logging.DEBUG
    if error_log.isEnabledFor(level):
        error_log.log(
            level,
            "%d from handler for %s %s: %s",
            status,
            request.method,
            escape(request.path),
            escape(error.detail, 200),
        )
    return response


def to_response(result: Any) -> Response:
    """Turn a handler's result into a :class:`Response` (see the module docs)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(result.encode(), 200, content_type="text/plain; charset=utf-8")
    if isinstance(result, bytes):
        return Response(result, 200, content_type="application/octet-stream")
    if isinstance(result, (dict, list)):
        return Response.json(result)
    if result is None:
        return Response(b"", 204)
    if isinstance(result, PushStream):
        headers = _EVENT_STREAM_HEADERS if isinstance(result, EventStream) else []
        return Response(result, 200, headers=headers, content_type=result.content_type)
    if isinstance(result, Iterator):
        return Response(result, 200, content_type="application/octet-stream")
    raise TypeError(
        f"a handler returned {type(result).__name__}, not a Response, str, bytes, dict, iterator or stream"
    )
