"""The benchmark app: ``python -m reactor --app loadtests.hello:app --port PORT``.

``GET /`` answers ``Hello, World!`` as text/plain; ``POST /echo`` echoes the body.
"""

from reactor import App, Request, Response

app = App()

HELLO = b"Hello, World!"


@app.route("/")
def hello(request: Request) -> Response:
    return Response(HELLO, content_type="text/plain")


@app.route("/echo", methods=["POST"])
def echo(request: Request) -> Response:
    return Response(request.body, content_type="application/octet-stream")


@app.route("/bytes/{n}")
def some_bytes(request: Request) -> Response:
    """``n`` bytes (at most 64 MiB): a large response for slow-reader tests."""
    n = int(request.params["n"]) if request.params["n"].isdigit() else 0
    return Response(b"x" * min(n, 64 << 20), content_type="application/octet-stream")
