"""Recovery across processes: ``serve(workers=2)`` on a real ``redis-server``, history in Redis Streams.

A publisher keeps sending numbered messages (broadcast on a recorded path) while the worker that
holds a subscriber is killed with SIGKILL, and, in another run, while Redis restarts without
persistence.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from ws import ReconnectingWebSocket
from ws.recovery import Status

from ..backplane.conftest import RedisServer
from ..conftest import run, until
from ..test_workers import APP, Program, programs  # noqa: F401  (the fixture)


async def subscriber_on_another_worker(program: Program, avoid: int) -> tuple[ReconnectingWebSocket, int, list[Any], list[Status]]:
    """A ``recover=True`` client of /feed held by a worker other than ``avoid``."""
    for _ in range(60):
        received: list[Any] = []
        statuses: list[Status] = []
        client = ReconnectingWebSocket(program.url + "feed", recover=True, initial_delay=0.05, max_delay=0.2)
        client.on("message", lambda event, into=received: into.append(event.data))
        client.on("recovery", statuses.append)
        await until(lambda: any(str(m).startswith("pid ") for m in received) and statuses, timeout=10, what="pid and status")
        pid = int(next(m for m in received if str(m).startswith("pid "))[4:])
        if pid != avoid:
            received.clear()
            return client, pid, received, statuses
        client.close()
    raise AssertionError("no subscriber reached the other worker")


async def publisher(program: Program) -> tuple[ClientConnection, int]:
    conn = await connect(program.url + "pub", open_timeout=10, close_timeout=2)
    return conn, int((await asyncio.wait_for(conn.recv(), 10))[4:])


def numbers(received: list[Any]) -> list[int]:
    """The numbered broadcasts among what a client got (``pid N`` greetings of each new connection left out)."""
    return [int(m) for m in received if not str(m).startswith("pid ")]


def test_a_client_of_a_killed_worker_recovers_every_message_on_the_other(programs: list[Program], redis_server: RedisServer) -> None:
    total = 1200
    program = Program(str(APP), "0", "2", "feed", redis_server.url)
    programs.append(program)
    program.ready()

    async def main() -> None:
        pub, pub_pid = await publisher(program)
        client, victim, received, statuses = await subscriber_on_another_worker(program, avoid=pub_pid)
        try:

            async def send_all() -> None:
                for n in range(1, total + 1):
                    await pub.send(str(n))
                    if n % 20 == 0:
                        await asyncio.sleep(0.01)

            sending = asyncio.ensure_future(send_all())
            await until(lambda: len(numbers(received)) > total // 3, timeout=20, what="a third of the messages")
            os.kill(victim, signal.SIGKILL)  # the subscriber's worker dies mid-stream
            await until(lambda: len(statuses) >= 2, timeout=20, what="the subscriber back on a worker")
            await until(lambda: len(numbers(received)) > 2 * total // 3, timeout=20, what="two thirds")
            assert client.socket is not None
            client.socket.terminate()  # and its own TCP connection is cut once more
            await until(lambda: len(statuses) >= 3, timeout=20, what="the subscriber back again")
            await asyncio.wait_for(sending, 30)
            await until(lambda: len(numbers(received)) >= total, timeout=20, what=f"all {total} messages")
            await asyncio.sleep(0.2)
            assert numbers(received) == list(range(1, total + 1))
            assert [s.recovered for s in statuses] == [False, True, True], statuses
        finally:
            client.close()
            await pub.close()

    run(main, timeout=90)


def test_after_redis_lost_its_data_clients_are_told_they_were_not_recovered(programs: list[Program], redis_server: RedisServer) -> None:
    program = Program(str(APP), "0", "2", "feed", redis_server.url)
    programs.append(program)
    program.ready()

    async def main() -> None:
        pub, pub_pid = await publisher(program)
        client, _, received, statuses = await subscriber_on_another_worker(program, avoid=pub_pid)
        try:
            for n in range(1, 11):
                await pub.send(str(n))
            await until(lambda: numbers(received) == list(range(1, 11)), timeout=10, what="the first ten")
            old_epoch = statuses[-1].position.epoch
            redis_server.stop()  # no persistence: the history and its epoch are gone
            redis_server.start()
            # The next broadcast starts a new epoch; the live client is told before it gets it.
            for _ in range(100):
                await pub.send("after")
                await asyncio.sleep(0.05)
                if "after" in [str(m) for m in received]:
                    break
            await until(lambda: any(s.reason == "epoch" for s in statuses), timeout=10, what="the epoch reset status")
            reset = next(s for s in statuses if s.reason == "epoch")
            assert reset.recovered is False and reset.position.epoch != old_epoch
            # A client that comes back with the old position is refused, explicitly.
            async with connect(program.url + f"feed?offset=5&epoch={old_epoch}", open_timeout=10) as conn:
                for _ in range(3):
                    message = await asyncio.wait_for(conn.recv(), 10)
                    if str(message).startswith('{"type":"recovery"'):
                        assert '"recovered":false' in str(message) and '"reason":"epoch"' in str(message)
                        break
                else:
                    raise AssertionError("no status")
        finally:
            client.close()
            await pub.close()

    run(main, timeout=90)
