"""Keepalive: find dead peers with pings, and slow messages, one timer for many sockets.

A half-open TCP connection (peer frozen, cable pulled) never reports an
error by itself.  Every ``interval`` seconds each socket gets a ping; a
socket whose pong has not come back ``timeout`` seconds after its ping is
closed with 1011.  The same sweep ends a message that has been coming in
for ``message_timeout`` seconds (1008) and frees idle large-frame buffers.
One ``Heartbeat`` serves a whole server, so an idle connection costs no
timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol

from .._runtime import ticker

__all__ = ["Heartbeat", "Pingable", "check_message_timeout", "DEFAULT_MESSAGE_TIMEOUT"]

logger = logging.getLogger("ws.keepalive")

#: Seconds a message may take to arrive whole, from its first byte (a
#: fragmented message left open, a large frame trickling in): then 1008.
DEFAULT_MESSAGE_TIMEOUT = 60.0


class Pingable(Protocol):
    """What a heartbeat asks of a socket (``WebSocket`` implements it)."""

    def _keepalive_waiting(self, now: float, timeout: float | None) -> bool:
        """Whether a ping waits for its pong; one that waited ``timeout`` ends the connection."""

    def _keepalive_ping(self, now: float) -> None:
        """Send a ping now if OPEN; its pong is awaited from ``now``."""

    def _when_finished(self, hook: Callable[..., object]) -> None:
        """Call ``hook(socket)`` once the socket is closed."""

    def _sweep(self, now: float, message_timeout: float | None) -> None:
        """Free idle buffers; end a message unfinished for ``message_timeout`` seconds."""


def check_message_timeout(value: object) -> None:
    """``message_timeout`` is a positive number of seconds, or ``None`` (no limit): say so at construction."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"message_timeout must be a number or None, got {type(value).__name__}")
    if not value > 0:
        raise ValueError("message_timeout must be positive")


class Heartbeat:
    """Pings every ``interval`` seconds (``None``: none) and sweeps for ``message_timeout`` (``None``: none)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float | None,
        timeout: float | None,
        message_timeout: float | None = None,
    ) -> None:
        if interval is not None and interval <= 0:
            raise ValueError("ping_interval must be positive")
        if timeout is not None and timeout <= 0:
            raise ValueError("ping_timeout must be positive")
        check_message_timeout(message_timeout)
        if interval is None and message_timeout is None:
            raise ValueError("a heartbeat needs ping_interval or message_timeout")
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        self.message_timeout = message_timeout
        # Ticks come often enough to detect a timeout within a quarter of it.
        periods = [] if interval is None else [min(interval, timeout or interval)]
        if message_timeout is not None:
            periods.append(message_timeout)
        self.step = min(periods) / 4
        self.sockets: dict[Pingable, float] = {}  # socket -> time of its last ping
        self._discard = self.discard  # bound once: every socket holds the same hook
        # Off asyncio's heap (ws/_runtime/ticker.py): a pending timer there costs every loop turn.
        self._timer: ticker.Timer | None = None

    def add(self, ws: Pingable) -> None:
        ws._when_finished(self._discard)
        self.sockets[ws] = self.loop.time()
        if self._timer is None:
            self._timer = ticker.call_later(self.loop, self.step, self._tick)

    def discard(self, ws: Pingable) -> None:
        # The timer stays: the next tick finds no socket and does not re-arm.
        # (Cancelling it here cost a timer per connection when clients come
        # and go one at a time.)
        self.sockets.pop(ws, None)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.sockets.clear()

    def _tick(self) -> None:
        self._timer = None
        now = self.loop.time()
        timeout = self.timeout
        interval = self.interval
        message_timeout = self.message_timeout
        for ws, last_ping in list(self.sockets.items()):
            try:
                ws._sweep(now, message_timeout)
            except Exception:  # pragma: no cover - a bug of ours: the other sockets are still swept
                logger.exception("sweeping %r failed", ws)
            if interval is None or ws._keepalive_waiting(now, timeout):
                continue
            if now - last_ping >= interval:
                self.sockets[ws] = now
                try:
                    ws._keepalive_ping(now)
                except Exception:  # a socket closing under us: the next tick drops it
                    pass
        if self.sockets:
            self._timer = ticker.call_later(self.loop, self.step, self._tick)
