"""An echo server whose message listener raises on 'boom': the server keeps serving.

Used by tests/test_e2e.py; port from argv[1] (0 picks a free one).
"""

import sys

from ws import WebSocketServer, http

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
server = http.Server(address=f"127.0.0.1:{port}")


def on_connection(socket, request):
    def on_message(evt):
        if evt.data == "boom":
            raise RuntimeError("listener exploded on purpose")
        socket.send(evt.data)

    socket.on("message", on_message)


WebSocketServer(server=server, path="/ws").on("connection", on_connection)
server.serve(lambda address: print("listening on", address, flush=True))
