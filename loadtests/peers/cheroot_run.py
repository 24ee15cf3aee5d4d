"""Serve a WSGI app with cheroot (CherryPy's server): ``python -m loadtests.peers.cheroot_run MODULE:APP``.

``--host``, ``--port`` (0: any), ``--threads`` (cheroot's default is 10; the
benchmark passes 4, as waitress and gunicorn get) and ``--timeout`` (seconds a
keep-alive connection may idle).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Any

from cheroot import wsgi


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--timeout", type=int, default=10)
    args = parser.parse_args()
    module, _, name = args.app.partition(":")
    app = getattr(importlib.import_module(module), name)
    server = wsgi.Server((args.host, args.port), app, numthreads=args.threads, timeout=args.timeout)

    def stop(signum: int, frame: Any) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.safe_start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
