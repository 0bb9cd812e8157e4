"""``Link``: synchronous code's handle on a backplane, for the layers above.

A ``broadcast``, a room's ``publish`` or a socket that opens is synchronous
and may run on any thread; the backplane's methods are coroutines of its
loop.  A ``Link`` bridges the two without ever blocking the caller:

* ``apply(op)`` queues a coroutine function (subscribe, track, untrack...)
  and one worker task runs them **one at a time, in the order they were
  queued**, once the backplane has started (``wait_started``).  So a
  connection that opens and closes at once is tracked, then untracked, never
  the other way round.
* ``publish(channel, data)`` starts the backplane's ``publish`` in a task of
  its own, at once: publishes overlap (Redis pipelines them) and keep their
  order, which is the order the coroutines start (see ``Backplane``).
* a failure of either goes to ``on_error(exc)`` (the server's ``'error'``
  event): nothing fails silently.  Once the link is closed, state changes
  are dropped (the node's presence left with it) but a publish still fails
  visibly.
* ``call(coro_fn)`` runs a coroutine on the backplane's loop from any loop
  (presence reads).

With metrics on (``ws.metrics``), each publish's time to the backplane's
acknowledgement and each failure are counted (plain numbers, folded into
Prometheus lazily: ``ws/_runtime/metrics.py``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

from .._runtime import loop as _loop
from .._runtime import metrics as _metrics
from .base import Backplane, BackplaneError

__all__ = ["Link"]

logger = logging.getLogger("ws.backplane")

T = TypeVar("T")
Op = Callable[[], Awaitable[Any]]


class Link:
    """Ordered, non-blocking use of ``backplane`` on ``loop`` (the server's loop, where it is started)."""

    def __init__(self, backplane: Backplane, loop: asyncio.AbstractEventLoop, on_error: Callable[[BaseException], None]) -> None:
        self.backplane = backplane
        self.loop = loop
        self.on_error = on_error
        self._ops: collections.deque[Op] = collections.deque()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._publishing: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak ones)

    # -- state changes, in order ------------------------------------------------------

    def apply(self, op: Op) -> None:
        """Run ``await op()`` after every operation queued before it, once the backplane has started."""
        if not self._closed:
            _loop.call(self.loop, self._queue, op)

    def _queue(self, op: Op) -> None:
        self._ops.append(op)
        if self._worker is None:
            self._worker = self.loop.create_task(self._work(), name="ws-backplane-link")

    async def _work(self) -> None:
        ops = self._ops
        try:
            await self.backplane.wait_started()
        except BackplaneError:  # closed before it started: the state it would hold is moot
            ops.clear()
            self._worker = None
            return
        while ops:
            op = ops.popleft()
            try:
                await op()
            except BackplaneError as exc:
                if self.backplane.started:
                    self._failed("state")
                    self.on_error(exc)
            except Exception as exc:  # a bug: say so, keep the link alive
                logger.exception("backplane operation failed")
                self.on_error(exc)
        self._worker = None

    async def drain(self) -> None:
        """Wait (on the link's loop) until every operation queued so far has run."""
        while self._worker is not None:
            await asyncio.shield(self._worker)

    def close(self, last: Op | None = None) -> None:
        """Accept no more state changes; ``last`` (e.g. a release) runs after the queued ones."""
        if last is not None:
            self.apply(last)
        self._closed = True

    # -- publishes, overlapping, in order -----------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        """Publish ``data`` on ``channel`` now (in a task); a failure goes to ``on_error``."""
        self.start(lambda: self.backplane.publish(channel, data))

    def start(self, op: Op) -> None:
        """Run ``await op()`` now, in a task of its own (a publish: they overlap, in order); failures go to ``on_error``.

        The order is kept when ``op`` hands its work to the backplane before
        its first ``await``, as every backplane's ``publish`` does.
        """
        if _loop.in_loop(self.loop):
            task = self.loop.create_task(self._run(op))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
        else:
            _loop.call(self.loop, self.start, op)

    async def _run(self, op: Op) -> None:
        tally = _metrics.backplane_tally(self.backplane, self.loop)  # None: metrics off
        start = time.perf_counter() if tally is not None else 0.0
        try:
            await op()
        except BackplaneError as exc:
            if tally is not None:
                tally.failed("publish")
            self.on_error(exc)
            return
        if tally is not None:
            tally.published(time.perf_counter() - start)

    def _failed(self, operation: str) -> None:
        tally = _metrics.backplane_tally(self.backplane, self.loop)
        if tally is not None:
            tally.failed(operation)

    # -- reads from any loop -------------------------------------------------------------

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` on the link's loop, whichever loop the caller is on.

        ``BackplaneError`` at once when the backplane has not started (the
        server is not serving) or is closed: a read never waits for a start
        that may not come.
        """
        if not self.backplane.started:
            state = "closed" if self.backplane.closed else "not started (the server is not serving)"
            raise BackplaneError(f"cannot read the cluster's presence: the backplane is {state}")
        if asyncio.get_running_loop() is self.loop:
            return await fn()

        async def hop() -> T:
            return await fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(hop(), self.loop))
