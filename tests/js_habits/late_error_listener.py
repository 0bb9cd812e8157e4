# The 'error' listener comes after the connection already failed (the script waited for 'close'):
# the error is kept for it, so it is handled, not reported.
import socket
import threading

from ws import WebSocket

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()

closed = threading.Event()
ws = WebSocket(f"ws://127.0.0.1:{port}/")
ws.on("close", lambda: closed.set())
assert closed.wait(10)
ws.on("error", lambda err: print("late listener got:", type(err).__name__))
