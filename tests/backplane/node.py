"""A backplane node in a process of its own, for the SIGKILL test.

    python -m tests.backplane.node URL GROUP COUNT TTL

Tracks COUNT members in GROUP, prints its node id, then idles until killed
(at most a minute, so that a failed test leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import sys

from ws.backplane import RedisBackplane


async def main(url: str, group: str, count: int, ttl: float) -> None:
    node = RedisBackplane(url, presence_ttl=ttl)
    await node.start()
    for i in range(count):
        await node.track(group, f"remote-{i}")
    print(node.node_id, flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
