"""The benchmark app on aiohttp: a ``web.Application`` with two routes, access log off.

Run: ``python -m loadtests.peers.aiohttp_hello --port 8000``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

HELLO = b"Hello, World!"


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=HELLO, content_type="text/plain")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type="application/octet-stream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.add_routes([web.get("/", hello), web.post("/echo", echo)])
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
