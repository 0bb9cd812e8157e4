"""The EventEmitter every public object extends: pyee, with JavaScript manners.

pyee does the bookkeeping (``on``, ``once``, ``remove_listener``, ...).  This
subclass adds what JavaScript users rely on and Python code must not break:

* a listener may accept fewer positional arguments than the event carries
  (``lambda: ...`` works for every event);
* ``async def`` listeners are scheduled on the emitter's loop;
* a listener that raises is logged with its traceback and re-emitted as
  ``'error'`` when someone listens for it; it never reaches the event loop;
* an ``'error'`` nobody listens to is logged, never raised.

The ``ws`` logger is quiet by default (a ``NullHandler``), but these two
are bugs in the application, as an uncaught exception is in Node: when the
application configured no logging at all, :func:`report` still prints them
(with the traceback) to stderr, so that a failing listener is never silent.

This module is the one place that calls user code.  Listeners of an emitter
go through ``EventEmitter`` (a failure becomes an ``'error'`` event); the
handlers of the application styles (endpoints, handler modules, routes,
rooms, connections), which have no emitter of their own, go through
:func:`invoke` and :func:`spawn` with the same manners: surplus arguments
dropped, ``async def`` run as a task that is kept referenced, a failure
logged (to ``ws.styles``) with its traceback and never raised into the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
import weakref
from typing import Any, Awaitable, Callable

from pyee import EventEmitter as _PyeeEmitter

from .log import report_error

__all__ = ["EventEmitter", "adapt_arity", "invoke", "report", "spawn"]

logger = logging.getLogger("ws")

#: Events kept for listeners attached late, at most (messages and helpers' events; see ``_emit_kept``).
MAX_HELD_EVENTS = 1024


def report(message: str, *args: Any, error: BaseException | None = None, log: logging.Logger = logger) -> None:
    """Log an application bug at ERROR; to stderr when the application set up no logging.

    Repeats of one cause are rate-limited (``ws._runtime.log.report_error``):
    a listener that raises on every message logs one traceback, then one
    line per interval with a count.
    """
    report_error(log, message, *args, error=error if isinstance(error, BaseException) else None, stderr=True)


def _positional_capacity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes; ``None`` for "any number"."""
    # Plain functions and methods (most listeners, one per connection) are read
    # off their code object: inspect.signature costs ~50 us per handshake.
    func = fn.__func__ if type(fn) is types.MethodType else fn
    if type(func) is types.FunctionType and not hasattr(func, "__wrapped__") and not hasattr(func, "__signature__"):
        code = func.__code__
        if code.co_flags & inspect.CO_VARARGS:
            return None
        return code.co_argcount - (func is not fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def adapt_arity(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` so that surplus positional arguments are dropped."""
    capacity = _positional_capacity(fn)
    if capacity is None:
        return fn
    if capacity == 0:
        return lambda *args: fn()
    if capacity == 1:
        wrapper = lambda *args: fn(*args[:1])  # noqa: E731
    else:
        wrapper = lambda *args: fn(*args[:capacity])  # noqa: E731
    # Hot paths emitting exactly one argument may call ``fn`` as is, skipping a frame.
    wrapper._ws_direct = fn  # type: ignore[attr-defined]
    return wrapper


class EventEmitter(_PyeeEmitter):
    """pyee's EventEmitter with JavaScript-style listener calling (see module doc)."""

    #: The loop ``async def`` listeners are scheduled on.  Every emitter of
    #: ``ws`` sets it in its constructor; a bare ``EventEmitter`` has none and
    #: uses the running loop (hence the ``getattr`` below).
    _loop: asyncio.AbstractEventLoop

    def _add_event_handler(self, event: str, k: Callable[..., Any], v: Callable[..., Any]) -> None:
        super()._add_event_handler(event, k, adapt_arity(v))
        self._listeners_changed(event)

    def _remove_listener(self, event: str, f: Callable[..., Any]) -> None:
        super()._remove_listener(event, f)
        self._listeners_changed(event)

    def remove_all_listeners(self, event: str | None = None) -> None:
        super().remove_all_listeners(event)
        self._listeners_changed(event)

    def once(self, event: str, f: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """Like ``on``, but the listener is removed before its first call."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            adapted = adapt_arity(fn)

            def once_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._lock:
                    listeners = self._events.get(event)
                    if not listeners or fn not in listeners:
                        return None
                    self._remove_listener(event, fn)
                return adapted(*args, **kwargs)

            self._add_event_handler(event, fn, once_wrapper)
            return fn

        return wrap if f is None else wrap(f)

    def _listeners_changed(self, event: str | None) -> None:
        """Hook for subclasses that cache their listeners (hot paths); replays kept events."""
        if self._held and event is not None:
            # Never synchronously: pyee may hold its lock while calling us.
            try:
                self._loop.call_soon_threadsafe(self._replay, event)
            except (AttributeError, RuntimeError):  # no loop, or closed: nothing left to replay to
                pass

    #: Events emitted while nobody listened, in order, for listeners attached
    #: later (``None``: nothing kept).  See ``_emit_kept``.
    _held: list[tuple[str, tuple[Any, ...]]] | None = None
    #: Whether *every* lifecycle event goes through ``_emit_kept`` (clients and
    #: helpers made in a plain script); servers keep only ``'listening'``.
    _hold_events = False

    def _emit_kept(self, event: str, *args: Any, limit: int | None = None) -> None:
        """Emit ``event``; if nobody listens yet, keep it for the first listener of it.

        In a plain script work runs on the reactor thread while the script's
        next lines are still attaching listeners: a server listens before its
        constructor returns, a client may connect before ``on('open')`` runs,
        whereas Node emits these on a later tick.  Kept events are replayed
        in order when a listener arrives, which gives the Node outcome.
        ``limit`` bounds how many kept events this one may join.
        """
        if self._events.get(event):
            self.emit(event, *args)
            return
        held = self._held
        if held is None:
            held = self._held = []
        if limit is None or len(held) < limit:
            held.append((event, args))

    def _replay(self, event: str) -> None:
        held = self._held
        if not held or not self._events.get(event):
            return
        keep = []
        for name, args in held:
            if name == event:
                self.emit(name, *args)
            else:
                keep.append((name, args))
        self._held = keep

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has (Node's ``listenerCount``)."""
        return len(self._events.get(event, ()))

    def _emit_run(self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            result = f(*args, **kwargs)
        except Exception as exc:
            self._listener_failed(exc)
            return
        if result is not None and inspect.isawaitable(result):
            self._schedule(result)

    def _schedule(self, awaitable: Awaitable[Any]) -> asyncio.Future[Any] | None:
        """Run an awaitable listener result as a task (returned; ``None`` if it cannot run)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
        try:
            if loop is None:
                loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(awaitable, loop=loop)
        except Exception as exc:  # no loop at all: report, do not raise
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # it will never run: no "never awaited" warning
            self._listener_failed(exc)
            return None
        task.add_done_callback(self._async_listener_done)
        return task

    def _async_listener_done(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and isinstance(exc, Exception):
            self._listener_failed(exc)

    def _listener_failed(self, exc: Exception) -> None:
        report("listener of %s raised", type(self).__name__, error=exc)
        if self._events.get("error"):
            # Errors from error listeners are logged above and not re-emitted,
            # so one broken listener cannot loop.
            for handler in list(self._events["error"].values()):
                try:
                    result = handler(exc)
                    if result is not None and inspect.isawaitable(result):
                        self._schedule(result)
                except Exception as again:
                    report("'error' listener of %s raised", type(self).__name__, error=again)

    def _emit_handle_potential_error(self, event: str, error: Any) -> None:
        if event == "error":
            report("unhandled 'error' event on %s: %s", type(self).__name__, error, error=error)

    # -- Node's spellings, for every emitter ------------------------------------------------
    # A subclass that redefines one of the snake_case methods declares its alias again.

    off = _PyeeEmitter.remove_listener
    addListener = _PyeeEmitter.add_listener
    removeListener = _PyeeEmitter.remove_listener
    removeAllListeners = remove_all_listeners
    listenerCount = listener_count
    eventNames = _PyeeEmitter.event_names


# -- user handlers outside an emitter (the application styles) --------------------------

styles_logger = logging.getLogger("ws.styles")

_tasks: set[asyncio.Future[Any]] = set()

# fn -> how many positional arguments it takes; the values hold no reference to
# their keys, so a handler's entry goes away with the handler.
_capacities: weakref.WeakKeyDictionary[Callable[..., Any], int | None] = weakref.WeakKeyDictionary()


def _capacity(fn: Callable[..., Any]) -> int | None:
    try:
        return _capacities[fn]
    except KeyError:
        capacity = _positional_capacity(fn)
        _capacities[fn] = capacity
        return capacity
    except TypeError:  # not weakly referenceable: work it out each time
        return _positional_capacity(fn)


def invoke(fn: Callable[..., Any], *args: Any, what: str = "handler") -> Any:
    """Call ``fn(*args)`` (as many as it takes); log failures; schedule coroutines.

    Returns the task of an ``async def`` handler, else its result (``None``
    when it raised).
    """
    capacity = _capacity(fn)
    try:
        result = fn(*args) if capacity is None or capacity >= len(args) else fn(*args[:capacity])
    except Exception as exc:
        report_error(styles_logger, "%s %s raised", what, _name(fn), error=exc)
        return None
    if inspect.isawaitable(result):
        return spawn(result, what=f"{what} {_name(fn)}")
    return result


def spawn(awaitable: Awaitable[Any], *, what: str = "task") -> asyncio.Future[Any] | None:
    """Run ``awaitable`` on the running loop, keep it referenced, log its failure."""
    try:
        task = asyncio.ensure_future(awaitable)
    except RuntimeError:  # no running loop: nothing can run it
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        styles_logger.error("%s returned an awaitable outside an event loop; it was dropped", what)
        return None
    _tasks.add(task)
    task.add_done_callback(lambda t: _spawned_done(t, what))
    return task


def _spawned_done(task: asyncio.Future[Any], what: str) -> None:
    _tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        report_error(styles_logger, "%s raised", what, error=exc)


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
