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
