"""The WebSocket benchmark app: ``python -m reactor --app loadtests.ws_apps:app``.

``/ws/echo`` echoes; ``/ws/feed`` subscribes the socket to one :class:`~reactor.streams.Broadcast`;
``POST /publish?count=N&size=B`` publishes N messages of B bytes to it in one loop callback and
answers how many deliveries were made and how many skipped (not writable).
"""

from __future__ import annotations

from reactor import App, Broadcast, Request

app = App()
feed = Broadcast()

app.websocket("/ws/echo", on_message=lambda ws, data: ws.send(data), compression=False)
app.websocket("/ws/feed", on_open=feed.add, compression=False)


@app.route("/")
def index(request: Request) -> str:
    return "ws_apps"


@app.route("/publish", methods=["POST"])
def publish(request: Request) -> dict[str, int]:
    count = min(int(request.query.get("count", "1")), 10_000)
    size = min(int(request.query.get("size", "64")), 65_536)
    message = "m" * size
    skipped = feed.skipped
    delivered = sum(feed.send(message) for _ in range(count))
    return {"delivered": delivered, "skipped": feed.skipped - skipped, "subscribers": len(feed)}
