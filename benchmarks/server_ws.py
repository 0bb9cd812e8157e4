"""``ws`` echo/broadcast server for the shared benchmark harness (its server contract).

Written as a user would: ``http.Server`` + ``WebSocketServer`` + a
``'message'`` listener calling ``send``; default options except
permessage-deflate, which is off unless ``--compression``.
"""
import asyncio

import _common as c

from ws import WebSocketServer
from ws import http

args = c.server_args()


async def main() -> None:
    server = http.Server(address=f"{args.host}:{args.port}")
    deflate = bool(args.compression)
    echo = WebSocketServer(server=server, path="/", per_message_deflate=deflate)
    fanout = WebSocketServer(server=server, path="/broadcast", per_message_deflate=deflate)

    def on_echo(socket, request):
        socket.on("message", lambda event: socket.send(event.data))

    def on_subscriber(socket, request):
        async def on_message(event):
            for _ in range(int(event.data)):
                fanout.broadcast(c.BCAST_TEXT)
                await asyncio.sleep(0)

        socket.on("message", on_message)

    echo.on("connection", on_echo)
    fanout.on("connection", on_subscriber)
    await server.serve_async()
    c.ready()
    await c.forever()


c.run(main, args.loop)
