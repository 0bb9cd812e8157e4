"""One rule for "stop the producer while the consumer lags": pause at ``high``, resume at ``low``.

A queue between the socket and slower code (``ctx.messages`` of a route,
``recv()``'s inbox, the socket's own backlog) must not grow without bound.
The socket stops reading when the queue holds ``high`` items, so TCP pushes
back on the peer, and reads again only when the queue is down to ``low``:
the gap between the two keeps the socket from toggling on every message.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["FlowGate"]


class FlowGate:
    """Calls ``pause()`` when a queue reaches ``high`` items and ``resume()`` when it drains to ``low``.

    The owner reports the queue's length after each change (``added`` /
    ``removed``).  The gate only resumes a pause it made: ``added(...,
    can_pause=False)`` (the producer is already paused by someone else, e.g.
    the user) leaves the pause to whoever made it.
    """

    __slots__ = ("high", "low", "paused", "_pause", "_resume")

    def __init__(self, high: int, low: int, pause: Callable[[], object], resume: Callable[[], object]) -> None:
        if not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
        self.high = high
        self.low = low
        #: Whether the producer is paused by this gate.
        self.paused = False
        self._pause = pause
        self._resume = resume

    def added(self, size: int, *, can_pause: bool = True) -> None:
        """The queue grew to ``size`` items."""
        if size >= self.high and not self.paused and can_pause:
            self.paused = True
            self._pause()

    def removed(self, size: int) -> None:
        """The queue shrank to ``size`` items."""
        if self.paused and size <= self.low:
            self.paused = False
            self._resume()
