"""``ws`` echo/broadcast server for the shared benchmark harness (its server contract).

Written as a user would: ``http.Server`` + ``WebSocketServer`` + a
``'message'`` listener calling ``send``; default options except
permessage-deflate, which is off unless ``--compression``.

It measures the plain install (``pip install ws-js``) whatever the bench venv
has: asyncio's default loop (its own ``asyncio.run``) and h11 (``WS_HTTP=h11``,
set before ``ws`` is imported; scripts/bench installs the ``speed`` extra).
With ``--speed`` (``server_ws_speed.py``) the same code measures what
``ws-js[speed]`` gives: uvloop (``uvloop.run``) and httptools, chosen by ``ws``
itself as for a user.
"""
import asyncio
import os
import sys

SPEED = "--speed" in sys.argv
if SPEED:
    sys.argv.remove("--speed")
    import httptools  # noqa: F401  (fail, rather than measure the plain stack under the speed name)
    import uvloop  # noqa: F401

    for name in ("WS_LOOP", "WS_HTTP"):  # the accelerators' automatic choice
        os.environ.pop(name, None)
    sys.argv += ["--loop", "uvloop"]
else:
    os.environ.update(WS_LOOP="asyncio", WS_HTTP="h11")

import _common as c  # noqa: E402  (after the environment is set)

from ws import WebSocketServer  # noqa: E402
from ws import http  # noqa: E402

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
