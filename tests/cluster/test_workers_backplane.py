"""``serve(workers=2)`` with a Redis backplane: a broadcast made in one worker reaches the clients of both."""

from __future__ import annotations

import asyncio
from collections import Counter

from websockets.asyncio.client import connect

from ..backplane.conftest import RedisServer
from ..conftest import run
from ..test_workers import APP, Program, programs  # noqa: F401  (the fixture)


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
