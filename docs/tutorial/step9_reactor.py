"""Step 9: reactor, serving the same directory.

Fixes step 8: every byte a client sends counts toward a limit (a request line
of 8 KiB, a header line of 8 KiB, a head of 32 KiB: 431 past them), and every
wait is a timer, as in step 8. The rest of reactor is the same design made
complete: a sans-IO parser (reactor/http/), the state table
(reactor/connection.py), the loop and its timer heap (reactor/loop.py), and
files sent by os.sendfile with their path checked on the opened file
(reactor/static.py). Run it from the repository or with reactor installed.
"""

import os
import sys
from pathlib import Path

# So that a checkout runs this file without installing reactor first.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reactor import App, Config, Server

app = App()
app.static("/", os.getcwd())
server = Server(app, Config(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 0))
print(server.listen()[0][1], flush=True)
server.serve_forever()
