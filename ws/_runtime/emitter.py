"""The EventEmitter every public object extends: pyee, with Node's bookkeeping and JavaScript manners.

pyee provides ``emit`` and the decorator forms; the bookkeeping is Node's
(``events`` module), where pyee's differs:

* every ``on``/``once`` is a registration of its own: the same function
  added twice is called twice, and ``remove_listener`` (``off``) removes one
  registration, the last one added (pyee keys listeners by function);
* ``prepend_listener``, ``prepend_once_listener``, ``raw_listeners``,
  ``listener_count(event, listener)``, ``event_names`` in order, and
  ``set_max_listeners``: past the limit (10 by default) a
  ``MaxListenersExceededWarning`` is issued once per event, as Node prints
  its leak warning.

On top of them, what JavaScript users rely on and Python code must not break:

* a listener may accept fewer positional arguments than the event carries
  (``lambda: ...`` works for every event);
* how a listener is called is decided once, when it is added (``_adapt``;
  sockets add Node's ``'message'`` signature there, ``ws.connection.dom``);
* ``async def`` listeners are scheduled on the emitter's loop;
* a listener that raises is logged with its traceback and re-emitted as
  ``'error'`` when someone listens for it; it never reaches the event loop;
* an ``'error'`` nobody listens to is reported, never raised.

The ``ws`` logger is quiet by default (a ``NullHandler``), but these two
are bugs in the application, as an uncaught exception is in Node: when the
application configured no logging at all, :func:`report` still prints them
(with the traceback) to stderr, so that a failing listener is never silent.
In a plain script (objects on the reactor, ``ws._runtime.loop``) they also
make the process exit with status 1, unless a listener claims them later.

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
import collections
import inspect
import logging
import math
import sys
import types
import warnings
import weakref
from typing import Any, Awaitable, Callable

from pyee import EventEmitter as _PyeeEmitter

from ..exceptions import MaxListenersExceededWarning
from . import loop as _loop
from .log import report_error

__all__ = ["EventEmitter", "adapt_arity", "arity", "direct", "invoke", "report", "required_positional", "spawn"]

logger = logging.getLogger("ws")

#: Events kept for listeners attached late, at most (messages and helpers' events; see ``_emit_kept``).
MAX_HELD_EVENTS = 1024

#: Node's ``EventEmitter.defaultMaxListeners``.
DEFAULT_MAX_LISTENERS = 10

#: Seconds an ``'error'`` kept for a script's listener waits for one while the script still runs.
UNCLAIMED_GRACE = 0.25


def report(message: str, *args: Any, error: BaseException | None = None, log: logging.Logger = logger) -> None:
    """Log an application bug at ERROR; to stderr when the application set up no logging.

    Repeats of one cause are rate-limited (``ws._runtime.log.report_error``):
    a listener that raises on every message logs one traceback, then one
    line per interval with a count.
    """
    report_error(log, message, *args, error=error if isinstance(error, BaseException) else None, stderr=True)


def _code_arity(fn: Callable[..., Any]) -> tuple[int, int | None] | None:
    """``arity(fn)`` read off a plain function's or method's code object; ``None`` for anything else."""
    # Plain functions and methods (most listeners, one per connection) are read
    # off their code object: inspect.signature costs ~50 us per handshake.
    func = fn.__func__ if type(fn) is types.MethodType else fn
    if type(func) is not types.FunctionType or hasattr(func, "__wrapped__") or hasattr(func, "__signature__"):
        return None
    code = func.__code__
    bound = func is not fn
    required = code.co_argcount - len(func.__defaults__ or ()) - bound
    return (required if required > 0 else 0), (None if code.co_flags & inspect.CO_VARARGS else code.co_argcount - bound)


def arity(fn: Callable[..., Any]) -> tuple[int, int | None]:
    """How many positional arguments ``fn`` requires, and how many it takes (``None``: any number)."""
    known = _code_arity(fn)
    if known is not None:
        return known
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature (print): called with one argument
        return 0, None
    required = count = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return required, None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
            if param.default is param.empty:
                required += 1
    return required, count


def required_positional(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` requires (those without a default); 0 when unknown."""
    return arity(fn)[0]


def _call_first(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args[:1])


def _call_first_n(bound: tuple[Callable[..., Any], int], *args: Any) -> Any:
    fn, capacity = bound
    return fn(*args[:capacity])


# The wrappers are bound methods of these functions, bound to the listener: one object each, where a
# closure is three (function, cell, tuple of cells); every connection's listener gets one, and those
# of a socket that stays in a cycle of the application's go with the garbage collector.  ``direct``
# finds the listener in ``__self__``.
def _first(fn: Callable[..., Any]) -> Callable[..., Any]:
    return types.MethodType(_call_first, fn)


def _first_n(fn: Callable[..., Any], capacity: int) -> Callable[..., Any]:
    return types.MethodType(_call_first_n, (fn, capacity))


def adapt_arity(fn: Callable[..., Any], capacity: int | None | bool = False) -> Callable[..., Any]:
    """Wrap ``fn`` so that surplus positional arguments are dropped.

    ``capacity``: what ``arity(fn)`` says it takes, when the caller knows it already.
    """
    if capacity is False:
        capacity = arity(fn)[1]
    if capacity is None:
        return fn
    if capacity == 0:
        return lambda *args: fn()
    # Hot paths emitting exactly one argument may call ``fn`` as is (``direct``), skipping a frame.
    return _first(fn) if capacity == 1 else _first_n(fn, capacity)


def direct(call: Callable[..., Any]) -> Callable[..., Any]:
    """What an emit of exactly one argument may call instead of ``call``: the listener ``adapt_arity`` wrapped in it
    to drop surplus arguments (it takes one at least), else ``call`` itself."""
    if type(call) is types.MethodType:
        wrapper = call.__func__
        bound: Any = call.__self__
        if wrapper is _call_first:
            listener: Callable[..., Any] = bound
            return listener
        if wrapper is _call_first_n:
            listener = bound[0]
            return listener
    return call


class _Registration:
    """One ``on``/``once`` call: the key of its listener in ``_events``, unique even for the same function."""

    __slots__ = ("listener", "once")

    def __init__(self, listener: Callable[..., Any], once: bool) -> None:
        self.listener = listener
        self.once = once

    def __repr__(self) -> str:
        return f"<{'once ' if self.once else ''}listener {self.listener!r}>"


def _caller_stacklevel() -> int:
    """The ``warnings`` stacklevel of the first frame outside ``ws`` and pyee: the user's ``on()`` call."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name == "ws" or name.startswith(("ws.", "pyee"))):
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return 1


class EventEmitter(_PyeeEmitter):
    """pyee's EventEmitter with Node's bookkeeping and JavaScript-style listener calling (see module doc)."""

    #: The loop ``async def`` listeners are scheduled on.  Every emitter of
    #: ``ws`` sets it in its constructor; a bare ``EventEmitter`` has none and
    #: uses the running loop (hence the ``getattr`` below).
    _loop: asyncio.AbstractEventLoop
    # pyee's table, keyed by registration (Node keeps a list): event -> {registration: what emit calls}.
    _events: dict[str, collections.OrderedDict[_Registration, Callable[..., Any]]]  # type: ignore[assignment]

    #: ``set_max_listeners``; a class default, so that emitters that keep it carry no attribute for it.
    _max_listeners: float = DEFAULT_MAX_LISTENERS
    #: The class name reports give (``unhandled 'error' event on WebSocket``); ``None``: the object's
    #: own.  An internal subclass (``MeteredWebSocket``) names the public class it stands for.
    _shown_as: str | None = None
    #: Events already warned about (``MaxListenersExceededWarning`` once per event, as Node).
    _warned: frozenset[str] = frozenset()

    # -- adding and removing (Node's semantics) -------------------------------------------

    def _add_event_handler(self, event: str, k: Callable[..., Any], v: Callable[..., Any]) -> None:
        # pyee's on()/add_listener()/listens_to() land here with k == v == the listener.
        self._register(event, k, self._adapt(event, v))

    def _adapt(self, event: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """What ``emit`` will call for listener ``fn`` of ``event``: decided once, here (sockets add
        Node's ``'message'`` signature, ``ws.connection.dom``)."""
        return adapt_arity(fn)

    def _register(
        self, event: str, registration: _Registration | Callable[..., Any], call: Callable[..., Any], *, prepend: bool = False
    ) -> None:
        if not isinstance(registration, _Registration):
            registration = _Registration(registration, False)
        # pyee fires 'new_listener' before adding, as Node fires 'newListener' (only when heard:
        # a socket's first on() is part of every handshake, and an emit costs more than the add).
        if self._events.get("new_listener"):
            self.emit("new_listener", event, registration.listener)
        with self._lock:
            listeners = self._events.get(event)
            if listeners is None:
                listeners = self._events[event] = collections.OrderedDict()
            listeners[registration] = call
            if prepend:
                listeners.move_to_end(registration, last=False)
            count = len(listeners)
        limit = self._max_listeners
        if 0 < limit < count and event not in self._warned:
            self._warned = self._warned | {event}
            warnings.warn(
                MaxListenersExceededWarning(
                    f"Possible EventEmitter memory leak detected. {count} {event!r} listeners added to {self!r}."
                    f" MaxListeners is {limit}. Use emitter.set_max_listeners() to increase limit"
                ),
                stacklevel=_caller_stacklevel(),
            )
        self._listeners_changed(event)

    def once(self, event: str, f: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """Like ``on``, but the listener is removed before its first call."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._register_once(event, fn, prepend=False)
            return fn

        return wrap if f is None else wrap(f)

    def _register_once(self, event: str, fn: Callable[..., Any], *, prepend: bool) -> None:
        adapted = self._adapt(event, fn)
        registration = _Registration(fn, True)

        def once_wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if not self._drop(event, registration):
                    return None  # removed meanwhile, or already called from another thread
            self._listeners_changed(event)
            return adapted(*args, **kwargs)

        once_wrapper.listener = fn  # type: ignore[attr-defined]  # Node's rawListeners()[i].listener
        self._register(event, registration, once_wrapper, prepend=prepend)

    def prepend_listener(self, event: str, f: Callable[..., Any]) -> Callable[..., Any]:
        """Like ``on``, but ``f`` is called before the listeners already there (Node's ``prependListener``)."""
        self._register(event, f, self._adapt(event, f), prepend=True)
        return f

    def prepend_once_listener(self, event: str, f: Callable[..., Any]) -> Callable[..., Any]:
        """``once``, called before the listeners already there (Node's ``prependOnceListener``)."""
        self._register_once(event, f, prepend=True)
        return f

    def _drop(self, event: str, registration: _Registration) -> bool:
        """Remove one registration (under the lock); whether it was there."""
        listeners = self._events.get(event)
        if listeners is None or registration not in listeners:
            return False
        del listeners[registration]
        if not listeners:
            del self._events[event]
        return True

    def _remove_listener(self, event: str, f: Callable[..., Any]) -> None:
        """Remove the last registration of ``f`` (Node); nothing if there is none."""
        listeners = self._events.get(event)
        if not listeners:
            return
        for registration in reversed(listeners):
            if registration.listener == f:
                self._drop(event, registration)
                return

    def remove_listener(self, event: str, f: Callable[..., Any]) -> None:
        """Remove one registration of ``f`` for ``event``: the last one added, as Node (also ``off``)."""
        with self._lock:
            self._remove_listener(event, f)
        self._listeners_changed(event)

    def remove_all_listeners(self, event: str | None = None) -> None:
        """Remove every listener of ``event``, or of every event."""
        with self._lock:
            if event is None:
                self._events = {}
            else:
                self._events.pop(event, None)
        self._listeners_changed(event)

    # -- looking (Node's names) -------------------------------------------------------------

    def listeners(self, event: str) -> list[Callable[..., Any]]:
        """The listeners of ``event`` in call order, one entry per registration (``once`` ones unwrapped)."""
        return [registration.listener for registration in list(self._events.get(event, ()))]

    def raw_listeners(self, event: str) -> list[Callable[..., Any]]:
        """As ``listeners``, but a ``once`` listener as its wrapper (``.listener`` is the function), as Node."""
        listeners = self._events.get(event)
        if not listeners:
            return []
        return [call if registration.once else registration.listener for registration, call in list(listeners.items())]

    def listener_count(self, event: str, listener: Callable[..., Any] | None = None) -> int:
        """How many listeners ``event`` has; with ``listener``, how many times that one is registered."""
        listeners = self._events.get(event)
        if not listeners:
            return 0
        if listener is None:
            return len(listeners)
        return sum(1 for registration in list(listeners) if registration.listener == listener)

    def event_names(self) -> list[str]:  # type: ignore[override]  # pyee: a set; Node: an array, in order
        """The events that have listeners, in the order they got their first one."""
        return list(self._events)

    def set_max_listeners(self, n: float) -> EventEmitter:
        """Warn (``MaxListenersExceededWarning``) when an event gets more than ``n`` listeners; 0 or ``math.inf``: never."""
        if isinstance(n, bool) or not isinstance(n, (int, float)) or math.isnan(n) or n < 0:
            raise ValueError(f"set_max_listeners() takes a non-negative number, got {n!r}")
        self._max_listeners = n
        return self

    def get_max_listeners(self) -> float:
        """The limit ``set_max_listeners`` set (10 by default, Node's)."""
        return self._max_listeners

    def _listeners_changed(self, event: str | None) -> None:
        """Hook for subclasses that cache their listeners (hot paths); replays kept events."""
        if self._held and event is not None:
            # Never synchronously: pyee may hold its lock while calling us.
            try:
                self._loop.call_soon_threadsafe(self._replay, event)
            except (AttributeError, RuntimeError):  # no loop, or closed: nothing left to replay to
                pass

    # -- events kept for late listeners (plain scripts) ------------------------------------------

    #: Events emitted while nobody listened, in order, for listeners attached
    #: later (``None``: nothing kept).  See ``_emit_kept``.
    _held: list[tuple[str, tuple[Any, ...]]] | None = None
    #: Whether *every* lifecycle event goes through ``_emit_kept`` (clients and
    #: helpers made in a plain script); servers keep only ``'listening'``, and
    #: ``'connection'`` while the script's next lines may still attach its listener.
    _hold_events = False

    def _emit_kept(self, event: str, *args: Any, limit: int | None = None) -> None:
        """Emit ``event``; if nobody listens yet, keep it for the first listener of it.

        In a plain script work runs on the reactor thread while the script's
        next lines are still attaching listeners: a server listens before its
        constructor returns, a client may connect before ``on('open')`` runs,
        whereas Node emits these on a later tick.  Kept events are replayed
        in order when a listener arrives, which gives the Node outcome.
        ``limit`` bounds how many kept events this one may join.

        An ``'error'`` kept so is reported (and counts for the exit status)
        unless a listener claims it within ``UNCLAIMED_GRACE`` seconds, or
        as soon as the script's main thread has finished.

        "Nobody listens" and the keeping are one step under the emitter's
        lock, which ``on()`` takes too: a listener the script attaches from
        its own thread meanwhile is either seen here or, after it, finds the
        event kept and replays it (``_listeners_changed``).  Apart, the
        listener could land in between, see nothing kept, and the event
        would wait for good (a script's ``'open'`` never heard).
        """
        with self._lock:
            listening = bool(self._events.get(event))
            held = self._held
            room = listening or limit is None or held is None or len(held) < limit
            if not listening and room:
                if held is None:
                    held = self._held = []
                held.append((event, args))
        if listening:
            self.emit(event, *args)
            return
        if not room:
            if event == "error":
                self._report_unhandled(args[0] if args else None)  # no room to keep it: said now
            return
        if event == "error":
            error = args[0] if args else None
            loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
            if loop is not None and _loop.is_reactor(loop):
                _loop.reactor.after_script(lambda: self._report_if_unclaimed(error), UNCLAIMED_GRACE)
            elif loop is not None:
                loop.call_later(UNCLAIMED_GRACE, self._report_if_unclaimed, error)
            else:
                self._report_unhandled(error)

    def _report_if_unclaimed(self, error: Any) -> None:
        held = self._held
        if held is not None and any(name == "error" and args and args[0] is error for name, args in held):
            self._report_unhandled(error, claimable=True)

    def _forget_kept(self, event: str) -> None:
        """Drop the kept ``event``s nobody claimed: no listener can come for them any more."""
        held = self._held
        if held:
            self._held = [(name, args) for name, args in held if name != event]

    def _replay(self, event: str) -> None:
        held = self._held
        if not held or not self._events.get(event):
            return
        keep = []
        for name, args in held:
            if name == event:
                if name == "error" and args:
                    _loop.reactor.claimed(args[0])  # reported already, perhaps: it is handled after all
                self.emit(name, *args)
            else:
                keep.append((name, args))
        self._held = keep

    # -- calling listeners ----------------------------------------------------------------------

    def _call_handlers(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """pyee's, without the empty ``OrderedDict`` it makes for every emit (``'connection'``, ``'close'``...)."""
        with self._lock:
            listeners = self._events.get(event)
            if not listeners:
                return False
            funcs = list(listeners.values())
        for f in funcs:
            self._emit_run(f, args, kwargs)
        return True

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
        report("listener of %s raised", self._shown_name(), error=exc)
        listeners = self._events.get("error")
        if not listeners:
            self._unhandled(exc)
            return
        # Errors from error listeners are logged above and not re-emitted,
        # so one broken listener cannot loop.
        for handler in list(listeners.values()):
            try:
                result = handler(exc)
                if result is not None and inspect.isawaitable(result):
                    self._schedule(result)
            except Exception as again:
                report("'error' listener of %s raised", self._shown_name(), error=again)

    def _shown_name(self) -> str:
        """The class name users see in reports (see ``_shown_as``)."""
        return self._shown_as or type(self).__name__

    def _emit_handle_potential_error(self, event: str, error: Any) -> None:
        if event == "error":
            self._report_unhandled(error)

    def _report_unhandled(self, error: Any, claimable: bool = False) -> None:
        """An ``'error'`` nobody listens to: reported at once, and counted for a script's exit status.

        ``claimable``: it is kept for a listener the script may still attach (``_emit_kept``).
        """
        report("unhandled 'error' event on %s: %s", self._shown_name(), error, error=error)
        self._unhandled(error, claimable)

    def _unhandled(self, error: Any, claimable: bool = False) -> None:
        """A plain script (the reactor) that ends with this error unclaimed exits with status 1, as Node."""
        loop = getattr(self, "_loop", None)
        if loop is not None and _loop.is_reactor(loop):
            _loop.reactor.unhandled(error, claimable)

    # -- Node's spellings, for every emitter ------------------------------------------------
    # A subclass that redefines one of the snake_case methods declares its alias again.

    off = remove_listener
    addListener = _PyeeEmitter.add_listener
    removeListener = remove_listener
    removeAllListeners = remove_all_listeners
    listenerCount = listener_count
    eventNames = event_names
    prependListener = prepend_listener
    prependOnceListener = prepend_once_listener
    rawListeners = raw_listeners
    setMaxListeners = set_max_listeners
    getMaxListeners = get_max_listeners


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
        capacity = arity(fn)[1]
        _capacities[fn] = capacity
        return capacity
    except TypeError:  # not weakly referenceable: work it out each time
        return arity(fn)[1]


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
