"""ws.styles.rooms: members, publish/subscribe, announcements, cleanup, the backend interface."""

from __future__ import annotations

import threading
from typing import Any, Hashable

import pytest

import ws
from ws.styles.endpoints import websockets
from ws.styles.rooms import MemoryBackend, Rooms

from .conftest import run, serving, until
from .styles_helpers import Peer, run_example


def test_publish_subscribe_and_unsubscribe() -> None:
    rooms = Rooms()
    room = rooms.get("general")
    got_a: list[Any] = []
    got_b: list[Any] = []
    off_a = room.subscribe(got_a.append)
    rooms.subscribe("general", got_b.append)
    assert room.publish({"n": 1}) == 2
    off_a()
    off_a()  # idempotent
    assert rooms.publish("general", {"n": 2}) == 1
    assert got_a == [{"n": 1}] and got_b == [{"n": 1}, {"n": 2}]
    assert rooms.publish("elsewhere", "x") == 0
    with pytest.raises(TypeError, match="callable"):
        room.subscribe("nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="room name"):
        rooms.get("")


def test_members_announcements_and_cleanup() -> None:
    rooms = Rooms()
    room = rooms["lobby"]
    seen: list[dict] = []
    unsubscribe = room.subscribe(seen.append)
    assert room.join("alice") is True
    assert room.join("alice") is False  # already in: no second announcement
    assert rooms.join("lobby", "bob") is True
    assert room.members() == ["alice", "bob"] == rooms.members("lobby")
    assert room.leave("alice") is True and room.leave("alice") is False
    room.join("carol", announce=False)
    assert [(m["type"], m["member"], m["room"]) for m in seen] == [
        ("joined", "alice", "lobby"),
        ("joined", "bob", "lobby"),
        ("left", "alice", "lobby"),
    ]
    assert all(m["timestamp"].endswith("Z") for m in seen)
    assert "lobby" in rooms and len(rooms) == 1 and list(rooms) == ["lobby"]
    room.leave("bob")
    room.leave("carol")
    assert "lobby" in rooms  # a subscriber still listens
    unsubscribe()
    assert "lobby" not in rooms and rooms.names() == []  # empty rooms are gone


def test_failing_subscriber_does_not_stop_the_others() -> None:
    rooms = Rooms()
    got: list[Any] = []

    def broken(message: Any) -> None:
        raise RuntimeError("subscriber bug")

    rooms.subscribe("r", broken)
    rooms.subscribe("r", got.append)
    assert rooms.publish("r", 1) == 2
    assert got == [1]


def test_thread_safety_of_the_memory_backend() -> None:
    rooms = Rooms()

    def churn(n: int) -> None:
        for i in range(200):
            off = rooms.subscribe(f"room{i % 5}", lambda m: None)
            rooms.join(f"room{i % 5}", (n, i), announce=False)
            rooms.publish(f"room{i % 5}", i)
            rooms.leave(f"room{i % 5}", (n, i), announce=False)
            off()

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert rooms.names() == []


def test_custom_backend_behind_the_interface() -> None:
    class Recording(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple] = []

        def publish(self, room: str, message: Any) -> int:
            self.calls.append(("publish", room, message))
            return super().publish(room, message)

        def add_member(self, room: str, member: Hashable) -> bool:
            self.calls.append(("add", room, member))
            return super().add_member(room, member)

    backend = Recording()
    rooms = Rooms(backend)
    rooms.join("r", "m", announce=False)
    rooms.publish("r", "hi")
    assert backend.calls == [("add", "r", "m"), ("publish", "r", "hi")]


def test_module_level_api_is_the_process_wide_rooms() -> None:
    got: list[Any] = []
    off = ws.styles.rooms.subscribe("ws-rooms-module-test", got.append)
    try:
        ws.styles.rooms.join("ws-rooms-module-test", "zed")
        assert ws.styles.rooms.members("ws-rooms-module-test") == ["zed"]
        assert ws.styles.rooms.get("ws-rooms-module-test").publish("x") == 1
        assert "ws-rooms-module-test" in ws.styles.rooms.names()
    finally:
        ws.styles.rooms.leave("ws-rooms-module-test", "zed", announce=False)
        off()
    assert got[0]["type"] == "joined" and got[1] == "x"
    assert "ws-rooms-module-test" not in ws.styles.rooms.names()


def test_rooms_over_real_connections() -> None:
    """Two clients in a room through declarative endpoints: async subscribers, leave on close."""

    async def main() -> None:
        rooms = Rooms()
        unsubscribers: dict[str, Any] = {}

        def on_open(connection: Any) -> None:
            name = connection.query["name"]

            async def forward(message: Any) -> None:  # async subscribers are scheduled
                connection.send(message)

            unsubscribers[connection.id] = rooms.subscribe("chat", forward)
            rooms.join("chat", name)

        def on_message(message: Any, connection: Any) -> None:
            rooms.publish("chat", {"from": connection.query["name"], "text": message})

        def on_close(code: int, reason: str, connection: Any) -> None:
            unsubscribers.pop(connection.id)()
            rooms.leave("chat", connection.query["name"])

        async with serving(None) as (server, _):
            websockets(server, {"chat": {"on_open": on_open, "on_message": on_message, "on_close": on_close}})
            ann = await Peer.connect(server, "/api/_websockets/chat?name=ann")
            assert (await ann.recv_json())["member"] == "ann"
            bob = await Peer.connect(server, "/api/_websockets/chat?name=bob")
            assert (await ann.recv_json())["member"] == "bob"
            assert (await bob.recv_json())["member"] == "bob"
            bob.send("hi all")
            assert await ann.recv_json() == {"from": "bob", "text": "hi all"}
            assert await bob.recv_json() == {"from": "bob", "text": "hi all"}
            await bob.close()
            left = await ann.recv_json()
            assert (left["type"], left["member"]) == ("left", "bob")
            assert rooms.members("chat") == ["ann"]
            await ann.close()
            await until(lambda: rooms.names() == [])

    run(main)


def test_example_uses_rooms() -> None:
    out = run_example("style_routes.py")
    joined = [line for line in out.splitlines() if '"type":"joined"' in line]
    assert len(joined) == 3  # Alice sees Alice and Bob; Bob sees Bob
    assert sum('"type":"left"' in line for line in out.splitlines()) == 1
