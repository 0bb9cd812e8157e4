# No 'error' listener, and nothing listening on the port: Node prints the error and exits with 1.
import socket

from ws import WebSocket

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()

ws = WebSocket(f"ws://127.0.0.1:{port}/")
ws.on("open", lambda: print("open"))
print("last line")
