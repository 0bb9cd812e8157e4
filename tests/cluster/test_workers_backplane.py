"""``serve(workers=2)`` with a Redis backplane.

A broadcast made in one worker reaches the clients of both; a worker killed
with SIGKILL leaves presence within the TTL while the other keeps serving,
and its replacement joins the cluster.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect

from ..backplane.conftest import RedisServer
from ..conftest import run
from ..test_workers import APP, Program, programs  # noqa: F401  (the fixture)
from .conftest import get_json, settle


def test_workers_share_broadcast_through_redis(programs: list[Program], redis_server: RedisServer) -> None:
    program = Program(str(APP), "0", "2", "chat", redis_server.url)
    programs.append(program)
    program.ready()
    assert "without a backplane" not in program.output()

    async def main() -> None:
        conns, pids = [], Counter[int]()
        try:
            for _ in range(40):  # until both workers hold a few clients (the kernel spreads them)
                conn = await connect(program.url, open_timeout=10, close_timeout=2)
                conns.append(conn)
                pids[int(await asyncio.wait_for(conn.recv(), 10))] += 1
                if len(pids) == 2 and min(pids.values()) >= 3:
                    break
            assert len(pids) == 2 and set(pids) == set(program.pids), (pids, program.pids)
            await conns[0].send("hello everyone")
            for conn in conns:  # every client of both workers, exactly once
                assert await asyncio.wait_for(conn.recv(), 10) == "hello everyone"
            for conn in conns:
                try:
                    extra = await asyncio.wait_for(conn.recv(), 0.2)
                except asyncio.TimeoutError:
                    continue
                raise AssertionError(f"a client got a second message: {extra!r}")
        finally:
            for conn in conns:
                await conn.close()

    run(main, timeout=60)


async def spread(url: str, each: int) -> dict[int, list[ClientConnection]]:
    """Connect until each of the two workers holds ``each`` clients; the connections by worker pid."""
    by_pid: dict[int, list[ClientConnection]] = {}
    for _ in range(20 * each):
        conn = await connect(url, open_timeout=10, close_timeout=2)
        by_pid.setdefault(int(await asyncio.wait_for(conn.recv(), 10)), []).append(conn)
        if len(by_pid) == 2 and min(len(conns) for conns in by_pid.values()) >= each:
            return by_pid
    raise AssertionError(f"the clients did not reach both workers: {by_pid}")


def test_a_killed_worker_leaves_presence_within_the_ttl_and_is_replaced(
    programs: list[Program], redis_server: RedisServer
) -> None:
    ttl = 1.5
    program = Program(str(APP), "0", "2", "chat", redis_server.url, str(ttl))
    programs.append(program)
    program.ready()

    async def count() -> int:
        """The cluster's count, from whichever worker answers (-1: a request reset in the dead worker's backlog)."""
        try:
            return int((await get_json(program.port, "/count"))["count"])
        except ConnectionResetError:
            return -1

    async def main() -> None:
        by_pid = await spread(program.url, 3)
        everyone = [conn for conns in by_pid.values() for conn in conns]
        try:
            await settle(lambda: _equals(count, len(everyone)), what="every client in presence")
            victim, survivor = sorted(by_pid, key=lambda pid: len(by_pid[pid]))
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()

            # Its clients leave presence within the TTL (asked of whichever worker answers).
            await settle(lambda: _equals(count, len(by_pid[survivor])), ttl + 3, what="the dead worker's clients gone")
            assert time.monotonic() - killed < ttl + 1.5  # the TTL plus a refresh period and polling
            died = program.wait_for(rf"ws: worker (\d) \(pid {victim}\) was killed by SIGKILL; starting another")

            # The survivor kept serving: its clients still hear each other, once.
            await by_pid[survivor][0].send("still here")
            for conn in by_pid[survivor]:
                assert await asyncio.wait_for(conn.recv(), 10) == "still here"

            # The replacement joins the cluster: its client counts, and its broadcast reaches the survivor's clients.
            before = len(everyone)
            new = int(program.wait_for(rf"ws: worker {died.group(1)} \(pid (\d+)\) listening").group(1))
            for _ in range(100):
                conn = await connect(program.url, open_timeout=10, close_timeout=2)
                everyone.append(conn)
                if int(await asyncio.wait_for(conn.recv(), 10)) == new:
                    break
            else:
                raise AssertionError(f"no connection reached the replacement {new}")
            alive = len(by_pid[survivor]) + len(everyone) - before  # the new ones are on the survivor or the replacement
            await settle(lambda: _equals(count, alive), what="the new clients in presence")
            await conn.send("from the replacement")
            for other in by_pid[survivor]:
                assert await asyncio.wait_for(other.recv(), 10) == "from the replacement"
        finally:
            for conn in everyone:
                await conn.close()

    run(main, timeout=60)
    program.signal(signal.SIGTERM)
    assert program.exit_status() == 0, program.output()


async def _equals(read: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await read() == expected
