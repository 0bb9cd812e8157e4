"""Pull-style WebSockets inside asyncio: async with, async for, recv_async, send_async.

    python scripts/examples/async_iteration.py

Starts a ws.http server with an echo endpoint written as an `async for`
loop, then a client that sends three messages and reads the echoes.
"""

import asyncio

from ws import WebSocket, WebSocketServer
from ws import http


async def echo(sock):
    async for event in sock:  # ends when the client closes
        await sock.send_async(event.data)  # waits if the client reads slowly


async def main():
    async with http.Server(address="127.0.0.1:0") as server:
        wss = WebSocketServer(server=server, path="/echo")
        wss.on("connection", lambda sock, request: echo(sock))  # async listeners run as tasks
        await server.serve_async()

        async with WebSocket(f"ws://127.0.0.1:{server.port}/echo") as client:
            for text in ("one", "two", "three"):
                await client.send_async(text)
            for _ in range(3):
                event = await client.recv_async(timeout=5)
                print("echo:", event.data)
        print("client closed:", client.ready_state == WebSocket.CLOSED)


asyncio.run(main())
