"""An echo server on ws://127.0.0.1:8080/ws (port from argv[1]); Ctrl-C stops it."""

import sys

from ws import WebSocketServer
from ws import http

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
server = http.Server(address=f"127.0.0.1:{port}")
wss = WebSocketServer(server=server, path="/ws")


def on_connection(socket, request):
    print("connected", request.remote_address, flush=True)
    socket.on("message", lambda evt: socket.send(evt.data))
    socket.on("close", lambda code, reason: print("closed", code, flush=True))


wss.on("connection", on_connection)
server.serve(lambda address: print("listening on", address, flush=True))
