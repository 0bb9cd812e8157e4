"""``Feed``: one node's ordered view of a recorded channel, with no gap and no duplicate.

A recorded channel's messages reach a node through its subscription, each
with its position (``publish_recorded``).  Pub/sub may still lose some on
the way: the node's link to Redis broke for a moment, and what was
published meanwhile never arrived.  The feed notices (an offset that skips
ahead, or the backplane's ``'reconnected'``), reads the missing messages
from the history, and hands everything on in offset order, each message
once.  When the history cannot fill the hole (trimmed, past the window, a
new epoch), it says so through ``on_reset`` before going on: what the
layer above delivers is then known to be incomplete, never silently.

Everything runs on the backplane's loop.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import Callable

from .base import Backplane, BackplaneError, Message, Subscription
from .history import Position, Recovery

__all__ = ["Feed"]

logger = logging.getLogger("ws.backplane")

#: Seconds between attempts to read a missing stretch while the backplane cannot answer.
RETRY_DELAY = 0.25


class Feed:
    """Deliver the recorded messages of ``channel`` to ``deliver`` in offset order, each once.

    ``on_reset(position, reason)``: the messages after the feed's last
    position up to ``position`` cannot be had (``reason`` as in
    ``Replay.reason``); the next one delivered follows ``position``.
    ``on_error(exc)``: a failure worth reporting (the feed keeps trying).
    """

    def __init__(
        self,
        backplane: Backplane,
        channel: str,
        recovery: Recovery,
        deliver: Callable[[Message], None],
        on_reset: Callable[[Position, str], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.backplane = backplane
        self.channel = channel
        self.recovery = recovery
        self._hand_on = deliver
        #: The messages handed on lately, contiguous and ending at ``last`` (with their arrival time): a
        #: client that comes back for a recent position is served from here, not from the backplane, so
        #: that thousands of clients reconnecting after a worker died do not each run a read in Redis.
        #: Only for backplanes across processes (in process, the history is as near as this).
        self._recent: collections.deque[tuple[float, Message]] | None = (
            collections.deque(maxlen=recovery.max_messages) if backplane.crosses_processes else None
        )
        self._on_reset = on_reset
        self._on_error = on_error
        #: The position of the last message handed on (or the channel's top when the feed started).
        self.last: Position | None = None
        self._subscription: Subscription | None = None
        self._filling: asyncio.Task[None] | None = None
        self._pending: list[Message] = []  # arrived while a hole is being filled
        self._refill = False  # the link came back while a fill's read was in flight: read again after it
        self._closed = False

    async def start(self) -> Position:
        """Subscribe, then read the channel's top: from then on nothing published is missed.

        May be called again after it failed (the subscription is made once).
        """
        if self._subscription is None:
            self._subscription = await self.backplane.subscribe(self.channel, self._received)
            self.backplane.on("reconnected", self._reconnected)
        replay = await self.backplane.history(self.channel, None, self.recovery)
        if self.last is None:  # nothing arrived live meanwhile
            self.last = replay.position
        elif replay.position.epoch == self.last.epoch and replay.position.offset > self.last.offset and self._filling is None:
            self._fill_later()  # published before the subscription took effect, or lost on the way
        return self.last

    async def close(self) -> None:
        self._closed = True
        self.backplane.remove_listener("reconnected", self._reconnected)
        if self._filling is not None:
            self._filling.cancel()
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()

    def recent_after(self, since: Position) -> list[Message] | None:
        """The messages after ``since`` up to ``last`` if this node still holds all of them, else ``None``.

        ``None`` also when ``since`` is not behind ``last`` in the same epoch, or when the first of
        them arrived more than ``window`` seconds ago: then ask the history.
        """
        recent, last = self._recent, self.last
        if not recent or last is None or since.epoch != last.epoch or since.offset >= last.offset:
            return None
        newest = recent[-1][1].position
        first = recent[0][1].position
        if newest != last or first is None or since.offset + 1 < first.offset:
            return None
        held = list(itertools.islice(recent, since.offset + 1 - first.offset, None))
        if asyncio.get_running_loop().time() - held[0][0] > self.recovery.window:
            return None
        return [message for _, message in held]

    def _deliver(self, message: Message) -> None:
        recent = self._recent
        if recent is not None:
            previous = recent[-1][1].position if recent else None
            position = message.position
            assert position is not None
            if previous is not None and (previous.epoch != position.epoch or previous.offset + 1 != position.offset):
                recent.clear()  # only a contiguous run can answer for what came after a position
            recent.append((asyncio.get_running_loop().time(), message))
        self._hand_on(message)

    @property
    def filling(self) -> bool:
        """Whether a hole is being filled from the history right now."""
        return self._filling is not None

    # -- live messages -------------------------------------------------------------

    def _received(self, message: Message) -> None:
        position = message.position
        if position is None or self._closed:
            return  # a plain publish on this channel: not part of the recorded stream
        if self._filling is not None:
            self._pending.append(message)
            return
        last = self.last
        if last is None or position.offset == last.offset + 1 and position.epoch == last.epoch:
            self.last = position
            self._deliver(message)
        elif position.epoch != last.epoch:
            # A new numbering (Redis lost the history): what came before it here is complete, what was
            # published under the old epoch after ``last`` cannot be known.
            self._on_reset(Position(position.offset - 1, position.epoch), "epoch")
            self.last = position
            self._deliver(message)
        elif position.offset > last.offset + 1:
            self._pending.append(message)
            self._fill_later()
        # else: at or before ``last``, delivered already (history and live overlap at a seam)

    def _reconnected(self) -> None:
        """The link to the cluster was down: anything published meanwhile is read from the history."""
        if self._closed:
            return
        if self._filling is None:
            self._fill_later()
        else:
            self._refill = True  # the read in flight may predate the outage

    def _fill_later(self) -> None:
        loop = asyncio.get_running_loop()
        self._filling = loop.create_task(self._fill(), name=f"ws-feed-fill-{self.channel}")

    async def _fill(self) -> None:
        try:
            while True:
                try:
                    self._refill = False
                    replay = await self.backplane.history(self.channel, self.last, self.recovery)
                    break
                except BackplaneError as exc:
                    if self.backplane.closed:
                        self._closed = True  # nothing more will come: do not go round again
                        return
                    logger.debug("feed %r: history unavailable, trying again: %s", self.channel, exc)
                    await asyncio.sleep(RETRY_DELAY)
            if replay.recovered:
                for message in replay.messages:
                    position = message.position
                    if position is not None and (self.last is None or position.offset > self.last.offset):
                        self.last = position
                        self._deliver(message)
            elif replay.reason is not None:
                # Go on from the first message this node does have (the one that showed the hole),
                # else from the channel's top: everything before it is declared lost, once.
                first = self._pending[0].position if self._pending else None
                if first is not None and first.epoch == replay.position.epoch:
                    resume = Position(first.offset - 1, first.epoch)
                else:
                    resume = replay.position
                logger.warning("feed %r: the messages after %s up to %s cannot be recovered (%s)", self.channel, self.last, resume, replay.reason)
                self.last = resume
                self._on_reset(resume, replay.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: report it, never let the feed stop
            self._on_error(exc)
            self._refill = True
            await asyncio.sleep(RETRY_DELAY)  # not at once: the same failure would come round in a busy loop
        finally:
            self._filling = None
            pending, self._pending = self._pending, []
            for message in pending:
                self._received(message)
            if self._refill and not self._closed and self._filling is None:
                self._refill = False
                self._fill_later()
