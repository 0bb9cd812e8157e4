"""A client that unref()s its open socket: the script exits though it is still open.

Used by tests/test_e2e.py; the URL comes from argv[1].
"""

import sys

from ws import WebSocket

ws = WebSocket(sys.argv[1])


def on_open():
    print("open", flush=True)
    ws.unref()  # like Node's socket.unref(): do not keep the process alive for this


ws.on("open", on_open)
ws.on("close", lambda code, reason: print("closed", code, flush=True))
