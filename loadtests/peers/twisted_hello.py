"""The benchmark app on twisted.web: a ``Resource`` tree on the default reactor (epoll if it has it).

Run: ``python -m loadtests.peers.twisted_hello --port 8000``. Access logging off.
"""

from __future__ import annotations

import argparse

try:  # the epoll reactor, where there is one; must come before any other twisted.internet import
    from twisted.internet import epollreactor

    epollreactor.install()
except ImportError:  # pragma: no cover - not Linux
    pass

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

HELLO = b"Hello, World!"


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return HELLO


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/octet-stream")
        assert request.content is not None
        return request.content.read()


class QuietSite(Site):
    def log(self, request: Request) -> None:  # no access log
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    root = Resource()
    root.putChild(b"", Hello())
    root.putChild(b"echo", Echo())
    reactor.listenTCP(args.port, QuietSite(root), backlog=1024, interface=args.host)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
