# No 'error' listener, and nothing listening on the port: Node prints the error and exits with 1.
import atexit
import socket

atexit.register(print, "exit handler registered before ws ran")
from ws import WebSocket  # noqa: E402

atexit.register(print, "exit handler registered after ws ran")

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()

ws = WebSocket(f"ws://127.0.0.1:{port}/")
ws.on("open", lambda: print("open"))
print("last line")
