"""The load side of the cluster comparison: one client for every implementation, so the client cost is the same.

A Socket.IO client library would cost the load more per delivery than the
servers under test spend, and a different client per implementation would
make the client's share differ.  So every connection is the same minimal
WebSocket client on ``asyncio.Protocol`` (as ``benchmarks/cluster_load.py``):
a hand-written handshake, then frame headers parsed by hand.  Speaking to a
Socket.IO server (Node's or python-socketio) it adds the few Engine.IO /
Socket.IO packets a WebSocket-only client needs: the open packet ``0{...}``
answered with ``40`` (or ``40/pub,`` for publishers), the connect ack
``40...``, pings ``2`` answered with ``3``; events arrive as
``42["m","<payload>"]``.

Each message carries ``#``, its sequence number and the ``CLOCK_MONOTONIC``
time it was published (32 bytes); a delivery is found by the ``#``, wherever
the implementation put the payload (``42[...]`` for Socket.IO,
``"<offset>:"`` in front with ws' recovery), so every client does the same
work per delivery.  A delivery's latency is its arrival time minus that
stamp.  Each client counts what it received, so a loss, a duplicate or a
message delivered outside its room is seen per client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cluster_load import percentile  # noqa: E402

MARK = ord("#")


def stamp(seq: int) -> str:
    """The 32-byte payload: ``#``, 8 digits of sequence, 20 of nanoseconds, 3 of padding."""
    return "#%08d%020d---" % (seq, time.monotonic_ns())


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame with the all-zero mask key (legal; the server unmasks all the same)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


class Tally:
    """The messages in flight: deliveries still expected, their room; every delivery's latency."""

    def __init__(self) -> None:
        self.remaining: dict[int, int] = {}
        self.room_of: dict[int, str | None] = {}
        self.latencies: list[int] = []  # nanoseconds
        self.wrong = 0  # delivered to a client outside the message's room
        self._progress: asyncio.Future[None] | None = None

    def expect(self, seq: int, count: int, room: str | None) -> None:
        self.remaining[seq] = count
        self.room_of[seq] = room

    def delivered(self, client: "Client", seq: int, sent_ns: int, now_ns: int) -> None:
        left = self.remaining.get(seq)
        if left is None:
            return  # a probe from before, or a message given up on
        if self.room_of[seq] != client.room:
            self.wrong += 1
            return
        client.received += 1
        self.latencies.append(now_ns - sent_ns)
        if left > 1:
            self.remaining[seq] = left - 1
            return
        del self.remaining[seq]
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    async def progress(self, stall: float) -> bool:
        """Wait until one more message has reached all its recipients; ``False`` after ``stall`` s without."""
        self._progress = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._progress, stall)
            return True
        except asyncio.TimeoutError:
            return False

    async def drained(self, stall: float) -> int:
        """Wait for every message in flight; the deliveries given up on after ``stall`` s without progress."""
        while self.remaining:
            if not await self.progress(stall):
                given_up = sum(self.remaining.values())
                self.remaining.clear()
                return given_up
        return 0


class Client(asyncio.Protocol):
    """One connection: the handshake (and Socket.IO's connect, for ``sio``), then server frames parsed by hand."""

    def __init__(self, tally: Tally | None, request: bytes, sio_namespace: str | None, room: str | None) -> None:
        self.tally = tally
        self.request = request
        self.sio_namespace = sio_namespace  # None: plain WebSocket
        self.room = room
        self.received = 0
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before it was open"))

    def data_received(self, data: bytes) -> None:
        buf = self.rest + data if self.rest else data
        if not self.upgraded:
            head, found, buf = buf.partition(b"\r\n\r\n")
            if not found:
                self.rest = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(head[:200].decode(errors="replace")))
                return
            self.upgraded = True
            if self.sio_namespace is None:
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
            start, stop = pos + skip, pos + skip + size
            if stop > end:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                mark = buf.find(b"#", start, stop)
                if mark >= 0:
                    if self.tally is not None:
                        self.tally.delivered(self, int(buf[mark + 1:mark + 9]), int(buf[mark + 9:mark + 29]), now)
                elif self.sio_namespace is not None:
                    self.engine_io(buf[start:stop])
            elif opcode == 9 and self.transport is not None:
                self.transport.write(frame(buf[start:stop], 0xA))
            pos = stop
        self.rest = buf[pos:]

    def engine_io(self, packet: bytes) -> None:
        """The Engine.IO / Socket.IO packets around the events: open, connect ack, ping, errors."""
        if packet == b"2":
            self.transport.write(frame(b"3"))
        elif packet.startswith(b"0{"):
            namespace = self.sio_namespace
            self.transport.write(frame(b"40" if namespace == "/" else b"40" + namespace.encode() + b","))
        elif packet.startswith(b"40") and not self.opened.done():
            self.opened.set_result(None)
        elif packet.startswith(b"44") and not self.opened.done():
            self.opened.set_exception(ConnectionError(f"Socket.IO refused the connect: {packet[:200]!r}"))

    def send(self, payload: bytes) -> None:
        self.transport.write(frame(payload))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def request(host: str, port: int, target: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class Protocol:
    """How to reach an implementation: ``ws`` (our paths) or ``sio`` (Socket.IO over WebSocket)."""

    def __init__(self, kind: str) -> None:
        if kind not in ("ws", "sio"):
            raise ValueError(f"unknown protocol {kind!r}")
        self.kind = kind

    def subscriber(self, room: str | None) -> tuple[str, str | None]:
        """The request target, and the Socket.IO namespace (None for plain WebSocket)."""
        if self.kind == "ws":
            return ("/sub" if room is None else f"/room?room={room}"), None
        return "/socket.io/?EIO=4&transport=websocket" + ("" if room is None else f"&room={room}"), "/"

    def publishers(self) -> list[tuple[str, str | None]]:
        if self.kind == "ws":
            return [("/pub", None), ("/pubroom", None)]
        return [("/socket.io/?EIO=4&transport=websocket", "/pub")]


class Publisher:
    """The publishing connection(s) to one node."""

    def __init__(self, protocol: Protocol, clients: list[Client]) -> None:
        self.protocol, self.clients = protocol, clients

    def broadcast(self, payload: str) -> None:
        if self.protocol.kind == "ws":
            self.clients[0].send(payload.encode())
        else:
            self.clients[0].send(b'42/pub,["b","' + payload.encode() + b'"]')

    def to_room(self, room: str, payload: str) -> None:
        if self.protocol.kind == "ws":
            self.clients[1].send(f"{room} {payload}".encode())
        else:
            self.clients[0].send(b"42/pub," + json.dumps(["r", room, payload], separators=(",", ":")).encode())


async def connect(host: str, port: int, target: str, namespace: str | None, tally: Tally | None, room: str | None) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(tally, request(host, port, target), namespace, room), host, port)
    try:
        await asyncio.wait_for(client.opened, 15)
    except BaseException:
        client.close()
        raise
    return client


def placement(rooms: int, members: int, nodes: int, layout: str) -> list[tuple[str, int]]:
    """``(room, node)`` for every member.

    ``spread``: a third of the rooms on node 0 only, a third on node 1 only,
    a third split half and half (so clients are spread evenly, and a room's
    members are on one node or both); ``one``: every member on node 0.
    """
    seats = []
    for r in range(rooms):
        for m in range(members):
            if layout == "one" or nodes == 1:
                node = 0
            elif r % 3 == 2:
                node = m % nodes
            else:
                node = (r % 3) % nodes
            seats.append((str(r), node))
    return seats


class Load:
    """Subscribers (broadcast, or room members) spread over ``ports``, and a publisher per port."""

    def __init__(self, protocol: Protocol, host: str, ports: list[int], stall: float) -> None:
        self.protocol, self.host, self.ports, self.stall = protocol, host, ports, stall
        self.tally = Tally()
        self.subscribers: list[Client] = []
        self.publishers: list[Publisher] = []
        self.seq = 0
        self.lost_in_flight = 0

    async def open(self, seats: list[tuple[str | None, int]], concurrency: int = 50) -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one(room: str | None, node: int) -> Client:
            target, namespace = self.protocol.subscriber(room)
            async with limit:
                return await connect(self.host, self.ports[node], target, namespace, self.tally, room)

        self.subscribers = list(await asyncio.gather(*(one(room, node) for room, node in seats)))
        for port in self.ports:
            conns = [await connect(self.host, port, target, ns, None, None) for target, ns in self.protocol.publishers()]
            self.publishers.append(Publisher(self.protocol, conns))

    def close(self) -> None:
        for client in self.subscribers:
            client.close()
        for publisher in self.publishers:
            for client in publisher.clients:
                client.close()

    def members(self) -> dict[str | None, int]:
        count: dict[str | None, int] = {}
        for client in self.subscribers:
            count[client.room] = count.get(client.room, 0) + 1
        return count

    def publish(self, room: str | None, publisher: int, count: int) -> int:
        self.seq += 1
        self.tally.expect(self.seq, count, room)
        if room is None:
            self.publishers[publisher].broadcast(stamp(self.seq))
        else:
            self.publishers[publisher].to_room(room, stamp(self.seq))
        return self.seq

    async def ready(self, plan: Callable[[int], list[tuple[str | None, int]]], tries: int = 40) -> None:
        """Probe until a message from every publisher used reaches every recipient (the subscriptions are up)."""
        members = self.members()
        for attempt in range(tries):
            probes = {(room, pub) for n in range(len(self.ports)) for room, pub in plan(n)}
            for room, pub in sorted(probes, key=str):
                self.publish(room, pub, members[room])
            if not await self.tally.drained(0.5 + attempt * 0.1):
                return
        raise RuntimeError(f"probes did not reach every client after {tries} tries")

    def start_phase(self) -> None:
        self.tally.latencies.clear()
        self.tally.wrong = 0
        for client in self.subscribers:
            client.received = 0
        self.lost_in_flight = 0

    def check(self, sent: dict[str | None, int]) -> dict[str, int]:
        """What each client should have received in the phase against what it did."""
        lost = duplicated = 0
        for client in self.subscribers:
            expected = sent.get(client.room, 0)
            lost += max(0, expected - client.received)
            duplicated += max(0, client.received - expected)
        return {"lost": lost, "duplicated": duplicated, "misdelivered": self.tally.wrong}

    async def windowed(self, plan: Callable[[int], list[tuple[str | None, int]]], rounds: int, window: int) -> tuple[float, dict[str, int]]:
        """``rounds`` rounds of messages, at most ``window`` rounds' worth in flight; seconds until the last delivery."""
        members = self.members()
        per_round = len(plan(0))
        limit = window * per_round
        sent: dict[str | None, int] = {}
        self.start_phase()
        started = time.monotonic()
        for n in range(rounds):
            for room, pub in plan(n):
                while len(self.tally.remaining) >= limit:
                    if not await self.tally.progress(self.stall):
                        self.lost_in_flight += sum(self.tally.remaining.values())
                        self.tally.remaining.clear()
                self.publish(room, pub, members[room])
                sent[room] = sent.get(room, 0) + 1
        self.lost_in_flight += await self.tally.drained(self.stall)
        elapsed = time.monotonic() - started
        return elapsed, self.check(sent)

    async def paced(self, count: int, rate: float) -> dict[str, int]:
        """``count`` broadcasts at ``rate`` per second, from each node in turn (latency without queueing)."""
        members = self.members()
        self.start_phase()
        started = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            self.publish(None, i % len(self.publishers), members[None])
        self.lost_in_flight += await self.tally.drained(self.stall)
        return self.check({None: count})


def broadcast_plan(nodes: int) -> Callable[[int], list[tuple[str | None, int]]]:
    """One broadcast per round, from each node in turn."""
    return lambda n: [(None, n % nodes)]


def room_plan(rooms: int, nodes: int, layout: str) -> Callable[[int], list[tuple[str | None, int]]]:
    """One message to every room per round; ``spread``: from each node in turn; ``one``: from node 0."""
    if layout == "one":
        return lambda n: [(str(r), 0) for r in range(rooms)]
    return lambda n: [(str(r), (r + n) % nodes) for r in range(rooms)]


async def scenario(
    kind: str, host: str, ports: list[int], name: str, options: Any, mark: Callable[[str], None],
    settle: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """One scenario on one implementation: connect, probe, warm up, measure; ``mark`` brackets the measured phases.

    ``broadcast``: ``options.clients`` subscribers, a saturated phase
    (``options.rounds`` broadcasts, ``options.window`` in flight) then a
    paced one (``options.paced`` at ``options.rate``/s); ``settle`` is
    awaited once the subscribers are in, before the warm-up.  ``rooms``:
    ``options.rooms`` rooms of ``options.members`` (``spread`` layout),
    ``rooms_one``: the same with every member on node 0 and every publish
    from node 0 (what node 1, which has no member, pays).
    """
    load = Load(Protocol(kind), host, ports, options.stall)
    nodes = len(ports)
    result: dict[str, float] = {}
    try:
        if name == "broadcast":
            seats: list[tuple[str | None, int]] = [(None, i % nodes) for i in range(options.clients)]
            plan = broadcast_plan(nodes)
            rounds = options.rounds
        else:
            layout = "one" if name == "rooms_one" else "spread"
            seats = list(placement(options.rooms, options.members, nodes, layout))
            plan = room_plan(options.rooms, nodes, layout)
            rounds = options.room_rounds
        await asyncio.wait_for(load.open(seats), 120)
        await asyncio.wait_for(load.ready(plan), 60)
        if settle is not None:
            await settle()  # what connecting cost elsewhere (presence writes, say) is over
        await load.windowed(plan, max(2, rounds // 10), options.window)  # warm-up
        mark("idle_start")  # Redis' own rate with nothing published (its cron, the nodes' timers): taken off below
        await asyncio.sleep(options.idle)
        mark("idle_end")
        mark("start")
        elapsed, check = await load.windowed(plan, rounds, options.window)
        mark("end")
        deliveries = len(seats) * rounds  # every subscriber is the recipient of one message per round
        result.update(
            deliveries=deliveries, messages=len(plan(0)) * rounds, elapsed=elapsed,
            deliveries_per_s=deliveries / elapsed,
            loaded_p50_ms=percentile(load.tally.latencies, 0.5), loaded_p99_ms=percentile(load.tally.latencies, 0.99),
            **{k: float(v) for k, v in check.items()},
        )
        if name == "broadcast" and options.paced:
            mark("paced_start")
            paced = await load.paced(options.paced, options.rate)
            mark("paced_end")
            result.update(
                paced_p50_ms=percentile(load.tally.latencies, 0.5), paced_p99_ms=percentile(load.tally.latencies, 0.99),
                paced_messages=options.paced, paced_deliveries=options.paced * len(seats),
                **{f"paced_{k}": float(v) for k, v in paced.items()},
            )
    finally:
        load.close()
    return result
