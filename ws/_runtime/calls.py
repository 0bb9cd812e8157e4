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
import weakref
from typing import Any, Callable

from .emitter import _positional_capacity

__all__ = ["invoke", "spawn"]

logger = logging.getLogger("ws.styles")

_tasks: set[asyncio.Future] = set()


def invoke(fn: Callable[..., Any], *args: Any, what: str = "handler") -> Any:
    """Call ``fn(*args)`` (as many as it takes); log failures; schedule coroutines.

    Returns the task of an ``async def`` handler, else its result (``None``
    when it raised).
    """
    capacity = _capacity(fn)
    try:
        result = fn(*args) if capacity is None or capacity >= len(args) else fn(*args[:capacity])
    except Exception:
        logger.exception("%s %s raised", what, _name(fn))
        return None
    if inspect.isawaitable(result):
        return spawn(result, what=f"{what} {_name(fn)}")
    return result


# fn -> how many positional arguments it takes; the values hold no reference to
# their keys, so a handler's entry goes away with the handler.
_capacities: "weakref.WeakKeyDictionary[Callable[..., Any], int | None]" = weakref.WeakKeyDictionary()


def _capacity(fn: Callable[..., Any]) -> int | None:
    try:
        return _capacities[fn]
    except KeyError:
        capacity = _positional_capacity(fn)
        _capacities[fn] = capacity
        return capacity
    except TypeError:  # not weakly referenceable: work it out each time
        return _positional_capacity(fn)


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
