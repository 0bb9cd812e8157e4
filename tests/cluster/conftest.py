"""A test cluster: server processes (``tests/cluster/node.py``) sharing one real ``redis-server``.

Each node is a process of its own on its own port of 127.0.0.1, which is
what N machines look like to the backplane.  ``redis_server`` is the
backplane tests' fixture (our own ``redis-server`` on a free port).  Every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, AsyncIterator, Callable, Iterator
from urllib.parse import quote

import pytest

from ws import WebSocket

from ..backplane.conftest import RedisServer, redis_server  # noqa: F401  (the fixture)
from ..conftest import ROOT

pytest.importorskip("redis", reason="the redis package is not installed: pip install 'ws-js[redis]'")


class Node:
    """One server process of the cluster."""

    def __init__(self, url: str, ttl: float) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.node", url, str(ttl)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.port = 0
        self.node_id = ""

    def wait_ready(self, timeout: float = 15.0) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"node did not start within {timeout} s: {self.stderr()}")
            chunk = os.read(self.process.stdout.fileno(), 1)
            if not chunk:
                raise AssertionError(f"node exited ({self.process.poll()}): {self.stderr()}")
            line += chunk
        word, port, node_id = line.decode().split()
        assert word == "READY", line
        self.port, self.node_id = int(port), node_id

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(still running)"
        return self.process.stderr.read().decode(errors="replace")[-3000:]

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def get(self, path: str) -> Any:
        """``GET path`` on this node's HTTP server, as JSON (bounded)."""
        return await get_json(self.port, path)

    async def broadcast(self, text: str, local: bool = False) -> int:
        answer = await self.get(f"/broadcast?text={quote(text)}{'&local=1' if local else ''}")
        return int(answer["local"])

    async def state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.get("/state")
        return state

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def cluster(redis: RedisServer, count: int, ttl: float = 10.0) -> Iterator[list[Node]]:
    """``count`` nodes on ``redis``, started together, stopped at the end."""
    nodes = [Node(redis.url, ttl) for _ in range(count)]
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def get_json(port: int, path: str) -> Any:
    """``GET path`` on ``127.0.0.1:port``, as JSON (bounded)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    return json.loads(body)


class Client:
    """A WebSocket client that keeps what it receives (JSON decoded when it is JSON)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.socket = WebSocket(url)
        self.received: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.socket.on("message", self._message)
        self.socket.on("close", lambda code, reason: setattr(self, "closed", (code, reason)))
        self.socket.on("error", lambda exc: None)

    def _message(self, event: Any) -> None:
        try:
            self.received.append(json.loads(event.data))
        except (TypeError, ValueError):
            self.received.append(event.data)

    async def open(self) -> "Client":
        await self.socket.wait_open_async(5)
        return self

    def send(self, value: Any) -> None:
        self.socket.send(json.dumps(value))

    async def next(self, predicate: Callable[[Any], Any], timeout: float = 5.0) -> Any:
        """The first message received that matches ``predicate`` (waiting for it, bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.received:
                if predicate(item):
                    return item
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url}: no matching message within {timeout} s; got {self.received!r}")
            await asyncio.sleep(0.01)

    def texts(self) -> list[str]:
        return [item for item in self.received if isinstance(item, str)]


@contextlib.asynccontextmanager
async def clients(*urls: str) -> AsyncIterator[list[Client]]:
    """Open clients (all at once), closed at the end."""
    made = [Client(url) for url in urls]
    try:
        await asyncio.gather(*(client.open() for client in made))
        yield made
    finally:
        for client in made:
            client.socket.close()


async def settle(check: Callable[[], Any], timeout: float = 5.0, what: str = "cluster state") -> Any:
    """Poll the async ``check()`` until it returns something truthy (bounded); its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


async def heard_again(sender: Node, listeners: list[Client], what: str, timeout: float = 10.0) -> None:
    """Broadcast probes from ``sender`` until every listener has received one (a node back after an outage)."""
    probe = 0

    async def heard() -> bool:
        nonlocal probe
        probe += 1
        await sender.broadcast(f"probe-{probe}")
        await asyncio.sleep(0.1)
        return all(any(str(m).startswith("probe-") for m in c.received) for c in listeners)

    await settle(heard, timeout, what=what)


async def tracked(nodes: list[Node], expected: int, key: str = "bc", timeout: float = 5.0) -> None:
    """Wait until every node counts ``expected`` clients on ``/bc`` (presence applied: its subscriptions too)."""

    async def check() -> bool:
        states = await asyncio.gather(*(node.state() for node in nodes))
        return all(state.get(key) == expected for state in states)

    await settle(check, timeout, what=f"{expected} clients tracked on every node")
