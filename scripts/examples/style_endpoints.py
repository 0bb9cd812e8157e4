"""Declarative endpoints: a name -> handlers map, served under /api/_websockets.

    python scripts/examples/style_endpoints.py [port]           # demo: a client talks to it, then exit
    python scripts/examples/style_endpoints.py [port] --serve   # keep serving (Ctrl-C stops)
"""

import sys

from ws import WebSocket
from ws import http
from ws.styles.endpoints import websockets

args = [a for a in sys.argv[1:] if not a.startswith("--")]
port = int(args[0]) if args else 0
server = http.Server(f"127.0.0.1:{port}")


def on_open(connection):
    print("server: open", connection.query.get("name"), flush=True)
    connection.send({"type": "welcome", "id": connection.id})


def on_message(message, connection):
    # JSON text arrives decoded; dicts and lists are sent back as JSON.
    print("server: message", message, flush=True)
    connection.send({"type": "echo", "message": message})


def on_close(code, reason, connection):
    print("server: close", code, reason, flush=True)
    if "--serve" not in sys.argv:
        server.close()


websockets(  # the seed's server.websockets({...})
    server,
    {"example_endpoint": {"on_open": on_open, "on_message": on_message, "on_close": on_close}},
    prefix="/api/_websockets",
)
server.serve()
address = server.address
print("listening on", f"ws://{address}/api/_websockets/example_endpoint", flush=True)

if "--serve" not in sys.argv:
    client = WebSocket(f"ws://{address}/api/_websockets/example_endpoint?name=demo")
    replies = []

    def on_client_message(event):
        print("client: got", event.data, flush=True)
        replies.append(event.data)
        if len(replies) == 1:
            client.send('{"hello": "world"}')
        elif len(replies) == 2:
            client.send("plain text")
        else:
            client.close(1000, "done")

    client.on("message", on_client_message)
