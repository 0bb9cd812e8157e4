"""Keepalive: find dead peers with pings, one timer for many sockets.

A half-open TCP connection (peer frozen, cable pulled) never reports an
error by itself.  Every ``interval`` seconds each socket gets a ping; a
socket whose pong has not come back ``timeout`` seconds after its ping is
closed with 1011.  One ``Heartbeat`` serves a whole server, so an idle
connection costs no timer of its own.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

__all__ = ["Heartbeat", "Pingable"]


class Pingable(Protocol):
    """What a heartbeat asks of a socket (``WebSocket`` implements it)."""

    def _keepalive_waiting(self, now: float, timeout: float | None) -> bool:
        """Whether a ping waits for its pong; one that waited ``timeout`` ends the connection."""

    def _keepalive_ping(self, now: float) -> None:
        """Send a ping now if OPEN; its pong is awaited from ``now``."""

    def _when_finished(self, hook: Callable[..., object]) -> None:
        """Call ``hook(socket)`` once the socket is closed."""


class Heartbeat:
    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, timeout: float | None) -> None:
        if interval <= 0:
            raise ValueError("ping_interval must be positive")
        if timeout is not None and timeout <= 0:
            raise ValueError("ping_timeout must be positive")
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        # Ticks come often enough to detect a timeout within a quarter of it.
        self.step = min(interval, timeout or interval) / 4
        self.sockets: dict[Pingable, float] = {}  # socket -> time of its last ping
        self._discard = self.discard  # bound once: every socket holds the same hook
        self._timer: asyncio.TimerHandle | None = None

    def add(self, ws: Pingable) -> None:
        ws._when_finished(self._discard)
        self.sockets[ws] = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self.step, self._tick)

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
        for ws, last_ping in list(self.sockets.items()):
            if ws._keepalive_waiting(now, timeout):
                continue
            if now - last_ping >= self.interval:
                self.sockets[ws] = now
                try:
                    ws._keepalive_ping(now)
                except Exception:  # a socket closing under us: the next tick drops it
                    pass
        if self.sockets:
            self._timer = self.loop.call_later(self.step, self._tick)
