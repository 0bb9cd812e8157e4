"""connect / disconnect / message handlers with connection ids.

    python scripts/examples/style_connections.py [port]          # demo, then exit
    python scripts/examples/style_connections.py [port] --serve  # keep serving
    # ws://127.0.0.1:PORT/socket?name=ann
"""

import sys

from ws import WebSocket
from ws import http
from ws.styles.connections import kv, websocket

args = [a for a in sys.argv[1:] if not a.startswith("--")]
port = int(args[0]) if args else 0
server = http.Server(f"127.0.0.1:{port}")
socket = websocket(server, "socket")  # the seed's server.websocket("socket")
names = kv("names")  # our own metadata, in a key-value store
running = {"anonymous", "ann"}  # the demo clients; the server closes after both


def finished(name):
    running.discard(name)
    if not running:
        server.close()


@socket.on("connect")
async def connect(ctx):
    name = ctx.req.query.get("name", [""])[0]
    if not name:
        ctx.res.success = False  # deny: the client gets 403 and never opens
        return
    await names.set(ctx.req.connection_id, name)
    print("connect", name, flush=True)


@socket.on("message")
async def message(ctx):
    sender = await names.get(ctx.req.connection_id)
    print(f"message from {sender}: {ctx.req.data}", flush=True)
    for connection_id in socket.connections():  # push to every connection by id
        await socket.send(connection_id, {"from": sender, "text": ctx.req.data})


@socket.on("disconnect")
async def disconnect(ctx):
    print("disconnect", await names.get(ctx.req.connection_id), flush=True)
    await names.delete(ctx.req.connection_id)
    if "--serve" not in sys.argv:
        finished("ann")


server.serve()
address = server.address
print("listening on", f"ws://{address}/socket", flush=True)

if "--serve" not in sys.argv:
    anonymous = WebSocket(f"ws://{address}/socket")
    anonymous.on("error", lambda error: print("anonymous:", error, flush=True))
    anonymous.on("close", lambda code, reason: finished("anonymous"))
    ann = WebSocket(f"ws://{address}/socket?name=ann")
    ann.on("open", lambda: ann.send("hi from ann"))

    def on_message(event):
        print("ann got", event.data, flush=True)
        ann.close()

    ann.on("message", on_message)
