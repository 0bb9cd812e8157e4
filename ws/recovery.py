"""A path's recorded broadcast: every message carries its position, and clients that come back catch up.

With ``WebSocketServer(recovery=ws.Recovery(...))`` a ``broadcast`` is
recorded on the path's channel (``Backplane.publish_recorded``) and reaches
the clients of every node, this one included, through the channel: one
order everywhere, the order of the offsets.  What a client receives stays
plain WebSocket (docs/recovery.md):

* first, one **status** text message, a JSON object::

      {"type": "recovery", "recovered": true, "reason": null, "epoch": "k2Jx...", "offset": 41}

  ``offset`` is the position the messages that follow continue from;
  ``reason`` is ``"new"`` when the client gave no position, else why it was
  not recovered (``"epoch"``, ``"trimmed"``, ``"window"``, ``"ahead"``,
  ``"invalid"``).  The same message is sent again should the numbering be
  reset while the client is connected (``"recovered": false``).
* then each broadcast, with its offset in front: text as ``"42:payload"``,
  binary as 8 bytes of offset (big-endian) then the payload.

A client that reconnects with ``?offset=41&epoch=k2Jx...`` (what it last
received) gets the status, exactly the messages it missed, and then the
live stream: live messages arriving while the history is read wait for the
client and are sent after it, those the history already held skipped, so
nothing is missing or doubled at the seam.  If the history cannot serve
the position, the status says ``"recovered": false`` with the reason and
nothing of the history is sent.  If the backplane cannot be read at all,
the client is closed with 1013 (try again later) and keeps its position.

Messages sent to one client with ``ws.send()`` are not part of the stream
and arrive as they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Callable, Hashable, Iterable, NamedTuple

from .backplane.base import Backplane, BackplaneError, Message
from .backplane.feed import RETRY_DELAY, Feed
from .backplane.history import Position, Recovery, Replay

__all__ = ["RecordedStream", "PathRecovery", "Status", "envelope", "status_message", "read_message", "TEXT", "BINARY"]

logger = logging.getLogger("ws.recovery")

#: The first byte of a recorded broadcast on the path's channel: what kind of message it is.
TEXT, BINARY = b"\x01", b"\x02"

#: Close code for a client whose position could not be looked up (the backplane is down): try again later.
TRY_AGAIN_LATER = 1013

#: ``send(sockets, is_text, payload, exclude)``: write one message to ``sockets`` (``None``: every
#: client of the path) except ``exclude``; the server's delivery, framed once.
Send = Callable[[Iterable[Hashable] | None, bool, bytes, Iterable[Hashable]], Any]


def envelope(offset: int, is_text: bool, payload: bytes) -> bytes:
    """A recorded broadcast as a client receives it: its offset in front of the payload."""
    if is_text:
        return b"%d:%b" % (offset, payload)
    return offset.to_bytes(8, "big") + payload


def status_message(recovered: bool, reason: str | None, position: Position) -> bytes:
    """The status text a client gets first (and again after a reset), as UTF-8 JSON."""
    status = {"type": "recovery", "recovered": recovered, "reason": reason, "epoch": position.epoch, "offset": position.offset}
    return json.dumps(status, separators=(",", ":")).encode()


class Status(NamedTuple):
    """A recovery status, as a client reads it (``ReconnectingWebSocket``'s ``'recovery'`` event)."""

    recovered: bool
    #: ``None`` when recovered; ``"new"`` without a position; else a key of ``ws.backplane.history.REASONS``.
    reason: str | None
    #: Where the messages that follow continue from.
    position: Position


_OFFSET = re.compile(r"(\d{1,19}):", re.ASCII)
_STATUS_START = '{"type":"recovery"'


def read_message(data: str | bytes) -> tuple[Status | None, int | None, str | bytes]:
    """A client's reading of one message of a recorded path: ``(status, offset, payload)``.

    A status message gives ``(Status, None, data)``; a recorded broadcast
    ``(None, offset, payload)``; anything else (a message the server sent
    to this client alone) ``(None, None, data)``.
    """
    if isinstance(data, str):
        if data.startswith(_STATUS_START):
            try:
                fields = json.loads(data)
                position = Position.parse(fields["offset"], fields["epoch"])
                return Status(bool(fields["recovered"]), fields.get("reason"), position), None, data
            except (ValueError, KeyError, TypeError):
                return None, None, data
        match = _OFFSET.match(data)
        if match is None:
            return None, None, data
        return None, int(match.group(1)), data[match.end() :]
    if len(data) < 8:
        return None, None, data
    return None, int.from_bytes(data[:8], "big"), data[8:]


def requested_position(offset: str | None, epoch: str | None) -> Position | str | None:
    """The position a client asked for in its query string: a ``Position``, ``None`` or ``"invalid"``."""
    if offset is None and epoch is None:
        return None
    try:
        return Position.parse(offset, epoch)
    except ValueError:
        return "invalid"


class _CatchingUp:
    """A client whose history is being read: the live messages it must get afterwards wait here."""

    __slots__ = ("since", "held", "reset")

    def __init__(self, since: Position | str | None) -> None:
        self.since = since
        self.held: list[Message] = []
        self.reset: tuple[Position, str] | None = None


class RecordedStream:
    """The recorded stream of one channel on one node, for a set of clients that may come back.

    What every form of delivery shares: a ``Feed`` gives the node's messages
    in offset order; a client that joins with a position gets the status,
    the messages it missed, then the live stream, with no gap and no
    duplicate at the seam.  How a status or a message reaches clients is
    the subclass's (``_status``, ``_deliver``, ``_unavailable``):
    ``PathRecovery`` writes WebSocket frames (the module documentation),
    ``ws.styles.rooms`` calls subscribers with JSON objects.

    Clients are any hashable values.  Everything runs on the backplane's loop.
    """

    def __init__(self, backplane: Backplane, channel: str, recovery: Recovery, on_error: Callable[[BaseException], None]) -> None:
        self.backplane = backplane
        self.channel = channel
        self.recovery = recovery
        self._on_error = on_error
        self._feed = Feed(backplane, channel, recovery, self._live, self._reset, on_error)
        self._catching: dict[Hashable, _CatchingUp] = {}
        #: Clients that got from the history more than this node's feed has delivered yet: the feed's
        #: messages up to that position are not sent to them again.
        self._ahead: dict[Hashable, Position] = {}
        self._waiting: list[Hashable] = []  # joined before the feed started
        self._started = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._retrying: asyncio.Task[None] | None = None  # start() failed: trying again

    # -- how clients are reached: the subclass's -----------------------------------------

    def _status(self, clients: Iterable[Hashable] | None, recovered: bool, reason: str | None, position: Position, exclude: Iterable[Hashable]) -> None:
        """Tell ``clients`` (``None``: every client) but ``exclude`` where the stream they get continues from."""
        raise NotImplementedError

    def _deliver(self, clients: Iterable[Hashable] | None, message: Message, exclude: Iterable[Hashable]) -> None:
        """Hand one recorded message (it has its position) to ``clients`` (``None``: every client) but ``exclude``."""
        raise NotImplementedError

    def _unavailable(self, client: Hashable) -> None:
        """The history could not be read for ``client``; it is no longer catching up (the live stream reaches it)."""
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether ``start()`` has succeeded (clients that join from then on are served at once)."""
        return self._started

    @property
    def position(self) -> Position | None:
        """The position of the last message of the stream this node delivered (``None`` before ``start()``)."""
        return self._feed.last

    async def start(self) -> None:
        """Start the feed; if the backplane cannot answer now, report it and keep trying until closed."""
        if self._started or self._retrying is not None:
            return  # started, or a retry runs (rooms call start() again with each new subscriber)
        try:
            await self._feed.start()
        except BackplaneError as exc:
            if self._closed or self.backplane.closed:
                raise
            self._on_error(exc)
            self._retrying = task = asyncio.get_running_loop().create_task(self._start_later())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._go()

    async def _start_later(self) -> None:
        while not self._closed and not self.backplane.closed:
            await asyncio.sleep(RETRY_DELAY)
            try:
                await self._feed.start()
            except BackplaneError as exc:
                logger.debug("recovery on %r: cannot start yet: %s", self.channel, exc)
                continue
            self._retrying = None
            self._go()
            return

    def _go(self) -> None:
        self._started = True
        waiting, self._waiting = self._waiting, []
        for client in waiting:
            if client in self._catching:
                self._begin(client)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._catching.clear()
        await self._feed.close()

    # -- clients -----------------------------------------------------------------------

    def joined(self, client: Hashable, since: Position | str | None) -> None:
        """A client opened: it gets the status, then what it missed after ``since``, then the live stream.

        ``since``: the position it last received, ``None`` for a new client,
        or the reason it has none (``"invalid"``: the one it gave is malformed).
        """
        if self._closed:
            return
        self._catching[client] = _CatchingUp(since)
        if self._started:
            self._begin(client)
        else:
            self._waiting.append(client)

    def left(self, client: Hashable) -> None:
        self._catching.pop(client, None)
        self._ahead.pop(client, None)
        if not self._started and client in self._waiting:
            self._waiting.remove(client)

    def _begin(self, client: Hashable) -> None:
        state = self._catching[client]
        since = state.since
        last = self._feed.last
        assert last is not None  # the feed has started
        if not isinstance(since, Position) or since == last:
            # Nothing to read: a new client (or a malformed position, or one already up to date) goes live now.
            del self._catching[client]
            if isinstance(since, Position):
                self._status((client,), True, None, last, ())
                return
            # Joined before the stream started: what the feed handed on since then was held for it.
            first = state.held[0].position if state.held else None
            begin = last if first is None else Position(first.offset - 1, first.epoch)
            self._status((client,), False, "new" if since is None else since, begin, ())
            for message in state.held:
                self._deliver((client,), message, ())
            return
        recent = self._feed.recent_after(since)
        if recent is not None:
            # This node handed all of them on lately: served from memory, at once (nothing can come between).
            del self._catching[client]
            self._status((client,), True, None, since, ())
            for message in recent:
                self._deliver((client,), message, ())
            return
        task = asyncio.get_running_loop().create_task(self._catch_up(client, since))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, client: Hashable, since: Position) -> None:
        try:
            replay = await self.backplane.history(self.channel, since, self.recovery)
        except BackplaneError as exc:
            if self._catching.pop(client, None) is not None:
                logger.warning("recovery on %r: cannot read the history: %s", self.channel, exc)
                self._unavailable(client)
            return
        except Exception:  # a backplane's bug: the client must not stay held (its live messages pile up)
            if self._catching.pop(client, None) is not None:
                logger.exception("recovery on %r: reading the history failed", self.channel)
                self._unavailable(client)
            return
        state = self._catching.pop(client, None)
        if state is None:
            return  # gone meanwhile
        self._replay(client, state, since, replay)

    def _replay(self, client: Hashable, state: _CatchingUp, since: Position, replay: Replay) -> None:
        """Status, then the history, then the live messages held meanwhile (those after the history)."""
        last = self._feed.last
        assert last is not None
        recovered = replay.recovered and state.reset is None and replay.position.epoch == last.epoch
        if recovered:
            messages = list(replay.messages)
            upto = replay.position
            self._status((client,), True, None, since, ())
        else:
            reason = (state.reset[1] if state.reset else None) or replay.reason or "epoch"
            messages = []
            # Go on from where the live messages held for it begin: nothing before them is claimed.
            first = state.held[0].position if state.held else None
            upto = last if first is None else Position(first.offset - 1, first.epoch)
            self._status((client,), False, reason, upto, ())
        for message in messages:
            self._deliver((client,), message, ())
        for message in state.held:
            position = message.position
            if position is not None and (position.epoch != upto.epoch or position.offset > upto.offset):
                self._deliver((client,), message, ())
        if upto.epoch == last.epoch and upto.offset > last.offset:
            self._ahead[client] = upto  # the history ran ahead of the feed: skip what the feed brings up to there

    # -- the stream --------------------------------------------------------------------

    def _live(self, message: Message) -> None:
        """A message of the stream, in order: to every live client; held for those catching up."""
        catching = self._catching
        for state in catching.values():
            state.held.append(message)
        exclude: Any = catching
        if self._ahead:
            exclude = self._skipping(message, catching)
        self._deliver(None, message, exclude)

    def _skipping(self, message: Message, catching: dict[Hashable, _CatchingUp]) -> set[Hashable]:
        """The clients ``message`` must not reach: those catching up, and those that had it from the history."""
        position = message.position
        assert position is not None
        skip = set(catching)
        for client, upto in list(self._ahead.items()):
            if upto.epoch != position.epoch or upto.offset <= position.offset:
                del self._ahead[client]  # from the next message on, it is live like everyone
            if upto.epoch == position.epoch and position.offset <= upto.offset:
                skip.add(client)
        return skip

    def _reset(self, position: Position, reason: str) -> None:
        """Messages before ``position`` are lost for the clients: tell the live ones; those catching up learn it with their status."""
        self._ahead.clear()
        for state in self._catching.values():
            state.reset = (position, reason)
            state.held.clear()
        self._status(None, False, reason, position, self._catching)


class PathRecovery(RecordedStream):
    """The recorded broadcast of one path on one node (see the module documentation)."""

    def __init__(
        self,
        backplane: Backplane,
        channel: str,
        recovery: Recovery,
        send: Send,
        close: Callable[[Hashable, int, str], Any],
        on_error: Callable[[BaseException], None],
    ) -> None:
        super().__init__(backplane, channel, recovery, on_error)
        self._send = send
        self._close = close

    def _status(self, clients: Iterable[Hashable] | None, recovered: bool, reason: str | None, position: Position, exclude: Iterable[Hashable]) -> None:
        self._send(clients, True, status_message(recovered, reason, position), exclude)

    def _deliver(self, clients: Iterable[Hashable] | None, message: Message, exclude: Iterable[Hashable]) -> None:
        data, position = message.data, message.position
        if not data or position is None:
            return
        self._send(clients, data[:1] == TEXT, envelope(position.offset, data[:1] == TEXT, data[1:]), exclude)

    def _unavailable(self, client: Hashable) -> None:
        """Closed with 1013: it comes back later with the position it kept."""
        self._close(client, TRY_AGAIN_LATER, "history unavailable, try again later")

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, is_text: bool, payload: bytes) -> Position:
        """Record and deliver one broadcast (to every node, this one included)."""
        return await self.backplane.publish_recorded(self.channel, (TEXT if is_text else BINARY) + payload, self.recovery)

    def __repr__(self) -> str:
        return f"<PathRecovery {self.channel!r} catching_up={len(self._catching)}>"
