"""Helpers of the application-style tests: a served ``http.Server`` and a queueing client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

from ws import WebSocket
from ws import http

TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[http.Server]:
    """An ``http.Server`` on 127.0.0.1 (any port) on the running loop, closed afterwards."""
    server = http.Server("127.0.0.1:0")
    await server.serve_async()
    try:
        yield server
    finally:
        await server.close_async()


class Peer:
    """A ``WebSocket`` client whose messages, errors and close land in queues."""

    def __init__(self, url: str, **options: Any) -> None:
        self.socket = WebSocket(url, **options)
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.opened = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.errors: list[BaseException] = []
        self.socket.on("open", lambda: self.opened.done() or self.opened.set_result(None))
        self.socket.on("message", lambda event: self.messages.put_nowait(event.data))
        self.socket.on("error", self.errors.append)
        self.socket.on("close", lambda code, reason: self.closed.done() or self.closed.set_result((code, reason)))

    @classmethod
    async def connect(cls, server: http.Server, path: str, **options: Any) -> "Peer":
        peer = cls(f"ws://127.0.0.1:{server.port}{path}", **options)
        await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
        return peer

    def send(self, value: Any) -> None:
        self.socket.send(value if isinstance(value, (str, bytes)) else json.dumps(value))

    async def recv(self) -> Any:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def recv_json(self) -> Any:
        return json.loads(await self.recv())

    async def wait_closed(self) -> tuple[int, str]:
        return await asyncio.wait_for(asyncio.shield(self.closed), TIMEOUT)

    async def close(self) -> tuple[int, str]:
        self.socket.close()
        return await self.wait_closed()


async def refused(server: http.Server, path: str, **options: Any) -> int | None:
    """Connect expecting a refused handshake; the HTTP status the server answered."""
    peer = Peer(f"ws://127.0.0.1:{server.port}{path}", **options)
    await peer.wait_closed()
    assert not peer.opened.done(), "the WebSocket opened although it should have been refused"
    return getattr(peer.errors[0], "status", None) if peer.errors else None


async def eventually(predicate: Any, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` is true (polling; bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await asyncio.sleep(0.01)


EXAMPLES = Path(__file__).resolve().parent.parent / "scripts" / "examples"


def run_example(name: str, timeout: float = 60) -> str:
    """Run ``scripts/examples/<name>`` (it exits by itself); its stdout, after checking it succeeded."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WS_NO_SIGNALS", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=timeout, env=env, cwd=EXAMPLES
    )
    assert done.returncode == 0, f"{name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout
