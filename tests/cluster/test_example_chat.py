"""``scripts/examples/chat_cluster.py`` end to end: two workers, a real Redis, clients of a room on both workers.

Every member of the room receives every message of the room exactly once,
whichever worker it and the sender are on; a member of another room
receives none; ``GET /rooms`` lists the cluster's members; SIGTERM stops it
cleanly.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from ..backplane.conftest import RedisServer
from ..conftest import ROOT, run
from ..test_workers import Program, programs  # noqa: F401  (the fixture)

EXAMPLE = ROOT / "scripts" / "examples" / "chat_cluster.py"


async def welcome(conn: ClientConnection) -> dict[str, Any]:
    """Read up to the welcome (announcements of others may come first)."""
    while True:
        message = json.loads(await asyncio.wait_for(conn.recv(), 10))
        if message["type"] == "welcome":
            return message  # type: ignore[no-any-return]


async def chat_messages(conn: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` chat messages (announcements skipped), then whatever else arrives within 0.3 s."""
    got: list[dict[str, Any]] = []
    wait = 10.0
    while True:
        try:
            message = json.loads(await asyncio.wait_for(conn.recv(), wait))
        except asyncio.TimeoutError:
            if len(got) >= count:
                return got
            raise AssertionError(f"{len(got)} of {count} messages within 10 s: {got}") from None
        if message["type"] == "message":
            got.append(message)
            if len(got) >= count:
                wait = 0.3  # a duplicate would arrive about now


def test_chat_cluster_example_delivers_each_room_message_once_on_both_workers(
    programs: list[Program], redis_server: RedisServer  # noqa: F811
) -> None:
    program = Program(str(EXAMPLE), "0", "--workers", "2", env={"WS_BACKPLANE": redis_server.url})
    programs.append(program)
    program.ready()
    base = f"127.0.0.1:{program.port}"

    async def main() -> None:
        lobby: list[ClientConnection] = []
        users: list[str] = []
        workers: Counter[int] = Counter()
        try:
            for i in range(40):  # until both workers hold two members of the room (the kernel spreads them)
                conn = await connect(f"ws://{base}/chat/lobby?user=u{i}", open_timeout=10, close_timeout=2)
                lobby.append(conn)
                users.append(f"u{i}")
                workers[(await welcome(conn))["worker"]] += 1
                if len(workers) == 2 and min(workers.values()) >= 2:
                    break
            assert set(workers) == {1, 2}, workers
            elsewhere = await connect(f"ws://{base}/chat/elsewhere?user=x", open_timeout=10, close_timeout=2)
            await welcome(elsewhere)
            listed = await asyncio.to_thread(rooms_of, base)  # members in joining order, from both workers
            assert listed == {"lobby": users, "elsewhere": ["x"]}, listed

            for user, conn in zip(users, lobby):
                await conn.send(f"hello from {user}")
            received = await asyncio.gather(*(chat_messages(conn, len(users)) for conn in lobby))
            for got in received:  # every message of the room, exactly once, on both workers
                assert Counter(m["text"] for m in got) == Counter(f"hello from {u}" for u in users), got
                assert {m["worker"] for m in got} == {1, 2}
            try:
                stray = await asyncio.wait_for(elsewhere.recv(), 0.3)
            except asyncio.TimeoutError:
                stray = None
            assert stray is None or json.loads(stray)["type"] != "message", stray
            await elsewhere.close()
        finally:
            for conn in lobby:
                await conn.close()

    run(main, timeout=60)
    program.signal(signal.SIGTERM)
    assert program.exit_status() == 0, program.output()


def rooms_of(base: str) -> Any:
    with urllib.request.urlopen(f"http://{base}/rooms", timeout=5) as answer:
        return json.loads(answer.read())
