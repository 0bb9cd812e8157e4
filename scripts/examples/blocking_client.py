"""A plain script (no asyncio) that talks in request/response style.

    python scripts/examples/blocking_client.py [URL]

With no URL it starts its own echo server first.  `with` waits for the
connection and closes it at the end; `recv(timeout=...)` blocks.
"""

import sys

from ws import WebSocket, WebSocketServer
from ws import http

if len(sys.argv) > 1:
    url = sys.argv[1]
else:
    server = http.Server(address="127.0.0.1:0")
    echo = WebSocketServer(server=server, path="/echo")  # the seed's server.ws(path, handler)
    echo.on("connection", lambda sock, request: sock.on("message", lambda evt: sock.send(evt.data)))
    server.serve()
    url = f"ws://127.0.0.1:{server.port}/echo"

with WebSocket(url) as ws:
    for question in ("ping?", "still there?"):
        ws.send(question)
        print("reply:", ws.recv(timeout=5).data)

if len(sys.argv) <= 1:
    server.close()
