"""``ws.recovery.RecordedStream``: the seam between the history and the live stream, when the node's feed lags.

Pub/sub hands a message to a node a moment after the history holds it (in
memory: a callback queued on the node's loop; on Redis: the subscription's
connection, apart from the one that reads the history).  A client that
catches up in that moment must still get each message once.  Both cases
are built deterministically on one loop with ``MemoryBackplane`` nodes, and
observed through ``PathRecovery`` (the raw path's delivery) and through the
rooms' subscribers (``BackplaneBackend``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Hashable, Iterable

from ws.backplane.history import Position, Recovery
from ws.backplane.memory import MemoryBackplane, MemoryHub
from ws.recovery import PathRecovery

from .conftest import run, until


class Clients:
    """The raw path's ``send``: what each client that joined got, as text."""

    def __init__(self) -> None:
        self.got: dict[Hashable, list[str]] = {}

    def join(self, stream: PathRecovery, client: str, since: Position) -> None:
        self.got[client] = []
        stream.joined(client, since)

    def send(self, clients: Iterable[Hashable] | None, is_text: bool, payload: bytes, exclude: Iterable[Hashable]) -> None:
        skip = set(exclude)
        for client in self.got if clients is None else clients:
            if client not in skip:
                self.got[client].append(payload.decode())

    def offsets(self, client: str) -> list[int]:
        return [int(text.split(":", 1)[0]) for text in self.got[client] if not text.startswith("{")]

    def status(self, client: str) -> dict[str, Any]:
        first: dict[str, Any] = json.loads(self.got[client][0])
        return first


def refuse_close(client: Hashable, code: int, reason: str) -> None:
    raise AssertionError(f"closed {client!r} with {code}: {reason}")


def test_a_client_catching_up_while_the_history_is_ahead_of_the_feed_gets_each_message_once() -> None:
    async def main() -> None:
        backplane = MemoryBackplane(MemoryHub(), node_id="a")
        await backplane.start()
        clients = Clients()
        stream = PathRecovery(backplane, "path:/t", Recovery(), clients.send, refuse_close, lambda exc: None)
        await stream.start()
        for n in range(3):
            await stream.publish(True, b"m%d" % n)
        await until(lambda: stream.position == Position(3, stream.position.epoch))  # type: ignore[union-attr]
        epoch = stream.position.epoch  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        loop.create_task(stream.publish(True, b"m3"))  # records offset 4 first; the feed gets it one callback later
        clients.join(stream, "x", Position(2, epoch))  # its history read runs in between: the history holds 4, the feed not yet
        await until(lambda: len(clients.got["x"]) >= 3)
        await stream.publish(True, b"m4")
        await until(lambda: len(clients.got["x"]) >= 4)
        await asyncio.sleep(0.02)
        assert clients.status("x")["recovered"] is True and clients.status("x")["offset"] == 2
        assert clients.offsets("x") == [3, 4, 5]
        await stream.close()
        await backplane.close()

    run(main)


def test_a_client_back_from_a_node_ahead_of_this_one_skips_what_it_has() -> None:
    async def main() -> None:
        hub = MemoryHub()
        a, b = MemoryBackplane(hub, node_id="a"), MemoryBackplane(hub, node_id="b")
        await a.start()
        await b.start()
        clients = Clients()
        on_b = PathRecovery(b, "path:/t", Recovery(), clients.send, refuse_close, lambda exc: None)
        await on_b.start()
        await a.publish_recorded("path:/t", b"\x01m1", Recovery())
        await until(lambda: on_b.position is not None and on_b.position.offset == 1)
        epoch = on_b.position.epoch  # type: ignore[union-attr]
        # The client got offset 2 from node a; it comes back to b before b's feed has 2.
        clients.join(on_b, "x", Position(2, epoch))  # its history read is queued first...
        position = await a.publish_recorded("path:/t", b"\x01m2", Recovery())  # ...and runs after 2 is recorded
        assert position == Position(2, epoch)
        await until(lambda: len(clients.got["x"]) >= 1)
        await asyncio.sleep(0.02)
        assert on_b.position == Position(2, epoch)  # b's feed has delivered 2 since
        await a.publish_recorded("path:/t", b"\x01m3", Recovery())
        await until(lambda: len(clients.got["x"]) >= 2)
        await asyncio.sleep(0.02)
        assert clients.status("x")["recovered"] is True and clients.status("x")["offset"] == 2
        assert clients.offsets("x") == [3]  # not 2 again
        await on_b.close()
        await a.close()
        await b.close()

    run(main)
