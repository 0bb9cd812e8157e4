"""A budget of unsent bytes shared by many connections: past it, the one holding the most is dropped.

``max_buffered_amount`` bounds one connection; a server with N peers that
do not read could still hold N times it.  A ``SendBudget`` bounds their sum.
Only connections above their high-water mark report to it (when asyncio
pauses their writing, and on each send while it stays paused), so a peer
that keeps up costs nothing.  When the reported total passes ``limit``, the
budget reads every reported connection's real ``buffered_amount`` (some
drained since they reported) and drops the ones holding the most until the
total fits: a peer that does not read holds the most, so it goes first,
and the readers that are momentarily behind stay.

All WebSocket servers on one event loop with the same limit share one
budget (:func:`budget_for`): a process serving several paths, or a style
that makes one server per route, has one budget, not one per path.  A
budget is only touched from its loop's thread.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from asyncio import AbstractEventLoop

__all__ = ["DEFAULT_MAX_TOTAL_BUFFERED", "Holder", "SendBudget", "budget_for"]

#: The default budget of unsent bytes for the WebSocket servers of one loop
#: (four connections at the default 64 MiB ``max_buffered_amount``).
DEFAULT_MAX_TOTAL_BUFFERED = 256 << 20


class Holder(Protocol):
    """A connection that reports to a budget (``WebSocket`` implements it)."""

    @property
    def buffered_amount(self) -> int:
        """Its unsent bytes now."""

    def _over_budget(self, budget: "SendBudget", held: int) -> None:
        """Drop the connection: it held ``held`` bytes, the most, when ``budget`` was exceeded."""


class SendBudget:
    """The unsent bytes of the connections above their high-water mark, against ``limit``."""

    __slots__ = ("limit", "total", "_held", "_shedding")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: The sum of what the connections reported (each as of its last report).
        self.total = 0
        self._held: dict[Holder, int] = {}
        self._shedding = False

    def charge(self, holder: Holder, size: int, *, shed: bool = True) -> bool:
        """``holder`` holds ``size`` unsent bytes; whether it was dropped for the budget (``shed``).

        ``shed=False`` records only (the caller is inside the transport's
        own ``write``, where dropping it would be untidy); the next charge
        that finds the budget exceeded decides.
        """
        held = self._held
        self.total += size - held.get(holder, 0)
        held[holder] = size
        if self.total <= self.limit or not shed or self._shedding:
            return False
        self._shed()
        return holder not in held

    def release(self, holder: Holder) -> None:
        """``holder`` drained below its low-water mark, or is gone."""
        size = self._held.pop(holder, None)
        if size is not None:
            self.total -= size

    def _shed(self) -> None:
        """Drop the largest holders until the real total fits (what they hold now, not what they reported)."""
        held = self._held
        self._shedding = True  # a drop emits 'error': listeners that send report without shedding
        try:
            for holder in held:
                held[holder] = holder.buffered_amount
            self.total = sum(held.values())
            for holder, _ in sorted(held.items(), key=lambda item: item[1], reverse=True):
                if self.total <= self.limit:
                    break
                size = held.pop(holder, None)  # (None: an 'error' listener closed it meanwhile)
                if size is not None:
                    self.total -= size
                    holder._over_budget(self, size)
        finally:
            self._shedding = False

    def __repr__(self) -> str:
        return f"<SendBudget {self.total}/{self.limit} bytes, {len(self._held)} connections>"


_budgets: "weakref.WeakKeyDictionary[AbstractEventLoop, dict[int, SendBudget]]" = weakref.WeakKeyDictionary()


def budget_for(loop: "AbstractEventLoop", limit: int) -> SendBudget:
    """The budget of ``limit`` bytes shared on ``loop`` (made on first use; it goes with the loop)."""
    budgets = _budgets.get(loop)
    if budgets is None:
        budgets = _budgets[loop] = {}
    budget = budgets.get(limit)
    if budget is None:
        budget = budgets[limit] = SendBudget(limit)
    return budget
