"""The WebSocket echo benchmark peer on the ``websockets`` library (asyncio server, no compression).

Run: ``python -m loadtests.peers.ws_websockets_echo --port 8000`` (any path echoes).
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    async with serve(echo, host, port, compression=None, max_size=16 << 20, backlog=1024):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
