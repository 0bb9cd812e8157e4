"""The load side of the cluster benchmark: many subscribers and a publisher, in one asyncio process.

The shared harness' C load generator talks to one port, and a Python
WebSocket library would cost the client more per delivery than the server
under test spends, so this is a minimal client on ``asyncio.Protocol``:
a hand-written handshake, then only frame headers are parsed.  Each
broadcast carries its sequence number and the ``CLOCK_MONOTONIC`` time it
was published (32 bytes of text, the size of the harness' broadcast
scenarios); a delivery's latency is its arrival time minus that stamp.
The publisher masks with a zero key (legal, and the server unmasks all the
same).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any, Callable

PAYLOAD_PAD = b"-" * 4  # 8 digits of sequence + 20 of nanoseconds + 4 = 32 bytes


def stamp(seq: int) -> bytes:
    return b"%08d%020d" % (seq, time.monotonic_ns()) + PAYLOAD_PAD


def handshake(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (payload under 126 bytes) with the all-zero mask key."""
    return bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload


class Tally:
    """For each broadcast in flight, how many clients still wait for it; every delivery's latency."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.remaining: dict[int, int] = {}
        self.latencies: list[int] = []  # nanoseconds
        self.completed = 0
        self._progress: asyncio.Future[None] | None = None

    def expect(self, seq: int) -> None:
        self.remaining[seq] = self.clients

    def delivered(self, seq: int, sent_ns: int, now_ns: int) -> None:
        left = self.remaining.get(seq)
        if left is None:
            return  # a probe from before
        self.latencies.append(now_ns - sent_ns)
        if left > 1:
            self.remaining[seq] = left - 1
            return
        del self.remaining[seq]
        self.completed += 1
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    async def progress(self) -> None:
        """Wait until one more broadcast has reached every client."""
        self._progress = asyncio.get_running_loop().create_future()
        await self._progress

    async def drained(self) -> None:
        while self.remaining:
            await self.progress()


class Peer(asyncio.Protocol):
    """One WebSocket connection: the handshake, then server frames (text deliveries, pings) parsed by hand."""

    def __init__(self, tally: Tally | None, request: bytes) -> None:
        self.tally = tally
        self.request = request
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None  # asyncio's or uvloop's transport (not an asyncio.Transport subclass)
        self.rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self.rest + data if self.rest else data
        if not self.opened.done():
            head, found, buf = buf.partition(b"\r\n\r\n")
            if not found:
                self.rest = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(head[:80].decode(errors="replace")))
                return
            self.opened.set_result(None)
        now, pos, end = time.monotonic_ns(), 0, len(buf)
        while end - pos >= 2:
            size, skip = buf[pos + 1] & 0x7F, 2
            if size == 126:
                if end - pos < 4:
                    break
                size, skip = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, skip = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            stop = pos + skip + size
            if stop > end:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1 and self.tally is not None:
                self.tally.delivered(int(buf[pos + skip:pos + skip + 8]), int(buf[pos + skip + 8:pos + skip + 28]), now)
            elif opcode == 9 and self.transport is not None:
                self.transport.write(masked(0xA, buf[pos + skip:stop]))
            pos = stop
        self.rest = buf[pos:]

    def send_text(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(masked(0x1, payload))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int, path: str, tally: Tally | None) -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(lambda: Peer(tally, handshake(host, port, path)), host, port)
    await asyncio.wait_for(peer.opened, 10)
    return peer


def percentile(values: list[int], q: float) -> float:
    """The ``q`` quantile of nanosecond values (nearest rank), in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


class Load:
    """``clients`` subscribers spread evenly over ``ports``, and one publisher per port, used in turn."""

    def __init__(self, host: str, ports: list[int], clients: int) -> None:
        self.host, self.ports, self.clients = host, ports, clients
        self.tally = Tally(clients)
        self.subscribers: list[Peer] = []
        self.publishers: list[Peer] = []
        self.seq = 0

    async def open(self, concurrency: int = 50) -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one(i: int) -> Peer:
            async with limit:
                return await connect(self.host, self.ports[i % len(self.ports)], "/broadcast", self.tally)

        self.subscribers = list(await asyncio.gather(*(one(i) for i in range(self.clients))))
        self.publishers = [await connect(self.host, port, "/publish", None) for port in self.ports]

    def close(self) -> None:
        for peer in self.subscribers + self.publishers:
            peer.close()

    def publish(self) -> None:
        """One broadcast, from the next node in turn."""
        self.seq += 1
        self.tally.expect(self.seq)
        self.publishers[self.seq % len(self.publishers)].send_text(stamp(self.seq))

    async def ready(self, tries: int = 40) -> None:
        """Probe until one broadcast from every node reaches every client (the nodes' subscriptions are up)."""
        for _ in range(tries):
            for _ in self.publishers:
                self.publish()
            try:
                await asyncio.wait_for(self.tally.drained(), 0.5)
                return
            except asyncio.TimeoutError:
                self.tally.remaining.clear()
        raise RuntimeError(f"broadcasts did not reach all {self.clients} clients after {tries} probes")

    async def windowed(self, count: int, window: int) -> float:
        """``count`` broadcasts, at most ``window`` not yet delivered to everyone; seconds until the last delivery."""
        self.tally.latencies.clear()
        started = time.monotonic()
        for _ in range(count):
            while len(self.tally.remaining) >= window:
                await self.tally.progress()
            self.publish()
        await self.tally.drained()
        return time.monotonic() - started

    async def paced(self, count: int, rate: float) -> None:
        """``count`` broadcasts at ``rate`` per second (light load: latency without queueing)."""
        self.tally.latencies.clear()
        started = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            self.publish()
        await self.tally.drained()


async def measure(
    host: str, ports: list[int], clients: int, rounds: int, window: int, paced: int, rate: float,
    mark: Callable[[str], None],
) -> dict[str, float]:
    """One repetition: connect, warm up, a saturated phase (``mark('start')``/``mark('end')`` around it), a paced one."""
    load = Load(host, ports, clients)
    try:
        await asyncio.wait_for(load.open(), 60)
        await asyncio.wait_for(load.ready(), 30)
        await asyncio.wait_for(load.windowed(max(10, rounds // 10), window), 60)
        mark("start")
        elapsed = await asyncio.wait_for(load.windowed(rounds, window), 120)
        mark("end")
        loaded = list(load.tally.latencies)
        await asyncio.wait_for(load.paced(paced, rate), 60)
        light = list(load.tally.latencies)
    finally:
        load.close()
    return {
        "deliveries": rounds * clients,
        "elapsed": elapsed,
        "deliveries_per_s": rounds * clients / elapsed,
        "loaded_p50_ms": percentile(loaded, 0.5),
        "loaded_p99_ms": percentile(loaded, 0.99),
        "paced_p50_ms": percentile(light, 0.5),
        "paced_p99_ms": percentile(light, 0.99),
    }
