"""Recorded channels: positions, the ``Recovery`` policy, and what a history read returns.

Pub/sub is at most once: a client away for two seconds misses what was
published meanwhile.  A *recorded* channel also keeps its recent messages,
each with a **position**: an ``offset`` (1, 2, 3, ... with no holes, per
channel) and an ``epoch`` (a random name for the life of that numbering).
A reader that knows the last position it received asks for what came
after it and gets either *exactly* the messages it missed, in order, or an
explicit refusal with the reason; never part of them as if complete.

The epoch changes when the numbering restarts: the history was lost
(Redis restarted without persistence, or an idle channel's record expired
after ``Recovery.idle_ttl``).  A position of another epoch cannot be
compared with the current offsets, so it is not recovered.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .base import Message

__all__ = ["Position", "Recovery", "Replay", "new_epoch", "REASONS"]

#: Why a history read did not recover, as ``Replay.reason`` (and the client's status message) says.
REASONS = {
    "epoch": "the channel's history was reset since that position (new epoch)",
    "trimmed": "the history no longer reaches back to that position (more messages than max_messages since)",
    "window": "that position is older than the recovery window",
    "ahead": "that position is ahead of the channel (not one this channel gave)",
    "invalid": "the position is malformed",
}

_EPOCH = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_epoch() -> str:
    """A fresh epoch name (12 URL-safe characters)."""
    return secrets.token_urlsafe(9)


class Position(NamedTuple):
    """Where a message sits in its channel's recorded history."""

    offset: int
    epoch: str

    @classmethod
    def parse(cls, offset: object, epoch: object) -> "Position":
        """From untrusted text (a query string, a JSON field); ``ValueError`` when malformed."""
        text = str(offset)
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
        if not isinstance(epoch, str) or not _EPOCH.fullmatch(epoch):
            raise ValueError(f"epoch must be 1-64 characters of A-Z a-z 0-9 _ -, got {epoch!r}")
        return cls(int(text), epoch)


@dataclass(frozen=True)
class Recovery:
    """How much of a recorded channel's history is kept, for clients that come back.

    ``window``: seconds a message stays recoverable.  ``max_messages``: at
    most this many are kept per channel (the oldest go first).
    ``idle_ttl``: a channel with no publish and no history read for this
    long forgets its numbering (its next publish starts a new epoch); it
    must cover ``window``.  Every limit is enforced where the history lives (Redis
    trims its stream; memory, its deque), so the cost is bounded by
    ``max_messages`` × message size per channel, whoever reads.
    """

    window: float = 120.0
    max_messages: int = 10_000
    idle_ttl: float = 86_400.0

    def __post_init__(self) -> None:
        for name in ("window", "idle_ttl"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"Recovery({name}=...) must be a positive number of seconds, got {value!r}")
        if isinstance(self.max_messages, bool) or not isinstance(self.max_messages, int) or self.max_messages < 1:
            raise ValueError(f"Recovery(max_messages=...) must be a positive integer, got {self.max_messages!r}")
        if self.idle_ttl < self.window:
            raise ValueError(f"Recovery(idle_ttl={self.idle_ttl!r}) must be at least the window ({self.window!r} s)")

    @property
    def window_ms(self) -> int:
        return max(1, round(self.window * 1000))

    @property
    def idle_ttl_ms(self) -> int:
        return max(1, round(self.idle_ttl * 1000))


class Replay(NamedTuple):
    """What ``Backplane.history(channel, since, recovery)`` found.

    ``recovered``: ``messages`` are exactly those after ``since``, up to
    ``position`` (the channel's last position when it was read).  When not
    recovered, ``messages`` is empty and ``reason`` (a key of ``REASONS``)
    says why; ``position`` is still the channel's last, from which a reader
    may go on live.
    """

    recovered: bool
    position: Position
    messages: list["Message"]  # each with its position
    reason: str | None = None
