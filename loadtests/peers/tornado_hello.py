"""The benchmark app on tornado: two ``RequestHandler`` classes on one IOLoop.

Run: ``python -m loadtests.peers.tornado_hello --port 8000``. Access logging off.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import tornado.web

HELLO = b"Hello, World!"


class HelloHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write(HELLO)


class EchoHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        self.set_header("Content-Type", "application/octet-stream")
        self.write(self.request.body)


async def serve(host: str, port: int) -> None:
    app = tornado.web.Application(
        [("/", HelloHandler), ("/echo", EchoHandler)], log_function=lambda handler: None
    )
    app.listen(port, address=host, backlog=1024)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("tornado.access").disabled = True
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
