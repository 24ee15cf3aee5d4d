"""The live view and the metrics endpoint, mounted on any app with one call.

    from reactor import live
    live.mount(app)                    # at /_reactor/

``/_reactor/`` is a page with no external assets where the event loop's
design can be watched: charts of requests/s, loop lag, connections by state
and bytes in and out over the last five minutes (drawn on a ``<canvas>`` by
the page's own script, which keeps a bounded ring of the samples it has
received), the oldest open connections (fd, peer, state, time in state,
bytes, the timer armed), the timer heap and the next deadlines on it. It is
updated once a second over Server-Sent Events (``/_reactor/events``).
``/_reactor/metrics`` is the Prometheus text format; ``/_reactor/stats`` is
the same snapshot the page receives, as JSON.

What it costs the loop:

- Nothing while nobody watches: the snapshot timer runs only while the page
  has a subscriber (:meth:`reactor.streams.Broadcast.every`), and figures are
  computed only when sent.
- While someone watches, one snapshot a second, shared by every watcher:
  counters and connections by state are read, not counted (they are kept as
  connections move, see :mod:`reactor.metrics`); the table takes the first
  ``rows`` connections of the server's registry, which keeps them in accept
  order, so the oldest are first and no connection past them is looked at;
  the next deadlines are found by a walk of O(``TIMERS_SHOWN``) heap entries
  (:meth:`reactor.loop.Loop.upcoming`). With 15,000 connections open, a
  snapshot still looks at ``rows`` of them.

The thread pool (blocking handlers, WSGI apps): threads, busy, queued, done,
refused, stuck, and the queue-wait histogram (read under the pool's lock, when sent).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

from .app import App
from .connection import Connection
from .http.request import Request
from .http.response import Response
from .metrics import Observed, prometheus_text
from .streams import Broadcast, EventStream

if TYPE_CHECKING:
    from .loop import Loop, Timer

__all__ = ["ROWS", "TIMERS_SHOWN", "LiveView", "mount"]

# Prometheus's text exposition format, version 0.0.4.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Connections listed in the table by default (the oldest); the rest are counted.
ROWS = 50
#: How many of the timer heap's next deadlines a snapshot shows.
TIMERS_SHOWN = 8

# What the loop's timers are for, by their callback's name.
_TIMER_KINDS = {
    "Transport._write_timed_out": "write timeout",
    "Server._probe_lag": "lag probe",
    "KeepAlive._expire": "keep-alive timeout, oldest idle connection",  # one for all idle ones
    "FirstBytes._expire": "header timeout, oldest silent new connection",  # one for all of them
    "Broadcast._tick": "ticker",
    "Lingering.end": "lingering close",
    "EventStream._beat": "event stream heartbeat",
}


class LiveView:
    """The routes of the live view; see :func:`mount`."""

    def __init__(self, prefix: str = "/_reactor", interval_s: float = 1.0, rows: int = ROWS) -> None:
        self.prefix = prefix.rstrip("/")
        self.interval_s = interval_s
        self.rows = rows
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
            "table": self.table(server),
            "timer_heap": timer_heap(loop),
            "thread_pool": _pool(server),
        }

    def table(self, server: Observed) -> dict[str, Any]:
        """The oldest ``rows`` open connections, and how many more there are.

        The server keeps its connections in accept order: the first ``rows``
        are the oldest, taken without looking at the rest.
        """
        connections = server.connections
        now = server.loop.now
        rows = [_row(connection, now) for connection in islice(connections, self.rows)]
        return {"open": len(connections), "rows": rows, "more": len(connections) - len(rows)}

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


def _row(connection: Connection, now: float) -> dict[str, Any]:
    """One line of the table: what the connection and its transport already hold."""
    transport = getattr(connection, "transport", None)
    client = connection.client
    armed = connection.armed_timer()
    return {
        "fd": transport.fileno() if transport is not None else -1,
        "peer": f"{client[0]}:{client[1]}" if client[1] else str(client[0]),
        "state": connection.state.value,
        "in_state_s": round(max(0.0, now - connection.entered), 1),
        "bytes_in": transport.received if transport is not None else 0,
        "bytes_out": transport.sent if transport is not None else 0,
        "timer": None if armed is None else {"name": armed[0], "in_s": round(armed[1] - now, 1)},
    }


def timer_heap(loop: Loop) -> dict[str, Any]:
    """The loop's timer heap: its size, how many of its entries are armed, the next deadlines."""
    now = loop.now
    return {
        "size": loop.heap_size(),
        "armed": loop.pending_timers(),
        "next": [
            {"what": _timer_kind(timer), "in_ms": round((timer.when - now) * 1000, 1)}
            for timer in loop.upcoming(TIMERS_SHOWN)
        ],
    }


def _timer_kind(timer: Timer) -> str:
    callback = timer.callback
    if isinstance(callback, Connection):
        # A connection is its state timer's callback (the write timer is its transport's).
        armed = callback.armed_timer()
        name = armed[0] if armed is not None and armed[0] != "write" else "state"
        transport = getattr(callback, "transport", None)
        return f"{name} timeout, fd {transport.fileno() if transport is not None else -1}"
    name = getattr(callback, "__qualname__", type(callback).__qualname__)
    return _TIMER_KINDS.get(name, name)


def _call(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


def mount(app: App, prefix: str = "/_reactor", rows: int = ROWS) -> LiveView:
    """Serve the live view at ``prefix/`` and the metrics at ``prefix/metrics``.

    ``rows``: how many connections (the oldest) the table lists; the rest are counted.
    """
    view = LiveView(prefix, rows=rows)
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
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2rem; color: #1d232a; background: #f7f8fa; }
h1 { font-size: 1.25rem; margin: 0 0 .8rem; }
h2 { font-size: .95rem; margin: 0 0 .4rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(8.5rem, 1fr)); gap: .6rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); gap: .6rem;
          margin-top: .6rem; }
.panels { display: grid; grid-template-columns: 3fr 1fr; gap: .6rem; margin-top: .6rem; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: .5rem .7rem; }
.label { color: #5b6570; font-size: .78rem; }
.value { font: 600 1.25rem/1.3 ui-monospace, monospace; }
canvas { display: block; width: 100%; height: 130px; }
.legend { font: .75rem ui-monospace, monospace; color: #5b6570; min-height: 1.1rem; }
.legend span { margin-right: .8rem; white-space: nowrap; }
.legend i { display: inline-block; width: .7rem; height: .7rem; border-radius: 2px; margin-right: .25rem;
            vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; font: .78rem ui-monospace, monospace; }
th { text-align: left; color: #5b6570; font-weight: normal; border-bottom: 1px solid #dde1e6; }
td, th { padding: .1rem .5rem .1rem 0; }
td.n { text-align: right; }
.states .row { display: flex; align-items: center; gap: .5rem; font: .8rem ui-monospace, monospace; }
.bar { height: .55rem; border-radius: 3px; min-width: 1px; }
#status, .note { color: #5b6570; font-size: .8rem; }
#status { margin-top: .6rem; }
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
<div class="charts">
  <div class="card"><h2>requests / s</h2><canvas id="chart-requests"></canvas>
    <div class="legend" id="legend-requests"></div></div>
  <div class="card"><h2>loop lag (ms)</h2><canvas id="chart-lag"></canvas>
    <div class="legend" id="legend-lag"></div></div>
  <div class="card"><h2>connections by state</h2><canvas id="chart-states"></canvas>
    <div class="legend" id="legend-states"></div></div>
  <div class="card"><h2>bytes / s</h2><canvas id="chart-bytes"></canvas>
    <div class="legend" id="legend-bytes"></div></div>
</div>
<div class="panels">
  <div class="card">
    <h2>open connections, oldest first</h2>
    <table id="connections">
      <thead><tr><th>fd</th><th>peer</th><th>state</th><th class="n">in state</th>
        <th class="n">bytes in</th><th class="n">bytes out</th><th>timer armed</th></tr></thead>
      <tbody></tbody>
    </table>
    <div class="note" id="more"></div>
  </div>
  <div>
    <div class="card states">
      <h2>connections by state</h2>
      <div id="states"></div>
    </div>
    <div class="card" style="margin-top:.6rem">
      <h2>timer heap</h2>
      <div class="note" id="heap">-</div>
      <table id="deadlines"><thead><tr><th>next deadline</th><th class="n">in</th></tr></thead>
        <tbody></tbody></table>
    </div>
    <div class="card" style="margin-top:.6rem">
      <h2>thread pool</h2>
      <div class="note" id="pool">no pool</div>
    </div>
  </div>
</div>
<div id="status">connecting&hellip;</div>
<script>
"use strict";
const fields = ["requests", "requests_per_s", "iterations_per_s", "loop_lag_ms", "timers",
                "accepted", "bytes_received", "bytes_sent"];
// Named as reactor.connection.State's values ("reading headers"), as the home page does.
const STATES = ["idle", "reading_headers", "reading_body", "writing", "streaming", "pushing", "upgraded",
                "closing", "in_pool"];
const COLORS = {idle: "#8c96a0", reading_headers: "#3b7dd8", reading_body: "#17a2b8", writing: "#28a745",
                streaming: "#e0a800", pushing: "#a05cd6", upgraded: "#20c997", closing: "#d9534f",
                in_pool: "#fd7e14"};
// One sample a second: the charts show the last five minutes, and never keep more.
const HISTORY = 300;
const samples = [];

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + "\\u00a0" + units[i];
}

function ceiling(most) {
  // A top for the y axis that is four round steps (1, 2, 2.5 or 5 times a power of ten).
  if (most <= 0) return 4;
  const quarter = most / 4;
  const power = Math.pow(10, Math.floor(Math.log10(quarter)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= quarter) return 4 * step * power;
  return 40 * power;
}

function chart(name, series, format) {
  const canvas = document.getElementById("chart-" + name);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 58, top = 6, bottom = height - 16, right = width - 4;
  let most = 0;
  for (const s of series) for (const v of s.values) most = Math.max(most, v);
  const top_value = ceiling(most);
  ctx.font = "10px ui-monospace, monospace";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - top) * i / 4;
    ctx.strokeStyle = i ? "#eef0f3" : "#c5cbd2";
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.fillStyle = "#5b6570";
    ctx.fillText(format(top_value * i / 4), left - 4, y);
  }
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  // The x axis spans the samples so far, at least a minute, at most HISTORY seconds.
  const span = Math.min(HISTORY, Math.max(60, ...series.map((s) => s.values.length)));
  ctx.fillText(span % 60 ? "-" + span + " s" : "-" + (span / 60) + " min", left, height - 3);
  ctx.textAlign = "right";
  ctx.fillText("now", right, height - 3);
  const step = (right - left) / (span - 1);
  for (const s of series) {
    const n = s.values.length;
    if (!n) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = right - (n - 1 - i) * step;
      const y = bottom - (bottom - top) * v / top_value;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
  ctx.lineWidth = 1;
  document.getElementById("legend-" + name).replaceChildren(...series.map((s) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    const last = s.values.length ? s.values[s.values.length - 1] : 0;
    item.append(swatch, s.label + " " + format(last));
    return item;
  }));
}

function drawCharts() {
  const column = (key) => samples.map((sample) => sample[key]);
  const number = (v) => v >= 1000 ? (v / 1000).toFixed(1) + "k" : String(Math.round(v * 10) / 10);
  chart("requests", [{label: "requests/s", color: "#3b7dd8", values: column("requests_per_s")}], number);
  chart("lag", [{label: "lag ms", color: "#d9534f", values: column("loop_lag_ms")}],
        (v) => v.toFixed(v < 10 ? 2 : 0));
  chart("states", STATES.map((state) => ({label: state.replaceAll("_", " "), color: COLORS[state],
        values: samples.map((sample) => sample.connections[state] || 0)})), number);
  chart("bytes", [{label: "in", color: "#17a2b8", values: column("received_per_s")},
                  {label: "out", color: "#28a745", values: column("sent_per_s")}], bytes);
}

function cell(row, text, numeric) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "n";
  row.append(td);
}

function showTable(table) {
  const body = document.querySelector("#connections tbody");
  body.replaceChildren(...table.rows.map((c) => {
    const row = document.createElement("tr");
    row.dataset.state = c.state;
    cell(row, String(c.fd), false);
    cell(row, c.peer, false);
    cell(row, c.state, false);
    cell(row, c.in_state_s.toFixed(1) + "\\u00a0s", true);
    cell(row, bytes(c.bytes_in), true);
    cell(row, bytes(c.bytes_out), true);
    cell(row, c.timer ? c.timer.name + " in " + c.timer.in_s.toFixed(1) + "\\u00a0s" : "-", false);
    return row;
  }));
  document.getElementById("more").textContent = table.more
    ? table.more.toLocaleString("en") + " more (" + table.open.toLocaleString("en") + " open)"
    : table.open.toLocaleString("en") + " open";
}

function showPool(p) {
  let waits = "";
  p.wait_counts.forEach((n, i) => {
    const bound = p.wait_buckets_s[i];
    if (n) waits += " \u2264" + (bound === undefined ? "inf" : bound * 1000 + " ms") + ": " + n;
  });
  document.getElementById("pool").textContent =
    p.busy + " of " + p.threads + " threads busy (" + p.started + " started), " +
    p.queued + " queued (bound " + p.queue_bound + "), " + p.completed + " done, " +
    p.rejected + " refused, " + p.stuck + " stuck; waits" + (waits || " -");
}
function showHeap(heap) {
  document.getElementById("heap").textContent =
    heap.size.toLocaleString("en") + " entries, " + heap.armed.toLocaleString("en") + " armed, " +
    (heap.size - heap.armed).toLocaleString("en") + " dead (cancelled or moved later)";
  document.querySelector("#deadlines tbody").replaceChildren(...heap.next.map((t) => {
    const row = document.createElement("tr");
    cell(row, t.what, false);
    cell(row, (t.in_ms / 1000).toFixed(2) + "\\u00a0s", true);
    return row;
  }));
}

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
    const name = state.replaceAll("_", " ");
    label.textContent = name.padEnd(16, "\\u00a0") + String(count).padStart(6, "\\u00a0");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.background = COLORS[state] || "#3b7dd8";
    bar.style.width = (5 * count / most) + "rem";
    row.append(label, bar);
    return row;
  }));
  samples.push(stats);
  if (samples.length > HISTORY) samples.shift();
  drawCharts();
  showTable(stats.table);
  showHeap(stats.timer_heap);
  if (stats.thread_pool) showPool(stats.thread_pool);
  document.getElementById("status").textContent =
    "updated " + new Date().toLocaleTimeString() + " \\u00b7 " + stats.watchers + " watching";
}
const source = new EventSource("{prefix}/events");
source.addEventListener("stats", (event) => show(JSON.parse(event.data)));
source.onerror = () => { document.getElementById("status").textContent = "reconnecting\\u2026"; };
window.addEventListener("resize", drawCharts);
</script>
</body>
</html>
"""


def _pool(server: Any) -> dict[str, Any] | None:
    """The thread pool's figures, or None for a server without one."""
    pool = getattr(server, "pool", None)
    return None if pool is None else pool.snapshot()
