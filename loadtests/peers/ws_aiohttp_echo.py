"""The WebSocket echo benchmark peer on aiohttp (``web.WebSocketResponse``, no compression).

Run: ``python -m loadtests.peers.ws_aiohttp_echo --port 8000`` (the echo is at ``/ws/echo``).
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=16 << 20)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.add_routes([web.get("/ws/echo", echo)])
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
