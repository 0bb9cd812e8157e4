"""The README's first script: connect, send, print the echo, close."""

import sys

from ws import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/ws"
ws = WebSocket(url)
ws.on("open", lambda: ws.send("hello"))
ws.on("message", lambda evt: (print(evt.data), ws.close()))
ws.on("close", lambda code, reason: print("closed", code))
