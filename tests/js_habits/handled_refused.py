# The same with an 'error' listener: handled, so nothing on stderr and status 0.
import socket

from ws import WebSocket

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()

ws = WebSocket(f"ws://127.0.0.1:{port}/")
ws.on("error", lambda err: print("error:", err))
ws.on("close", lambda code, reason: print("closed", code))
