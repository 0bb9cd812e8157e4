"""A server that unref()s itself: the script ends after its last line, as in Node."""

from ws import WebSocketServer

wss = WebSocketServer(port=0, path="/ws")
print("listening on", wss.address()["port"], flush=True)
wss.unref()
