"""The cluster's failure behaviour, with real processes and a real Redis.

Redis unreachable at start is a clear error (the server and ``ws serve``);
Redis restarted mid-run: local delivery never stops, cross-node publishes
during the outage fail visibly (``'error'`` with the cause), subscriptions
and presence come back by themselves; a node SIGKILLed: gone from presence
within the TTL, the others keep serving.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from ws import WebSocketServer, http
from ws.backplane import BackplaneError, RedisBackplane

from ..conftest import ROOT, run
from .conftest import Client, Node, RedisServer, clients, cluster, heard_again, settle, tracked
from ..backplane.conftest import free_port


def test_redis_unreachable_when_serving_starts_is_a_clear_error_not_a_hang() -> None:
    async def main() -> None:
        url = f"redis://127.0.0.1:{free_port()}/0"
        server = http.Server("127.0.0.1:0", backplane=RedisBackplane(url, connect_timeout=1.0))
        wss = WebSocketServer(server=server, path="/bc")
        errors: list[BaseException] = []
        server.on("error", errors.append)
        started = time.monotonic()
        with pytest.raises(BackplaneError, match="could not connect to Redis at redis://127.0.0.1"):
            await server.serve_async()
        assert time.monotonic() - started < 2.0
        assert not server.listening and errors and isinstance(errors[0], BackplaneError)
        wss.close()

    run(main, 10)


def test_ws_serve_with_an_unreachable_backplane_exits_with_the_reason() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "-m", "ws", "serve", "--port", "0", "--broadcast", "--backplane", url],
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )
    assert done.returncode == 1
    assert "could not connect to Redis at redis://127.0.0.1" in done.stderr


def test_redis_restarted_mid_run(redis_server: RedisServer) -> None:
    with cluster(redis_server, 2) as nodes:

        async def main() -> None:
            urls = [node.url("/bc") for node in nodes for _ in range(2)]
            async with clients(*urls) as made:
                near, far = made[:2], made[2:]
                await tracked(nodes, 4)
                redis_server.stop()

                # Local delivery never stops; the publish to the other node fails, visibly.
                assert await nodes[0].broadcast("during") == 2
                await asyncio.gather(*(c.next(lambda m: m == "during") for c in near))

                async def failed() -> list[str]:
                    return [e for e in (await nodes[0].state())["errors"] if "publish failed" in e]

                errors = await settle(failed, what="the failed publish reported as 'error'")
                assert "BackplaneError" in errors[0] and "(cause: " in errors[0]
                # A room's publish too (the rooms backend's 'error').
                assert (await nodes[0].get("/publish?room=r&text=lost"))["local"] == 0
                await settle(lambda: _more(nodes[0], len(errors)), what="the failed room publish reported")

                redis_server.start()
                # Subscriptions come back by themselves: probe until node 1's clients hear node 0.
                await heard_again(nodes[0], far, what="node 1 receiving node 0's broadcasts again")
                # Presence is written again from each node's own records (this Redis lost everything).
                await tracked(nodes, 4, timeout=10)
                await nodes[1].broadcast("after")
                await asyncio.gather(*(c.next(lambda m: m == "after") for c in made))
                for client in made:
                    assert client.received.count("after") == 1
                for client in far:  # at most once: what was published during the outage is lost
                    assert "during" not in client.received

        run(main, 40)


async def _more(node: Node, count: int) -> bool:
    return len([e for e in (await node.state())["errors"] if "publish failed" in e]) > count


def test_a_node_killed_leaves_presence_within_the_ttl_and_the_others_keep_serving(redis_server: RedisServer) -> None:
    ttl = 1.5
    with cluster(redis_server, 3, ttl=ttl) as nodes:

        async def main() -> None:
            async with clients(*(node.url("/bc") for node in nodes)) as made:
                await tracked(nodes, 3)
                victim: Node = nodes[2]
                victim.kill()
                killed = time.monotonic()

                async def gone() -> bool:
                    states = await asyncio.gather(*(node.state() for node in nodes[:2]))
                    return all(s.get("bc") == 2 and victim.node_id not in s.get("nodes", [victim.node_id]) for s in states)

                await settle(gone, ttl + 3, what="the killed node gone from presence")
                assert time.monotonic() - killed < ttl + 1.5  # the TTL plus a refresh period and polling
                await nodes[1].broadcast("still-here")
                await asyncio.gather(*(c.next(lambda m: m == "still-here") for c in made[:2]))
                assert made[2].received.count("still-here") == 0

        run(main, 30)


def test_a_client_that_left_while_redis_was_away_is_gone_after_a_restart_that_kept_the_data(redis_server: RedisServer) -> None:
    """Redis comes back with its data (SAVE, then a restart that loads the dump): the stale entry of the
    client that left during the outage is in it, and only its node's refresh takes it out."""
    with cluster(redis_server, 2) as nodes:

        async def main() -> None:
            urls = [node.url("/bc") for node in nodes for _ in range(2)]
            async with clients(*urls) as made:
                await tracked(nodes, 4)
                redis_server.save()
                redis_server.stop()
                made[3].socket.close()  # a client of node 1 leaves while Redis is away
                await settle(lambda: _closed(made[3]), what="the client closed")
                redis_server.start()
                await heard_again(nodes[0], made[2:3], what="node 1 receiving node 0's broadcasts again")
                await tracked(nodes, 3, timeout=10)

        run(main, 40)


async def _closed(client: Client) -> bool:
    return client.closed is not None
