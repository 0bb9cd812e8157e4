"""Calling user handlers from the application styles, safely.

Every style (endpoints, handler modules, routes, rooms, connections) calls
user functions from inside the event loop.  They all go through ``invoke``:
surplus arguments are dropped (``lambda: ...`` is fine everywhere), an
``async def`` handler is scheduled as a task, and an exception is logged with
its traceback instead of reaching the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable

from ._emitter import adapt_arity

__all__ = ["invoke", "spawn"]

logger = logging.getLogger("ws.styles")

_tasks: set[asyncio.Future] = set()


def invoke(fn: Callable[..., Any], *args: Any, what: str = "handler") -> Any:
    """Call ``fn(*args)`` (as many as it takes); log failures; schedule coroutines.

    Returns the task of an ``async def`` handler, else its result (``None``
    when it raised).
    """
    try:
        result = adapt_arity(fn)(*args)
    except Exception:
        logger.exception("%s %s raised", what, _name(fn))
        return None
    if inspect.isawaitable(result):
        return spawn(result, what=f"{what} {_name(fn)}")
    return result


def spawn(awaitable: Any, *, what: str = "task") -> asyncio.Future | None:
    """Run ``awaitable`` on the running loop, keep it referenced, log its failure."""
    try:
        task = asyncio.ensure_future(awaitable)
    except RuntimeError:  # no running loop: nothing can run it
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        logger.error("%s returned an awaitable outside an event loop; it was dropped", what)
        return None
    _tasks.add(task)
    task.add_done_callback(lambda t: _done(t, what))
    return task


def _done(task: asyncio.Future, what: str) -> None:
    _tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("%s raised", what, exc_info=exc)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
