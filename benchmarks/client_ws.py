"""``ws`` client for the shared benchmark harness (coroutine driver).

The driver wants ``recv()``; ``ws`` is callback-style, so the adapter keeps
received messages in a deque and wakes one waiting future, as a user bridging
callbacks to coroutines would.

As ``server_ws.py``: the plain install (asyncio's default loop) unless
``--speed`` (``client_ws_speed.py``: on uvloop, as with ``ws-js[speed]``).
"""
import asyncio
import os
import sys
from collections import deque

SPEED = "--speed" in sys.argv
if SPEED:
    sys.argv.remove("--speed")
    import uvloop  # noqa: F401  (fail, rather than measure the plain stack under the speed name)

    for name in ("WS_LOOP", "WS_HTTP"):
        os.environ.pop(name, None)
    sys.argv += ["--loop", "uvloop"]
else:
    os.environ.update(WS_LOOP="asyncio", WS_HTTP="h11")

import _async_driver as d  # noqa: E402  (after the environment is set)
import _common as c  # noqa: E402

from ws import WebSocket  # noqa: E402


class Conn:
    __slots__ = ("ws", "inbox", "waiter", "closed")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.inbox: deque = deque()
        self.waiter: asyncio.Future | None = None
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        ws.on("message", self.on_message)
        ws.on("close", self.on_close)
        ws.on("error", lambda exc: None)

    def on_message(self, event) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(event.data)
                return
        self.inbox.append(event.data)

    def on_close(self, code: int, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(code)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"closed ({code})"))


class WsAdapter(d.Adapter):
    async def connect(self, url, compression):
        ws = WebSocket(url, per_message_deflate=bool(compression), max_payload=c.MAX_MESSAGE)
        conn = Conn(ws)
        opened = asyncio.get_running_loop().create_future()
        ws.once("open", lambda: opened.done() or opened.set_result(None))
        ws.once("close", lambda code, reason: opened.done() or opened.set_exception(ConnectionError(code)))
        await opened
        return conn

    async def send(self, conn, data):
        conn.ws.send(data)

    async def recv(self, conn):
        if conn.inbox:
            return conn.inbox.popleft()
        conn.waiter = asyncio.get_running_loop().create_future()
        return await conn.waiter

    async def close(self, conn):
        conn.ws.close()
        await conn.closed

    def extensions(self, conn):
        return conn.ws.extensions


d.main(WsAdapter())
