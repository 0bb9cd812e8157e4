"""Timers kept off asyncio's heap: one thread per process posts them to their loops when due.

While any timer is pending, every turn of asyncio's default loop computes
a timeout before it waits (two ``time()`` calls, ``min``/``max``, a float
timeout rounded and converted for ``epoll``) and looks at the heap after:
5,100 instructions a turn, about a tenth of a small message's round trip
(docs/performance-log.md, "Latency").  A heartbeat that ticks every few
seconds for a whole server would make every read pay that.  Its timer
lives here instead: a daemon thread sleeps until the first one is due and
hands the callback to its loop with ``call_soon_threadsafe``, one wake-up
per tick.  The callback runs on the loop, as a ``call_later`` one would.

For long timers (a server's heartbeat, a client's) and per-connection
timers that are almost always cancelled (``ws.http``'s header and idle
timeouts); per-message timers belong on the loop.  A cancelled timer stays
in the heap until due or until the heap has doubled since it was last
swept (``PURGE_AT``), so cancelling costs nothing and the heap holds at
most twice the live timers (or ``PURGE_AT``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
import time
from typing import Callable, Protocol

__all__ = ["TickHandle", "Timer", "call_later"]


class Timer(Protocol):
    """What :func:`call_later` returns: a :class:`TickHandle`, or asyncio's ``TimerHandle`` when no thread could start."""

    def cancel(self) -> None: ...


#: Fewest entries in the heap before cancelled ones are swept out of it.
PURGE_AT = 1024


def _nothing() -> None:
    pass


class TickHandle:
    """A timer of :func:`call_later`; :meth:`cancel` before it is due and the callback never runs."""

    __slots__ = ("when", "loop", "callback", "cancelled")

    def __init__(self, when: float, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        self.when = when
        self.loop: asyncio.AbstractEventLoop | None = loop
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # Neither what it would have called nor its loop (a stopped server's, maybe) is kept
        # alive until it was due: it stays in the heap until then.
        self.callback = _nothing
        self.loop = None

    def _fire(self) -> None:
        if not self.cancelled:  # cancelled after it was posted, before the loop ran it
            self.cancelled = True
            self.callback()


class _Ticker:
    """The thread and its heap of ``(when, serial, handle)``."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TickHandle]] = []
        self._serial = itertools.count()
        self._thread: threading.Thread | None = None
        self._purge_at = PURGE_AT  # the heap's size at which cancelled timers are swept out

    def call_later(self, loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], object]) -> Timer:
        handle = TickHandle(time.monotonic() + delay, loop, callback)
        with self._lock:
            if len(self._heap) >= self._purge_at:
                self._purge()
            heapq.heappush(self._heap, (handle.when, next(self._serial), handle))
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="ws-ticker", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had now (a thread or pid limit): the loop's own timer
                    handle.cancel()
                    return loop.call_later(delay, callback)
                self._thread = thread  # only a running one: a later call_later starts another otherwise
            elif self._heap[0][2] is handle:
                self._lock.notify()  # due before what the thread sleeps for
        return handle

    def _purge(self) -> None:
        """Drop the cancelled timers (under the lock); the next sweep waits until the heap has doubled."""
        heap = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(heap)
        self._heap = heap
        self._purge_at = max(PURGE_AT, 2 * len(heap))

    def _run(self) -> None:
        lock = self._lock
        while True:
            with lock:
                heap = self._heap
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                if not heap:
                    self._thread = None  # the next call_later starts another
                    return
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    lock.wait(wait)
                    continue
                handle = heapq.heappop(heap)[2]
                loop = handle.loop
            if loop is None:
                continue  # cancelled since
            try:
                loop.call_soon_threadsafe(handle._fire)
            except Exception:  # its loop is closed (RuntimeError): nothing to run it on; the others still go
                handle.cancel()

    def _after_fork(self) -> None:
        """In a forked child the thread is gone and the lock may be held: start afresh.

        The parent's timers die with it, as the loops they tick for do not run in the child
        (asyncio does not carry a running loop across ``fork``).  Ticking them would write to
        the self-pipes the child shares with its parent's loops.
        """
        self.__init__()  # type: ignore[misc]


_ticker = _Ticker()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ticker._after_fork)


def call_later(loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], object]) -> Timer:
    """Run ``callback()`` on ``loop`` about ``delay`` seconds from now, with no timer on the loop's heap meanwhile."""
    return _ticker.call_later(loop, delay, callback)
