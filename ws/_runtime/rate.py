"""Per-connection message rate limits: ``rate_limit=(messages, per_seconds)``, ``byte_rate_limit=(bytes, per_seconds)``.

Each limit is a token bucket of capacity ``count`` refilled continuously at
``count / per_seconds``: a burst of ``count`` is allowed, then the average
rate.  It is kept as a generic cell rate algorithm (GCRA): one float per
bucket, the time at which the bucket would be full again (``tat``, the
"theoretical arrival time"), so that a message costs a comparison, an
addition and a subtraction, with no division and no refill step.

What counts is a complete message as delivered to listeners: its payload
after decompression (text as UTF-8 bytes).  On an uncompressed connection
that is the wire size less the frame headers; on a compressed one it is at
least the wire size, so the byte limit bounds the bandwidth and the work
the application is handed alike (``max_payload`` bounds one message).

The clock is read once per read from the socket (the owner sets
:attr:`MessageRate.now`), not per message: the messages of one read arrived
together, and a read is never parsed before its time.

Past a limit, ``"close"`` fails the connection (the owner closes with 1008)
and the message is not delivered; ``"pause"`` holds the message, asks the
owner to stop reading (TCP pushes back on the sender) and delivers it, then
reads on, once the bucket has room for it.  A message larger than the whole
byte bucket passes when the bucket is full; the debt it leaves is paid
before the next one.  Once the connection is closing, a message past a
limit is dropped, whatever the action: listeners never get more than the
limits allow, and the closing handshake does not wait for the bucket.

Nothing here reads a socket: the owner feeds messages and acts on the
calls back (``exceeded``, ``held``, ``deliver_held``).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from time import monotonic
from typing import Any, Callable, Mapping, NamedTuple

__all__ = ["RatePolicy", "MessageRate", "rate_policy", "RATE_LIMIT_ACTIONS"]

#: Seconds of rounding allowed per unit of a bucket's capacity: a time of ``time.monotonic()`` is
#: exact to 1e-8 s for two years of uptime, and each message adds at most that to the bucket's time.
_SLACK = 1e-8
#: What happens past a limit: close the connection (1008), or stop reading until the bucket has room.
RATE_LIMIT_ACTIONS = ("close", "pause")


class RatePolicy(NamedTuple):
    """The validated rate options of a server's (or a client's) connections."""

    messages: tuple[int, float] | None  # (count, per_seconds)
    bytes: tuple[int, float] | None
    action: str  # "close" or "pause"


def _limit(name: str, unit: str, value: Any) -> tuple[int, float] | None:
    """``(count, per_seconds)``: a positive int and a positive finite number of seconds, or ``None``."""
    if value is None:
        return None
    example = "(20, 1.0)" if unit == "messages" else "(65536, 1.0)"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a ({unit}, per_seconds) pair such as {example} or None, got {value!r}")
    count, per = value
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"{name}: {unit} must be an int, got {type(count).__name__}")
    if count < 1:
        raise ValueError(f"{name}: {unit} must be at least 1, got {count}")
    if isinstance(per, bool) or not isinstance(per, (int, float)):
        raise TypeError(f"{name}: per_seconds must be a number, got {type(per).__name__}")
    if not (per > 0 and math.isfinite(per)):
        raise ValueError(f"{name}: per_seconds must be a positive number of seconds, got {per!r}")
    return count, float(per)


def rate_policy(options: Mapping[str, Any]) -> RatePolicy | None:
    """The rate options of ``options`` (snake_case), checked; ``None`` when no limit is set.

    Raises ``TypeError``/``ValueError`` at construction rather than at the
    first message: a wrong shape, a count below 1, seconds not positive, an
    unknown action.
    """
    messages = _limit("rate_limit", "messages", options.get("rate_limit"))
    size = _limit("byte_rate_limit", "bytes", options.get("byte_rate_limit"))
    action = options.get("rate_limit_action", "close")
    if action not in RATE_LIMIT_ACTIONS:
        raise ValueError(f"rate_limit_action must be 'close' or 'pause', got {action!r}")
    if messages is None and size is None:
        return None
    return RatePolicy(messages, size, action)


def _size(data: str | bytes) -> int:
    """A message's payload in bytes (text as UTF-8; ASCII text, the common case, without encoding it).

    The checks inline it (a call costs more than the rest of the check).
    """
    if type(data) is str:
        return len(data) if data.isascii() else len(data.encode())
    return len(data)


class MessageRate:
    """One connection's rate limits: messages pass through :attr:`deliver` (lean reader) or :meth:`offer`.

    ``deliver(kind, data)`` is the socket's delivery to listeners;
    ``deliver_held(kind, data)`` the same for a message held by a pause,
    delivered later, outside a read (the owner drops it once the connection
    failed); ``exceeded(reason)`` fails the connection (``"close"``);
    ``held()`` tells the owner that :attr:`paused` changed (``"pause"``:
    stop or go on reading).  The owner sets :attr:`now` (``time.monotonic()``) once per
    read, calls :meth:`stop` when the connection leaves OPEN and
    :meth:`close` when it is gone.
    """

    __slots__ = (
        "now", "deliver", "paused", "failed", "_target", "_target_later", "_exceeded", "_held_changed", "_loop", "_pause",
        "_tat", "_unit", "_window", "_btat", "_bunit", "_bwindow", "_reasons", "_held", "_timer", "_closing",
    )

    def __init__(
        self,
        policy: RatePolicy,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[int, Any], object],
        deliver_held: Callable[[int, Any], object],
        exceeded: Callable[[str], object],
        held: Callable[[], object],
    ) -> None:
        #: When the read being parsed came (``time.monotonic()``), set by the owner once per read.
        self.now = monotonic()
        #: Reading is stopped until the bucket has room for the message held (``"pause"``).
        self.paused = False
        #: The connection failed for the rate (``"close"``): nothing more is delivered.
        self.failed = False
        self._target = deliver
        self._target_later = deliver_held
        self._exceeded = exceeded
        self._held_changed = held
        self._loop = loop
        self._pause = policy.action == "pause"
        self._held: deque[tuple[int, Any]] = deque()  # messages waiting for the bucket (pause), in order
        self._timer: asyncio.Handle | None = None
        self._closing = False  # the connection left OPEN: past a limit, a message is dropped
        # Each bucket: ``unit`` seconds of refill per message (per byte), ``window`` seconds of debt allowed:
        # the capacity, plus what float rounding may add up over a burst (``_SLACK`` a unit, at most half a
        # unit), so that the last message of a full burst is never refused for it.
        self._tat = self._btat = 0.0
        self._unit = self._window = self._bunit = self._bwindow = 0.0
        reasons = []
        if policy.messages is not None:
            count, per = policy.messages
            self._unit = per / count
            self._window = per + min(self._unit / 2, count * _SLACK)
            reasons.append(f"rate limit exceeded: {count} messages per {per:g} s")
        if policy.bytes is not None:
            count, per = policy.bytes
            self._bunit = per / count
            self._bwindow = per + min(self._bunit / 2, count * _SLACK)
            reasons.append(f"byte rate limit exceeded: {count} bytes per {per:g} s")
        self._reasons = reasons
        #: The reader's delivery: the check for the limits set, then ``deliver``.
        self.deliver: Callable[[int, Any], None]
        if policy.bytes is None:
            self.deliver = self._messages
        elif policy.messages is None:
            self.deliver = self._bytes
        else:
            self.deliver = self._both

    # -- the checks, one per combination of limits (the hot path: no call but the delivery) ----------

    def _messages(self, kind: int, data: Any) -> None:
        now = self.now
        tat = self._tat
        if tat < now:
            tat = now
        tat += self._unit
        if tat - now > self._window:
            self._over(kind, data, 0)
            return
        self._tat = tat
        self._target(kind, data)

    def _bytes(self, kind: int, data: Any) -> None:
        now = self.now
        start = self._btat
        if start < now:
            start = now
        size = len(data)
        if type(data) is str and not data.isascii():
            size = len(data.encode())
        tat = start + size * self._bunit
        if tat - now > self._bwindow and start > now:  # (a message larger than the bucket passes when it is full)
            self._over(kind, data, -1)
            return
        self._btat = tat
        self._target(kind, data)

    def _both(self, kind: int, data: Any) -> None:
        now = self.now
        tat = self._tat
        if tat < now:
            tat = now
        tat += self._unit
        start = self._btat
        if start < now:
            start = now
        size = len(data)
        if type(data) is str and not data.isascii():
            size = len(data.encode())
        btat = start + size * self._bunit
        if tat - now > self._window:
            self._over(kind, data, 0)
            return
        if btat - now > self._bwindow and start > now:
            self._over(kind, data, -1)
            return
        self._tat = tat
        self._btat = btat
        self._target(kind, data)

    # -- the slow paths -------------------------------------------------------------

    def offer(self, kind: int, data: Any) -> bool:
        """A message from a path that may deliver several after a pause began (the protocol object, ASGI).

        It waits behind the messages held.  ``False``: the connection failed
        for the rate; the caller delivers nothing more.
        """
        if self.failed:
            return False
        if self._held:
            self._held.append((kind, data))
        else:
            self.deliver(kind, data)
        return not self.failed

    def _over(self, kind: int, data: Any, which: int) -> None:
        """A message past a limit (``which`` indexes the reason): fail, or hold it and stop reading; closing, drop it."""
        if self._closing:
            return
        if not self._pause:
            self.failed = True
            self._exceeded(self._reasons[which])
            return
        if self.paused:  # (a path that delivers on after the pause began: behind the others)
            self._held.append((kind, data))
            return
        self._held.appendleft((kind, data))  # (first: _refill puts back the one it could not deliver yet)
        self.paused = True
        self._timer = self._loop.call_later(self._wait(data), self._refill)
        self._held_changed()

    def _wait(self, data: Any) -> float:
        """Seconds until the buckets have room for ``data`` (from :attr:`now`)."""
        now = self.now
        wait = 0.0
        if self._unit:
            wait = self._tat + self._unit - self._window - now
        if self._bunit:
            cost = _size(data) * self._bunit
            ready = self._btat + cost - self._bwindow if cost <= self._bwindow else self._btat
            wait = max(wait, ready - now)
        return max(wait, 0.0)

    def _take(self, data: Any) -> bool:
        """Charge ``data`` to the buckets if they have room for it at :attr:`now` (the slow path's check)."""
        if self._wait(data) > 0:
            return False
        now = self.now
        if self._unit:
            self._tat = max(self._tat, now) + self._unit
        if self._bunit:
            self._btat = max(self._btat, now) + _size(data) * self._bunit
        return True

    def _refill(self) -> None:
        """The bucket has room (or the connection is closing): deliver what is held, in order, then read on."""
        self._timer = None
        self.now = monotonic()
        self.paused = False
        held = self._held
        while held and not self.paused:
            kind, data = held.popleft()
            if not self._take(data):
                self._over(kind, data, 0)  # (rounding: a little early) held first again, a new timer; closing: dropped
            else:
                self._target_later(kind, data)
        if not self.paused and not self.failed:
            self._held_changed()

    def stop(self) -> None:
        """The connection left OPEN: past a limit a message is dropped; what is held is judged again on the next loop turn, then reading goes on."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._loop.call_soon(self._refill)

    def close(self) -> None:
        """The connection is gone: drop what is held (no listener hears it after ``'close'``)."""
        self._closing = True
        self.failed = True
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.paused = False
