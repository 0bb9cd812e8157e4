"""Two and three server processes sharing one real Redis: the same handler code as one process.

Clients spread over the nodes; every broadcast and room message reaches
every intended client exactly once and no other; send/close by id cross
processes; an unknown id is ``ConnectionNotFound``; presence counts are the
cluster's.  The failure cases (Redis restarted, a node SIGKILLed) are in
``test_failures.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..conftest import run
from .conftest import Client, Node, RedisServer, clients, cluster, settle, tracked


def test_broadcast_reaches_every_client_of_the_path_once_on_three_nodes(redis_server: RedisServer) -> None:
    with cluster(redis_server, 3) as nodes:

        async def main() -> None:
            urls = [node.url("/bc") for node in nodes for _ in range(2)]
            async with clients(*urls, *(node.url("/other") for node in nodes)) as made:
                bc, other = made[:6], made[6:]
                await tracked(nodes, 6)
                sent = [f"m{i}" for i in range(20)]
                for i, text in enumerate(sent):
                    local = await nodes[i % 3].broadcast(text)  # from each node in turn
                    assert local == 2  # broadcast() answers for its own process
                await asyncio.gather(*(c.next(lambda m: m == "m19") for c in bc))
                # One more from each node: the tails are in.  Exactly once each; each node's own
                # broadcasts in the order it made them (nodes are not ordered among themselves).
                for node in nodes:
                    await node.broadcast(f"end-{node.node_id}")
                await asyncio.gather(*(c.next(lambda m, n=n: m == f"end-{n.node_id}") for c in bc for n in nodes))
                for client in bc:
                    got = client.texts()
                    assert sorted(got) == sorted(sent + [f"end-{n.node_id}" for n in nodes]), client.url
                    for origin, node in enumerate(nodes):
                        mine = [t for i, t in enumerate(sent) if i % 3 == origin] + [f"end-{node.node_id}"]
                        assert [t for t in got if t in mine] == mine, client.url
                assert all(c.received == [] for c in other)  # one channel per path

                # local=True stays in its process; exclude names a socket of the sender's process.
                assert await nodes[1].broadcast("only-node-1", local=True) == 2
                bc[0].send({"broadcast": "not-to-me", "exclude_me": True})
                await asyncio.gather(*(c.next(lambda m: m == "not-to-me") for c in bc[1:]))
                await nodes[0].broadcast("fence")
                await asyncio.gather(*(c.next(lambda m: m == "fence") for c in bc))
                for index, client in enumerate(bc):
                    assert client.texts().count("only-node-1") == (1 if index in (2, 3) else 0)
                    assert client.texts().count("not-to-me") == (0 if index == 0 else 1)
                state = await nodes[2].state()
                assert state["errors"] == []

        run(main, 40)


def room_url(node: Node, room: str, user: str) -> str:
    return node.url(f"/room/{room}?user={user}")


async def join(url: str) -> Client:
    client = await Client(url).open()
    await client.next(lambda m: isinstance(m, dict) and "ready" in m)
    return client


def said(client: Client) -> list[Any]:
    return [m["say"] for m in client.received if isinstance(m, dict) and "say" in m]


def numsub(redis: RedisServer, channel: str) -> int:
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        return int(dict(client.pubsub_numsub(f"ws:ch:{{{channel}}}"))[f"ws:ch:{{{channel}}}".encode()])
    finally:
        client.close()


def test_rooms_publish_to_members_on_every_node_and_only_nodes_with_members_subscribe(redis_server: RedisServer) -> None:
    with cluster(redis_server, 3) as nodes:

        async def main() -> None:
            # Room "a": ann on node 0, bob on node 1.  Room "b": cyd on node 1, dan on node 2.
            ann = await join(room_url(nodes[0], "a", "ann"))
            bob = await join(room_url(nodes[1], "a", "bob"))
            cyd = await join(room_url(nodes[1], "b", "cyd"))
            dan = await join(room_url(nodes[2], "b", "dan"))
            everyone = [ann, bob, cyd, dan]
            try:
                # A channel per room, subscribed only by the nodes with members in it.
                assert numsub(redis_server, "room:a") == 2 and numsub(redis_server, "room:b") == 2
                for i in range(10):
                    (ann if i % 2 else bob).send({"say": f"a{i}"})
                    dan.send({"say": f"b{i}"})
                await asyncio.gather(
                    *(c.next(lambda m: isinstance(m, dict) and m.get("say") == "a9") for c in (ann, bob)),
                    *(c.next(lambda m: isinstance(m, dict) and m.get("say") == "b9") for c in (cyd, dan)),
                )
                # Server-side publishes too: node 2 has nobody in "a" and still reaches it.
                assert (await nodes[2].get("/publish?room=a&text=from-2"))["local"] == 0
                await asyncio.gather(*(c.next(lambda m: m == "from-2") for c in (ann, bob)))
                await nodes[0].get("/publish?room=b&text=fence")
                await asyncio.gather(*(c.next(lambda m: m == "fence") for c in (cyd, dan)))
                for client in (ann, bob):  # exactly once each, each sender's in order
                    got = said(client)
                    assert sorted(got) == sorted(f"a{i}" for i in range(10))
                    assert [t for t in got if int(t[1:]) % 2] == [f"a{i}" for i in range(1, 10, 2)]
                    assert [t for t in got if not int(t[1:]) % 2] == [f"a{i}" for i in range(0, 10, 2)]
                    assert client.received.count("from-2") == 1 and "fence" not in client.received
                for client in (cyd, dan):
                    assert said(client) == [f"b{i}" for i in range(10)]
                    assert "from-2" not in client.received

                # Members are the cluster's, from any node (node 2 has none of room "a").
                state = await nodes[2].state()
                assert sorted(state["rooms"]["a"]) == ["ann", "bob"] and sorted(state["rooms"]["b"]) == ["cyd", "dan"]

                # The last member of a node leaves: that node unsubscribes.
                bob.send({"leave": True})

                async def left() -> bool:
                    state = await nodes[0].state()
                    return state["rooms"].get("a") == ["ann"] and numsub(redis_server, "room:a") == 1

                await settle(left, what="bob gone from room a and node 1 off its channel")
            finally:
                for client in everyone:
                    client.socket.close()

        run(main, 40)


def test_send_and_close_by_id_across_processes_and_unknown_ids(redis_server: RedisServer) -> None:
    with cluster(redis_server, 2) as nodes:

        async def main() -> None:
            async with clients(nodes[0].url("/direct"), nodes[1].url("/direct"), nodes[1].url("/direct")) as made:
                here, there, victim = made
                ids = []
                for client in made:
                    client.send({"whoami": 1})
                    ids.append((await client.next(lambda m: isinstance(m, dict) and "id" in m))["id"])
                await settle(lambda: _ids(nodes[0], ids), what="every id in presence")

                for i in range(5):
                    here.send({"to": ids[1], "data": {"n": i}})
                await there.next(lambda m: m == {"n": 4})
                assert [m for m in there.received if isinstance(m, dict) and "n" in m] == [{"n": i} for i in range(5)]
                assert not any(isinstance(m, dict) and "n" in m for m in victim.received)

                here.send({"to": "no-such-id", "data": "x"})
                error = await here.next(lambda m: isinstance(m, dict) and "error" in m)
                assert error["error"] == "ConnectionNotFound" and "on any node" in error["message"]

                there.send({"close": ids[0], "code": 4001})  # node 1 closes a connection of node 0
                await settle(lambda: _closed(here))
                assert here.closed == (4001, "closed by id")
                await settle(lambda: _gone(nodes[1], ids[0]), what="the closed id gone from presence")

        run(main, 30)


async def _ids(node: Node, ids: list[str]) -> bool:
    return sorted((await node.state())["direct"]) == sorted(ids)


async def _closed(client: Client) -> bool:
    return client.closed is not None


async def _gone(node: Node, cid: str) -> bool:
    return cid not in (await node.state())["direct"]


def test_presence_counts_per_path_per_room_and_in_total(redis_server: RedisServer) -> None:
    with cluster(redis_server, 2) as nodes:

        async def main() -> None:
            async with clients(nodes[0].url("/bc"), nodes[1].url("/bc"), nodes[1].url("/bc"), nodes[0].url("/other")) as made:
                await tracked(nodes, 3)
                room = await join(room_url(nodes[1], "lobby", "eve"))
                try:
                    for node in nodes:
                        state = await node.state()
                        assert (state["bc"], state["other"]) == (3, 1)
                        assert state["total"] == 3 + 1 + 1  # /bc, /other, and the room's route
                        assert state["rooms"] == {"lobby": ["eve"]}
                        assert sorted(state["nodes"]) == sorted(n.node_id for n in nodes)
                finally:
                    room.socket.close()
                made[0].socket.close()
                await tracked(nodes, 2)

        run(main, 30)


def test_ws_serve_broadcast_with_a_backplane(redis_server: RedisServer) -> None:
    """``ws serve --broadcast --backplane URL`` twice: a message to one server reaches the other's clients."""
    import re
    import subprocess
    import sys

    from ..backplane.conftest import free_port
    from ..conftest import ROOT

    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ws", "serve", "--broadcast", "--port", str(port), "--backplane", redis_server.url],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for port in ports
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()  # bounded: the process exits (EOF) if it cannot start
            assert re.search(r"Listening on ws://127\.0\.0\.1:\d+/ \(broadcast, backplane node [^,\s]+, loop: \w+[,)]", line), line

        async def main() -> None:
            async with clients(*(f"ws://127.0.0.1:{port}/" for port in ports)) as (one, two):
                await settle(lambda: _heard(one, two), what="a broadcast through the other server")

        run(main, 20)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


async def _heard(one: Client, two: Client) -> bool:
    """Send from ``one``'s server until ``two`` (on the other server) hears it (subscriptions are made at start)."""
    one.socket.send("hello")
    await asyncio.sleep(0.05)
    return "hello" in two.received and "hello" in one.received
