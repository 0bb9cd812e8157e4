"""ws.backplane.feed: a node's view of a recorded channel stays complete and ordered when pub/sub loses messages.

The backplane is the in-process one with pub/sub deliveries dropped on purpose (what a broken
link to Redis does); the history is the real one.  The Redis case is in test_history.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ws.backplane import BackplaneError, MemoryBackplane, MemoryHub, Message
from ws.backplane.feed import Feed
from ws.backplane.history import Position, Recovery, Replay

from ..conftest import run, until


class Lossy(MemoryBackplane):
    """Drops the pub/sub deliveries whose offsets are in ``lose`` (the history keeps them)."""

    def __init__(self, hub: MemoryHub, lose: set[int]) -> None:
        super().__init__(hub)
        self.lose = lose

    def _post(self, message: Message) -> int:
        if message.position is not None and message.position.offset in self.lose:
            return 1
        return super()._post(message)


async def feed_of(backplane: Lossy, recovery: Recovery) -> tuple[Feed, list[int], list[tuple[Position, str]], list[BaseException]]:
    delivered: list[int] = []
    resets: list[tuple[Position, str]] = []
    errors: list[BaseException] = []

    def deliver(message: Message) -> None:
        assert message.position is not None
        delivered.append(message.position.offset)

    feed = Feed(backplane, "c", recovery, deliver, lambda p, r: resets.append((p, r)), errors.append)
    await feed.start()
    return feed, delivered, resets, errors


def test_a_hole_is_filled_from_the_history_in_order() -> None:
    async def main() -> None:
        hub = MemoryHub()
        publisher, lossy = MemoryBackplane(hub), Lossy(hub, {3, 4, 9})
        await publisher.start()
        await lossy.start()
        recovery = Recovery()
        feed, delivered, resets, errors = await feed_of(lossy, recovery)
        for n in range(1, 13):
            await publisher.publish_recorded("c", b"%d" % n, recovery)
        await until(lambda: len(delivered) >= 12, what="12 deliveries")
        await asyncio.sleep(0.02)
        assert delivered == list(range(1, 13)) and not resets and not errors
        await feed.close()

    run(main)


def test_a_hole_the_history_cannot_fill_is_reported_then_the_feed_goes_on() -> None:
    async def main() -> None:
        hub = MemoryHub()
        publisher, lossy = MemoryBackplane(hub), Lossy(hub, set(range(2, 8)))
        await publisher.start()
        await lossy.start()
        recovery = Recovery(max_messages=2)
        feed, delivered, resets, errors = await feed_of(lossy, recovery)
        for n in range(1, 11):
            await publisher.publish_recorded("c", b"%d" % n, recovery)
        await until(lambda: delivered and delivered[-1] == 10, what="the last delivery")
        # 2..7 were lost and are trimmed from the history: said once, with the position the feed goes on
        # from (just before 8, the message that showed the hole); 8, 9 and 10 follow.
        assert delivered == [1, 8, 9, 10]
        assert [(position.offset, reason) for position, reason in resets] == [(7, "trimmed")]
        assert not errors
        await feed.close()

    run(main)


def test_after_a_reconnection_the_missed_tail_is_read_without_waiting_for_a_new_message() -> None:
    async def main() -> None:
        hub = MemoryHub()
        publisher, lossy = MemoryBackplane(hub), Lossy(hub, {4, 5})
        await publisher.start()
        await lossy.start()
        recovery = Recovery()
        feed, delivered, resets, errors = await feed_of(lossy, recovery)
        for n in range(1, 6):
            await publisher.publish_recorded("c", b"%d" % n, recovery)
        await until(lambda: delivered == [1, 2, 3], what="the first three")
        await asyncio.sleep(0.02)
        assert delivered == [1, 2, 3]  # 4 and 5 were lost and nothing newer came
        lossy.emit("reconnected")
        await until(lambda: delivered == [1, 2, 3, 4, 5], what="the tail read after the reconnection")
        assert not resets and not errors
        await feed.close()

    run(main)


def test_an_epoch_change_in_the_live_stream_is_reported_before_its_first_message() -> None:
    async def main() -> None:
        hub = MemoryHub()
        node = MemoryBackplane(hub)
        await node.start()
        recovery = Recovery(window=1, idle_ttl=1)
        events: list[Any] = []

        def deliver(message: Message) -> None:
            events.append(message.position)

        feed = Feed(node, "c", recovery, deliver, lambda p, r: events.append((r, p)), events.append)
        await feed.start()
        first = await node.publish_recorded("c", b"a", recovery)
        await until(lambda: len(events) == 1)
        await asyncio.sleep(1.2)  # idle past idle_ttl: the next publish starts a new numbering
        second = await node.publish_recorded("c", b"b", recovery)
        await until(lambda: len(events) == 3)
        assert second.epoch != first.epoch and second.offset == 1
        assert events == [first, ("epoch", Position(0, second.epoch)), second]
        await feed.close()

    run(main)


class Flaky(MemoryBackplane):
    """Pub/sub deliveries are dropped while ``down``; history replies arrive ``late`` seconds after Redis ran the read."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.down = False
        self.lose: set[int] = set()
        self.late = 0.0
        self.failing = 0
        self.reads = 0

    def _post(self, message: Message) -> int:
        if self.down or (message.position is not None and message.position.offset in self.lose):
            return 1
        return super()._post(message)

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Replay:
        self.reads += 1
        if self.failing:
            self.failing -= 1
            await asyncio.sleep(0)
            raise BackplaneError("Redis unreachable (simulated)")
        replay = await super().history(channel, since, recovery)  # read now...
        await asyncio.sleep(self.late)                            # ...answer later
        return replay


async def flaky_feed(node: Flaky, recovery: Recovery) -> tuple[Feed, list[int], list[tuple[Position, str]]]:
    delivered: list[int] = []
    resets: list[tuple[Position, str]] = []
    feed = Feed(node, "c", recovery, lambda m: delivered.append(m.position.offset), lambda p, r: resets.append((p, r)), lambda exc: None)  # type: ignore[union-attr]
    await feed.start()
    return feed, delivered, resets


def test_a_reconnection_while_a_hole_is_being_filled_reads_the_history_again() -> None:
    async def main() -> None:
        hub, recovery = MemoryHub(), Recovery()
        publisher, node = MemoryBackplane(hub), Flaky(hub)
        await publisher.start()
        await node.start()
        feed, delivered, resets = await flaky_feed(node, recovery)
        await publisher.publish_recorded("c", b"1", recovery)
        await until(lambda: delivered == [1])
        node.lose, node.late = {2}, 0.3
        await publisher.publish_recorded("c", b"2", recovery)  # lost
        await publisher.publish_recorded("c", b"3", recovery)  # shows the hole: a fill starts, its read answers 0.3 s later
        await until(lambda: feed.filling)
        await asyncio.sleep(0.05)
        node.down = True                                        # the subscriber link drops...
        await publisher.publish_recorded("c", b"4", recovery)
        await publisher.publish_recorded("c", b"5", recovery)
        node.down = False
        node.emit("reconnected")                                # ...and is back: 4 and 5 are in the history only
        await asyncio.sleep(1.0)
        assert delivered == [1, 2, 3, 4, 5], delivered
        await feed.close()

    run(main)


def test_a_fill_cut_short_by_the_backplane_closing_stops_instead_of_spinning() -> None:
    async def main() -> None:
        hub, recovery = MemoryHub(), Recovery()
        publisher, node = MemoryBackplane(hub), Flaky(hub)
        await publisher.start()
        await node.start()
        feed, delivered, _ = await flaky_feed(node, recovery)
        node.lose = {2}
        node.failing = 10**9  # Redis is unreachable: the fill retries every RETRY_DELAY
        for n in (1, 2, 3):
            await publisher.publish_recorded("c", b"%d" % n, recovery)
        await until(lambda: feed.filling)
        await node.close()                                  # e.g. the server that owned it shut down
        node.failing = 0
        before = node.reads
        await asyncio.sleep(0.5)
        assert node.reads - before < 5
        await feed.close()

    run(main)


class Remote(MemoryBackplane):
    """An in-process node that says it crosses processes (as a Redis one does): its feed keeps recent messages."""

    @property
    def crosses_processes(self) -> bool:
        return True


def test_recent_messages_answer_for_a_position_only_while_they_are_contiguous_and_in_the_window() -> None:
    async def main() -> None:
        hub = MemoryHub()
        publisher, node = MemoryBackplane(hub), Remote(hub)
        await publisher.start()
        await node.start()
        recovery = Recovery(window=0.5, max_messages=4)
        delivered: list[int] = []
        feed = Feed(node, "c", recovery, lambda m: delivered.append(m.position.offset), lambda p, r: None, lambda e: None)  # type: ignore[union-attr]
        top = await feed.start()
        for n in range(1, 7):
            await publisher.publish_recorded("c", b"%d" % n, recovery)
        await until(lambda: delivered == [1, 2, 3, 4, 5, 6])
        epoch = top.epoch

        def offsets(since: int, in_epoch: str = epoch) -> list[int] | None:
            found = feed.recent_after(Position(since, in_epoch))
            return None if found is None else [m.position.offset for m in found]  # type: ignore[union-attr]

        assert offsets(3) == [4, 5, 6] and offsets(2) == [3, 4, 5, 6]
        assert offsets(1) is None  # only the last max_messages are kept: 2 is gone
        assert offsets(6) is None and offsets(9) is None  # nothing to serve, or ahead: the history answers
        assert offsets(3, "other") is None
        await asyncio.sleep(0.6)
        assert offsets(3) is None  # past the window
        await feed.close()

    run(main)
