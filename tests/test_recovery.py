"""ws.recovery in one process (history in memory): exact catch-up, explicit refusals, the wire format.

Real servers and clients on loopback.  The clients are ``ReconnectingWebSocket(recover=True)``
or raw ``websockets`` clients that pass their position by hand, as a browser would.
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

import ws
from ws import ReconnectingWebSocket, WebSocketServer, http
from ws.backplane import MemoryBackplane, MemoryHub, Message
from ws.backplane.history import Position, Recovery
from ws.recovery import Status, envelope, read_message, status_message

from .conftest import run, until


async def serving(recovery: Recovery | bool = True, **options: Any) -> tuple[http.Server, WebSocketServer, str]:
    server = http.Server("127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/feed", recovery=recovery, **options)
    await server.serve_async()
    return server, wss, f"ws://127.0.0.1:{server.port}/feed"


async def raw_client(url: str, count: int, timeout: float = 5.0) -> list[str | bytes]:
    """Connect with ``websockets`` and read ``count`` messages (status included)."""
    async with connect(url) as conn:
        return [await asyncio.wait_for(conn.recv(), timeout) for _ in range(count)]


def status_of(message: str | bytes) -> dict[str, Any]:
    assert isinstance(message, str) and message.startswith('{"type":"recovery"'), message
    fields: dict[str, Any] = json.loads(message)
    return fields


# -- the wire format -----------------------------------------------------------------------


def test_envelope_and_status_round_trip() -> None:
    position = Position(41, "k2Jx-_a")
    assert envelope(42, True, b"hi:there") == b"42:hi:there"
    assert envelope(42, False, b"\x00\x01") == (42).to_bytes(8, "big") + b"\x00\x01"
    assert read_message("42:hi:there") == (None, 42, "hi:there")
    assert read_message((42).to_bytes(8, "big") + b"\x00\x01") == (None, 42, b"\x00\x01")
    assert read_message(status_message(False, "window", position).decode()) == (Status(False, "window", position), None, status_message(False, "window", position).decode())
    # What the server sent to one client alone passes as it is.
    assert read_message("hello") == (None, None, "hello")
    assert read_message('{"type":"chat"}') == (None, None, '{"type":"chat"}')
    assert read_message(b"short") == (None, None, b"short")


def test_recovery_option_is_checked() -> None:
    with pytest.raises(TypeError, match="ws.Recovery"):
        WebSocketServer(no_server=True, recovery={"window": 5})
    with pytest.raises(ValueError, match="window"):
        ws.Recovery(window=0)
    with pytest.raises(ValueError, match="max_messages"):
        ws.Recovery(max_messages=0)
    with pytest.raises(ValueError, match="idle_ttl"):
        ws.Recovery(window=100, idle_ttl=10)
    assert ws.Recovery is Recovery and ws.Position is Position


# -- what a client receives ------------------------------------------------------------------


def test_new_client_gets_a_status_then_positioned_messages_of_both_kinds() -> None:
    async def main() -> None:
        server, wss, url = await serving()
        try:
            async with connect(url) as conn:
                first = status_of(await asyncio.wait_for(conn.recv(), 5))
                assert first["recovered"] is False and first["reason"] == "new" and first["offset"] == 0
                wss.broadcast("one")
                wss.broadcast(b"\x00two")
                assert await asyncio.wait_for(conn.recv(), 5) == "1:one"
                assert await asyncio.wait_for(conn.recv(), 5) == (2).to_bytes(8, "big") + b"\x00two"
        finally:
            server.close()

    run(main)


def test_broadcast_options_that_cannot_hold_with_recovery_are_refused() -> None:
    async def main() -> None:
        server, wss, _ = await serving()
        try:
            with pytest.raises(ValueError, match="recorded"):
                wss.broadcast("x", local=True)
            with pytest.raises(ValueError, match="recorded"):
                wss.broadcast("x", exclude=[])
        finally:
            server.close()

    run(main)


def test_a_client_that_comes_back_gets_exactly_what_it_missed_then_live() -> None:
    async def main() -> None:
        server, wss, url = await serving()
        try:
            received = await raw_client(url, 1)
            epoch = status_of(received[0])["epoch"]
            for n in range(1, 11):
                wss.broadcast(f"m{n}")
            async with connect(f"{url}?offset=4&epoch={epoch}") as conn:
                status = status_of(await asyncio.wait_for(conn.recv(), 5))
                assert (status["recovered"], status["reason"], status["offset"]) == (True, None, 4)
                replayed = [await asyncio.wait_for(conn.recv(), 5) for _ in range(6)]
                assert replayed == [f"{n}:m{n}" for n in range(5, 11)]
                wss.broadcast("live")
                assert await asyncio.wait_for(conn.recv(), 5) == "11:live"
            # Up to date: recovered, nothing replayed, live next.
            async with connect(f"{url}?offset=11&epoch={epoch}") as conn:
                status = status_of(await asyncio.wait_for(conn.recv(), 5))
                assert (status["recovered"], status["offset"]) == (True, 11)
                wss.broadcast("next")
                assert await asyncio.wait_for(conn.recv(), 5) == "12:next"
        finally:
            server.close()

    run(main)


@pytest.mark.parametrize(
    ("recovery", "query", "reason"),
    [
        (Recovery(max_messages=3), "offset=2&epoch={epoch}", "trimmed"),
        (Recovery(window=0.2), "offset=2&epoch={epoch}", "window"),
        (Recovery(), "offset=2&epoch=someotherepoch", "epoch"),
        (Recovery(), "offset=99&epoch={epoch}", "ahead"),
        (Recovery(), "offset=two&epoch={epoch}", "invalid"),
        (Recovery(), "offset=2", "invalid"),
    ],
)
def test_a_position_the_history_cannot_serve_is_refused_explicitly_and_nothing_of_it_is_sent(
    recovery: Recovery, query: str, reason: str
) -> None:
    async def main() -> None:
        server, wss, url = await serving(recovery)
        try:
            epoch = status_of((await raw_client(url, 1))[0])["epoch"]
            for n in range(1, 9):
                wss.broadcast(f"m{n}")
            await asyncio.sleep(0.35 if recovery.window < 1 else 0.05)
            async with connect(f"{url}?{query.format(epoch=epoch)}") as conn:
                status = status_of(await asyncio.wait_for(conn.recv(), 5))
                assert (status["recovered"], status["reason"], status["epoch"]) == (False, reason, epoch)
                assert status["offset"] == 8  # go on from the channel's last position
                wss.broadcast("after")
                # The next message is the live one: no part of the history came first.
                assert await asyncio.wait_for(conn.recv(), 5) == "9:after"
        finally:
            server.close()

    run(main)


def test_direct_sends_on_a_recorded_path_pass_unchanged() -> None:
    async def main() -> None:
        server, wss, url = await serving()
        wss.on("connection", lambda sock, request: sock.send("welcome"))
        try:
            messages = await raw_client(url, 2)
            # The welcome may come before the status (the status waits for the history): both arrive, unchanged.
            assert "welcome" in messages and any(str(m).startswith('{"type":"recovery"') for m in messages)
        finally:
            server.close()

    run(main)


# -- the seam, under load, with connections killed --------------------------------------------


async def numbered_through_cuts(
    wss: WebSocketServer, url: str, total: int, cuts: int, *, every: int, pause: float, by_client: tuple[int, ...] = (), delay: float = 0.02
) -> tuple[list[int], list[Status]]:
    """Broadcast 1..``total`` on ``wss`` (a pause every ``every``) while a ``recover=True`` client's connection
    is cut ``cuts`` times, by the client itself for the cuts numbered in ``by_client``, else by the server
    (no close handshake).  Returns what the client received and its statuses."""
    received: list[int] = []
    statuses: list[Status] = []
    client = ReconnectingWebSocket(url, recover=True, initial_delay=delay, max_delay=2 * delay)
    client.on("message", lambda event: received.append(int(event.data)))
    client.on("recovery", statuses.append)
    try:
        await until(lambda: statuses, what="first status")

        async def publish() -> None:
            for n in range(1, total + 1):
                wss.broadcast(str(n))
                if n % every == 0:
                    await asyncio.sleep(pause)

        publisher = asyncio.ensure_future(publish())
        for cut in range(cuts):
            await until(lambda: len(received) > (cut + 1) * total // (cuts + 2), timeout=10, what="messages before the cut")
            if cut in by_client:
                assert client.socket is not None
                client.socket.terminate()
            else:
                for sock in list(wss.clients or ()):
                    sock.terminate()
            await until(lambda: len(statuses) >= cut + 2, timeout=10, what="reconnected")
        await asyncio.wait_for(publisher, 20)
        await until(lambda: len(received) >= total, timeout=10, what=f"all {total} messages")
        await asyncio.sleep(0.1)
    finally:
        client.close()
    return received, statuses


def test_reconnecting_client_gets_every_message_once_in_order_while_its_connection_is_killed() -> None:
    """A publisher keeps broadcasting numbered messages; the client's TCP connection is cut three times
    (twice by the server, once by the client), and it comes back each time with its position."""
    total = 3000

    async def main() -> None:
        server, wss, url = await serving(Recovery(window=30, max_messages=total))
        try:
            received, statuses = await numbered_through_cuts(wss, url, total, 3, every=50, pause=0.005, by_client=(1,))
            assert received == list(range(1, total + 1))
            assert [s.recovered for s in statuses] == [False, True, True, True]
            assert statuses[0].reason == "new" and all(s.reason is None for s in statuses[1:])
        finally:
            server.close()

    run(main, timeout=60)


class SlowHistory(MemoryBackplane):
    """An in-process node with network-like delays: history reads take time before the read (live
    messages then arrive first and are in the history too) or after it (they come after the read);
    pub/sub deliveries may lag behind the history (a read then returns more than the node has seen)."""

    def __init__(self, delay_before: float, delay_after: float, feed_delay: float = 0.0, crosses: bool = False) -> None:
        super().__init__()
        self.crosses = crosses
        self.delays = (delay_before, delay_after)
        self.feed_delay = feed_delay
        self.reads = 0
        self._lagging: collections.deque[Message] = collections.deque()

    @property
    def crosses_processes(self) -> bool:
        """``crosses=True`` plays a Redis node: the feed then keeps its recent messages to serve catch-ups."""
        return self.crosses

    def _post(self, message: Message) -> int:
        if not self.feed_delay:
            return super()._post(message)
        self._lagging.append(message)  # first in, first out, whatever order the timers fire in
        self._loop.call_soon_threadsafe(self._loop.call_later, self.feed_delay, self._release_one)
        return 1

    def _release_one(self) -> None:
        super()._post(self._lagging.popleft())

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Any:
        await asyncio.sleep(self.delays[0] if since is not None else 0)
        replay = await super().history(channel, since, recovery)
        await asyncio.sleep(self.delays[1] if since is not None else 0)
        self.reads += since is not None
        return replay


@pytest.mark.parametrize(
    "delays",
    [(0.03, 0.0, 0.0, False), (0.0, 0.03, 0.0, False), (0.02, 0.02, 0.0, False), (0.0, 0.0, 0.03, False), (0.02, 0.02, 0.0, True)],
    ids=["overlap", "after", "both", "feed-lags", "from-the-node"],
)
def test_live_messages_that_arrive_while_the_history_is_read_are_neither_lost_nor_doubled(delays: tuple[float, float, float, bool]) -> None:
    total = 1500

    async def main() -> None:
        backplane = SlowHistory(*delays)
        server = http.Server("127.0.0.1:0", backplane=backplane)
        wss = WebSocketServer(server=server, path="/feed", recovery=Recovery(max_messages=total))
        await server.serve_async()
        try:
            received, statuses = await numbered_through_cuts(wss, f"ws://127.0.0.1:{server.port}/feed", total, 4, every=10, pause=0.001, delay=0.01)
            assert received == list(range(1, total + 1))
            assert all(s.recovered for s in statuses[1:])
            if backplane.crosses:
                # A node across processes served every catch-up from the messages it handed on lately.
                assert backplane.reads == 0
            else:
                # A client that had everything this node delivered goes live without a read; most cuts need one.
                assert backplane.reads >= 2
        finally:
            await server.close_async()

    run(main, timeout=60)


def test_two_servers_on_one_hub_recover_a_client_that_moves_between_them() -> None:
    """Two nodes (an in-process cluster): a client that was on one comes back on the other."""

    async def main() -> None:
        hub = MemoryHub()
        servers, urls, nodes = [], [], []
        for name in ("a", "b"):
            server = http.Server("127.0.0.1:0", backplane=MemoryBackplane(hub, node_id=name))
            nodes.append(WebSocketServer(server=server, path="/feed", recovery=True))
            await server.serve_async()
            servers.append(server)
            urls.append(f"ws://127.0.0.1:{server.port}/feed")
        try:
            async with connect(urls[0]) as conn:
                epoch = status_of(await asyncio.wait_for(conn.recv(), 5))["epoch"]
                await until(lambda: nodes[1].backplane is not None and nodes[1].backplane.started)
                nodes[1].broadcast("from b")
                nodes[0].broadcast("from a")
                assert await asyncio.wait_for(conn.recv(), 5) == "1:from b"
                assert await asyncio.wait_for(conn.recv(), 5) == "2:from a"
            for n in range(3, 6):
                nodes[n % 2].broadcast(f"m{n}")
            async with connect(f"{urls[1]}?offset=2&epoch={epoch}") as conn:
                assert status_of(await asyncio.wait_for(conn.recv(), 5))["recovered"] is True
                assert [await asyncio.wait_for(conn.recv(), 5) for _ in range(3)] == ["3:m3", "4:m4", "5:m5"]
        finally:
            for server in servers:
                server.close()

    run(main)


class BrokenHistory(MemoryBackplane):
    """A backplane whose history reads fail with an error that is not a ``BackplaneError`` (a bug)."""

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Any:
        if since is not None:
            raise RuntimeError("history bug")
        return await super().history(channel, since, recovery)


def test_a_history_read_that_fails_unexpectedly_closes_with_1013_and_holds_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Not only ``BackplaneError``: any failure reading the history answers the client (1013, come back
    later) instead of leaving it held, its live messages piling up, and the server goes on serving."""

    async def main() -> None:
        server = http.Server("127.0.0.1:0", backplane=BrokenHistory())
        wss = WebSocketServer(server=server, path="/feed", recovery=True)
        await server.serve_async()
        url = f"ws://127.0.0.1:{server.port}/feed"
        try:
            async with connect(url) as first:
                epoch = status_of(await asyncio.wait_for(first.recv(), 5))["epoch"]
                wss.broadcast("one")
                assert await asyncio.wait_for(first.recv(), 5) == "1:one"
                async with connect(f"{url}?offset=0&epoch={epoch}") as back:
                    await asyncio.wait_for(back.wait_closed(), 5)
                    assert back.close_code == 1013
                wss.broadcast("two")
                assert await asyncio.wait_for(first.recv(), 5) == "2:two"
        finally:
            await server.close_async()

    run(main)
    assert any("reading the history failed" in r.getMessage() for r in caplog.records)
