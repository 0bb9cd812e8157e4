"""A client that stays connected until the server closes it or Ctrl-C / SIGTERM.

Used by tests/test_e2e.py; the URL comes from argv[1].
"""

import sys

from ws import WebSocket

ws = WebSocket(sys.argv[1])
ws.on("open", lambda: print("open", flush=True))
ws.on("close", lambda code, reason: print("closed", code, flush=True))
