"""What only the in-process backplane has: nodes on different event loops (threads) share one hub."""

from __future__ import annotations

import asyncio
import threading

from ws.backplane import MemoryBackplane, MemoryHub, Message

from ..conftest import run, until


def test_nodes_on_two_loops_share_a_hub() -> None:
    hub = MemoryHub()
    got: list[Message] = []
    ready, finished = threading.Event(), threading.Event()
    other = MemoryBackplane(hub, node_id="other-thread")

    async def serve_other() -> None:
        await other.start()
        await other.subscribe("room", got.append)
        await other.track("g", "there")
        ready.set()
        while not finished.is_set():
            await asyncio.sleep(0.01)
        await other.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve_other()), daemon=True)
    thread.start()
    assert ready.wait(5)

    async def main() -> None:
        async with MemoryBackplane(hub, node_id="here") as here:
            await here.track("g", "local")
            assert await here.count("g") == 2
            assert [await here.publish("room", b"%d" % i) for i in range(3)] == [1, 1, 1]
            await until(lambda: len(got) == 3, what="the other loop received")
            assert [m.data for m in got] == [b"0", b"1", b"2"]
            assert threading.current_thread() is not thread

    try:
        run(main)
    finally:
        finished.set()
        thread.join(5)
    assert not thread.is_alive()
