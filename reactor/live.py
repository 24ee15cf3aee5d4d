"""The live view and the metrics endpoint, mounted on any app with one call.

    from reactor import live
    live.mount(app)                    # at /_reactor/

``/_reactor/`` is a page with no external assets that shows connections by
state, loop iterations per second, loop lag, pending timers, requests and
bytes, updated once a second over Server-Sent Events (``/_reactor/events``).
``/_reactor/metrics`` is the Prometheus text format; ``/_reactor/stats`` is
the same snapshot the page receives, as JSON.

The snapshot timer runs only while someone watches the page.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable
from typing import Any

from .app import App
from .http.request import Request
from .http.response import Response
from .metrics import Observed, prometheus_text
from .streams import Broadcast, EventStream

__all__ = ["LiveView", "mount"]

# Prometheus's text exposition format, version 0.0.4.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LiveView:
    """The routes of the live view; see :func:`mount`."""

    def __init__(self, prefix: str = "/_reactor", interval_s: float = 1.0) -> None:
        self.prefix = prefix.rstrip("/")
        self.interval_s = interval_s
        # The server holds the app, which holds this view: a weak reference
        # back keeps that from being a cycle.
        self._server: weakref.ref[Observed] | None = None
        self.watchers = Broadcast()
        self._previous: tuple[float, int, int, int, int] | None = None

    @property
    def server(self) -> Observed | None:
        """The server this view shows (None before it is attached, or once it is gone)."""
        return self._server() if self._server is not None else None

    def attach(self, server: Observed) -> None:
        self._server = weakref.ref(server)
        # The broadcast is this view's own: a weak method keeps its ticker's
        # callback from holding the view that holds the broadcast.
        publish = weakref.WeakMethod(self._publish)
        self.watchers.every(server.loop, self.interval_s, lambda: _call(publish))

    def snapshot(self) -> dict[str, Any]:
        """The figures the page shows, with rates over the time since the last call."""
        server = self.server
        assert server is not None, "the live view is not attached to a server"
        metrics, loop = server.metrics, server.loop
        now = time.monotonic()
        counters = (now, loop.iterations, metrics.requests, metrics.bytes_received, metrics.bytes_sent)
        previous = self._previous or counters
        elapsed = max(now - previous[0], 1e-9)
        self._previous = counters
        return {
            "connections": {state.lower(): count for state, count in server.count_by_state().items()},
            "accepted": server.accepted,
            "requests": metrics.requests,
            "rejected": metrics.rejected,
            "bytes_received": metrics.bytes_received,
            "bytes_sent": metrics.bytes_sent,
            "iterations": loop.iterations,
            "iterations_per_s": round((counters[1] - previous[1]) / elapsed, 1),
            "requests_per_s": round((counters[2] - previous[2]) / elapsed, 1),
            "received_per_s": round((counters[3] - previous[3]) / elapsed),
            "sent_per_s": round((counters[4] - previous[4]) / elapsed),
            "loop_lag_ms": round(metrics.loop_lag_s * 1000, 3),
            "loop_lag_max_ms": round(metrics.loop_lag_max_s * 1000, 3),
            "timers": loop.pending_timers(),
            "slow_handlers": metrics.slow_handlers,
            "watchers": len(self.watchers),
        }

    def _publish(self) -> None:
        self.watchers.send_event(json.dumps(self.snapshot(), separators=(",", ":")), event="stats")

    # -- routes ---------------------------------------------------------------

    def page(self, request: Request) -> Response:
        # no-store: the page has no validator, so revalidating it would be a
        # full fetch anyway (no-cache without one draws REDbot's warning).
        return Response.html(_PAGE.replace("{prefix}", self.prefix), headers=[("Cache-Control", "no-store")])

    def events(self, request: Request) -> EventStream:
        stream = self.watchers.add(EventStream())
        # The first figures at once, not a second later.
        stream.send_event(json.dumps(self.snapshot(), separators=(",", ":")), event="stats")
        return stream

    def stats(self, request: Request) -> Response:
        # Live figures, stale at once: no cache may keep them (without this
        # header, a cache could serve them for a lifetime of its own choosing).
        return Response.json(self.snapshot(), headers=[("Cache-Control", "no-store")])

    def metrics(self, request: Request) -> Response:
        server = self.server
        assert server is not None, "the live view is not attached to a server"
        # no-store: a scrape must see the figures of now, never a cached copy.
        return Response(
            prometheus_text(server),
            headers=[("Cache-Control", "no-store")],
            content_type=PROMETHEUS_CONTENT_TYPE,
        )


def _call(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


def mount(app: App, prefix: str = "/_reactor") -> LiveView:
    """Serve the live view at ``prefix/`` and the metrics at ``prefix/metrics``."""
    view = LiveView(prefix)
    app.add_route(f"{view.prefix}/", view.page)
    app.add_route(f"{view.prefix}/events", view.events)
    app.add_route(f"{view.prefix}/stats", view.stats)
    app.add_route(f"{view.prefix}/metrics", view.metrics)
    app.on_attach(view.attach)
    return view


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reactor live</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232a; background: #f7f8fa; }
h1 { font-size: 1.3rem; margin: 0 0 1rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .75rem; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: .6rem .8rem; }
.label { color: #5b6570; font-size: .8rem; }
.value { font: 600 1.4rem/1.3 ui-monospace, monospace; }
.states .row { display: flex; align-items: center; gap: .5rem; font: .9rem ui-monospace, monospace; }
.bar { height: .6rem; background: #3b7dd8; border-radius: 3px; min-width: 1px; }
#status { color: #5b6570; font-size: .85rem; margin-top: 1rem; }
</style>
</head>
<body>
<h1>reactor &middot; live</h1>
<div class="grid">
  <div class="card"><div class="label">requests</div><div class="value" id="requests">-</div></div>
  <div class="card"><div class="label">requests / s</div><div class="value" id="requests_per_s">-</div></div>
  <div class="card"><div class="label">loop iterations / s</div>
    <div class="value" id="iterations_per_s">-</div></div>
  <div class="card"><div class="label">loop lag (ms)</div><div class="value" id="loop_lag_ms">-</div></div>
  <div class="card"><div class="label">pending timers</div><div class="value" id="timers">-</div></div>
  <div class="card"><div class="label">accepted</div><div class="value" id="accepted">-</div></div>
  <div class="card"><div class="label">bytes in</div><div class="value" id="bytes_received">-</div></div>
  <div class="card"><div class="label">bytes out</div><div class="value" id="bytes_sent">-</div></div>
</div>
<div class="card states" style="margin-top:.75rem">
  <div class="label">connections by state</div>
  <div id="states"></div>
</div>
<div id="status">connecting&hellip;</div>
<script>
"use strict";
const fields = ["requests", "requests_per_s", "iterations_per_s", "loop_lag_ms", "timers",
                "accepted", "bytes_received", "bytes_sent"];
function show(stats) {
  for (const name of fields) {
    document.getElementById(name).textContent = stats[name].toLocaleString("en");
  }
  const states = document.getElementById("states");
  const most = Math.max(1, ...Object.values(stats.connections));
  states.replaceChildren(...Object.entries(stats.connections).map(([state, count]) => {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    // Named as reactor.connection.State's values ("reading headers"), as the home page does.
    const name = state.replaceAll("_", " ");
    label.textContent = name.padEnd(16, "\\u00a0") + String(count).padStart(6, "\\u00a0");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = (12 * count / most) + "rem";
    row.append(label, bar);
    return row;
  }));
  document.getElementById("status").textContent =
    "updated " + new Date().toLocaleTimeString() + " \\u00b7 " + stats.watchers + " watching";
}
const source = new EventSource("{prefix}/events");
source.addEventListener("stats", (event) => show(JSON.parse(event.data)));
source.onerror = () => { document.getElementById("status").textContent = "reconnecting\\u2026"; };
</script>
</body>
</html>
"""
