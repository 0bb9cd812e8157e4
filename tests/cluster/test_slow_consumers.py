"""A slow or stuck consumer on one node blocks neither publishes nor delivery on the others.

Two ways to be stuck, with real processes and a real Redis: a client that
completes its handshake and then never reads (its node must keep serving
its other clients while the unsent bytes pile up), and a whole node frozen
with SIGSTOP (Redis holds its pub/sub messages; the publishers never wait
for it).  Every message carries the time it was sent; the clients that
read must get each one exactly once and soon.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import time
from typing import Any

from ..conftest import run
from .conftest import Client, Node, RedisServer, clients, cluster, heard_again, settle, tracked

LATENCY_BOUND = 3.0  # seconds; a blocked delivery never arrives, a loaded 2-core machine adds well under that


def never_reads(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then reads nothing (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the head is taken
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


class Timed:
    """Arrival times of the stamped messages a client receives: ``{(sender, n): [latency, ...]}``."""

    def __init__(self, client: Client) -> None:
        self.arrivals: dict[tuple[str, int], list[float]] = {}
        client.socket.on("message", self._message)

    def _message(self, event: Any) -> None:
        if isinstance(event.data, str) and event.data.startswith("m:"):
            _, sender, n, sent, _ = event.data.split(":", 4)
            self.arrivals.setdefault((sender, int(n)), []).append(time.monotonic() - float(sent))


async def stamped(senders: dict[str, Client], count: int, size: int, every: float) -> set[tuple[str, int]]:
    """Each sender has its node broadcast ``count`` messages of ``size`` bytes, one every ``every`` s."""
    for n in range(count):
        for name, sender in senders.items():
            head = f"m:{name}:{n}:{time.monotonic():.6f}:"
            sender.send({"broadcast": head + "x" * max(0, size - len(head))})
        await asyncio.sleep(every)
    return {(name, n) for name in senders for n in range(count)}


async def all_once(timed: list[Timed], expected: set[tuple[str, int]]) -> list[float]:
    """Wait (bounded) until every client got every message; each exactly once; every latency."""

    async def complete() -> bool:
        return all(expected <= set(t.arrivals) for t in timed)

    await settle(complete, 15, what="every message at every reading client")
    latencies: list[float] = []
    for t in timed:
        assert set(t.arrivals) == expected and all(len(v) == 1 for v in t.arrivals.values())
        latencies += [v[0] for v in t.arrivals.values()]
    return latencies


def test_a_client_that_never_reads_blocks_no_one(redis_server: RedisServer) -> None:
    with cluster(redis_server, 2) as (a, b):

        async def main() -> None:
            stuck = await asyncio.to_thread(never_reads, a.port, "/bc")
            try:
                async with clients(a.url("/bc"), a.url("/bc"), b.url("/bc"), b.url("/bc")) as made:
                    await tracked([a, b], 5)  # the stuck client counts
                    timed = [Timed(client) for client in made]
                    # 2 x 120 x 32 KiB = 7.9 MB for the stuck client: more than its socket buffers hold,
                    # so node A keeps the rest while it serves the others.
                    sent = await stamped({"a": made[0], "b": made[2]}, 120, 32 * 1024, 0.01)
                    latencies = await all_once(timed, sent)
                    assert max(latencies) < LATENCY_BOUND, sorted(latencies)[-5:]
                    # Node A still answers, its stuck client still counted (it is slow, not gone).
                    assert (await a.state())["bc"] == 5
            finally:
                stuck.close()

        run(main, 40)


def test_a_frozen_node_blocks_neither_publishes_nor_the_other_nodes(redis_server: RedisServer) -> None:
    with cluster(redis_server, 3) as nodes:
        frozen: Node = nodes[2]

        async def main() -> None:
            urls = [nodes[0].url("/bc"), nodes[0].url("/bc"), nodes[1].url("/bc"), nodes[1].url("/bc"), frozen.url("/bc")]
            async with clients(*urls) as made:
                await tracked(nodes, 5)
                timed = [Timed(client) for client in made[:4]]
                frozen.process.send_signal(signal.SIGSTOP)  # its loop, its Redis connection, its clients: all stuck
                try:
                    sent = await stamped({"a": made[0], "b": made[2]}, 60, 200, 0.02)
                    latencies = await all_once(timed, sent)
                    assert max(latencies) < LATENCY_BOUND, sorted(latencies)[-5:]
                finally:
                    frozen.process.send_signal(signal.SIGCONT)
                # Thawed, the node serves again and hears the others (its presence never lapsed).
                await heard_again(nodes[0], made[4:], what="the thawed node's client hearing node 0")
                await frozen.broadcast("thawed")
                await asyncio.gather(*(c.next(lambda m: m == "thawed") for c in made))

        run(main, 40)
