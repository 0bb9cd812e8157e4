"""How a socket's listeners are called: Node's ``'message'`` signature, and the browser's ways of listening.

``'message'`` listeners (``WebSocket``, ``ReconnectingWebSocket``): one that
*requires* two positional parameters gets Node's ``(data, is_binary)``, any
other JSH's ``MessageEvent`` (:func:`adapt_message`).  It is decided once,
when the listener is added: a JSH listener costs per message what it did,
a Node one a call of its one-line adapter more (about 0.03 us).

Browser-style listening: ``addEventListener`` and the ``onopen``/``onmessage``/
``onclose``/``onerror`` properties.  As in browsers and Node's ``ws`` (its ``EventTarget`` mixin), the listener
gets one event object: ``MessageEvent`` (``.data``), ``CloseEvent``
(``.code``, ``.reason``, ``.was_clean``), ``ErrorEvent`` (``.error``,
``.message``) or ``Event`` (``'open'``).  Both forms are registrations on
the emitter, marked on their wrapper, so a socket keeps no state of its
own for them (its ``__dict__`` stays small, see ``WebSocket.__slots__``):

* ``add_event_listener(type, fn)`` adds ``fn`` once (adding it again does
  nothing, the DOM's rule); ``remove_event_listener`` removes it;
* ``sock.onmessage = fn`` replaces the previous handler of that property
  (it then runs after the listeners added meanwhile, as in Node's ``ws``),
  ``= None`` removes it, and reading it gives the handler or ``None``.
  Anything else than a callable or ``None`` is a ``TypeError`` (browsers
  ignore it silently).
"""

from __future__ import annotations

from typing import Any, Callable

from .._runtime.emitter import EventEmitter, adapt_arity, arity, direct
from ..events import BINARY, CloseEvent, ErrorEvent, Event

__all__ = ["EventTarget", "adapt_message"]


def adapt_message(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A ``'message'`` listener, called with the ``MessageEvent`` the socket emits.

    The rule, decided here once per listener: one that *requires* two
    positional parameters (``lambda data, is_binary: ...``, a method
    ``def on_message(self, data, is_binary)``, a ``functools.partial`` leaving
    two) gets Node's ``(data, is_binary)``; any other -- one parameter,
    none, ``*args``, or a second one with a default (``lambda evt,
    sock=sock: ...``, Python's way of binding a loop variable) -- gets JSH's
    ``MessageEvent``, as before.  Requiring more than two is an error now,
    not at the first message.
    """
    required, capacity = arity(fn)
    if required < 2:
        return adapt_arity(fn, capacity)
    if required > 2:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise TypeError(
            f"a 'message' listener takes one argument (the MessageEvent: lambda event: ...) or two (Node's "
            f"lambda data, is_binary: ...); {name} requires {required}"
        )

    def node_listener(event: Any) -> Any:
        return fn(event.data, event.type == BINARY)

    node_listener.listener = fn  # type: ignore[attr-defined]
    return node_listener




class _Mark:
    """What a DOM-style wrapper carries: the user's listener, and whether it is an ``on<type>`` handler."""

    __slots__ = ("listener", "handler")

    def __init__(self, listener: Callable[..., Any], handler: bool) -> None:
        self.listener = listener
        self.handler = handler


def _dom_event(target: Any, type: str, args: tuple[Any, ...]) -> Any:
    if type == "close":
        code, reason = args[0], args[1]
        return CloseEvent(code, reason, code != 1006, target)
    if type == "error":
        return ErrorEvent(args[0], target)
    return Event(type, target)


class EventTarget(EventEmitter):
    """An emitter of ``'open'``/``'message'``/``'close'``/``'error'``: Node's message signature, the DOM's listening."""

    def _adapt(self, event: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if event == "message":
            return adapt_message(fn)
        return adapt_arity(fn)

    def add_event_listener(self, type: str, listener: Callable[[Any], Any], *, once: bool = False) -> None:
        """Browser-style listener: called with one event object (``MessageEvent``, ``CloseEvent``...)."""
        if self._dom_wrapper(type, listener, handler=False) is None:
            self._add_dom(type, listener, once=once, handler=False)

    def remove_event_listener(self, type: str, listener: Callable[[Any], Any]) -> None:
        """Remove a listener added with ``add_event_listener`` (not an ``on<type>`` handler)."""
        wrapper = self._dom_wrapper(type, listener, handler=False)
        if wrapper is not None:
            self.remove_listener(type, wrapper)

    def _add_dom(self, type: str, listener: Callable[..., Any], *, once: bool, handler: bool) -> None:
        if not callable(listener):
            raise TypeError(f"a listener must be callable, got {_type_name(listener)}")
        call = adapt_arity(listener)
        if type == "message":
            direct_call = direct(call)  # the MessageEvent is the DOM event: no wrapping

            def dom_listener(*args: Any) -> Any:
                return direct_call(args[0])

        else:

            def dom_listener(*args: Any) -> Any:
                return call(_dom_event(self, type, args))

        dom_listener._ws_dom = _Mark(listener, handler)  # type: ignore[attr-defined]
        if once:
            self.once(type, dom_listener)
        else:
            self.on(type, dom_listener)

    def _dom_wrapper(self, type: str, listener: Callable[..., Any] | None, *, handler: bool) -> Callable[..., Any] | None:
        """The registered wrapper of ``listener`` (any, with ``None``) of the given kind, or ``None``."""
        for wrapper in self.listeners(type):
            mark = getattr(wrapper, "_ws_dom", None)
            if isinstance(mark, _Mark) and mark.handler is handler and (listener is None or mark.listener == listener):
                return wrapper
        return None

    def _get_handler(self, type: str) -> Callable[..., Any] | None:
        wrapper = self._dom_wrapper(type, None, handler=True)
        return None if wrapper is None else wrapper._ws_dom.listener  # type: ignore[attr-defined]

    def _set_handler(self, type: str, listener: Callable[..., Any] | None) -> None:
        if listener is not None and not callable(listener):
            raise TypeError(f"on{type} must be a function or None, got {_type_name(listener)}")
        wrapper = self._dom_wrapper(type, None, handler=True)
        if wrapper is not None:
            self.remove_listener(type, wrapper)
        if listener is not None:
            self._add_dom(type, listener, once=False, handler=True)

    @property
    def onopen(self) -> Callable[..., Any] | None:
        """The ``'open'`` handler (``Event``); assigning replaces it, ``None`` removes it."""
        return self._get_handler("open")

    @onopen.setter
    def onopen(self, listener: Callable[..., Any] | None) -> None:
        self._set_handler("open", listener)

    @property
    def onmessage(self) -> Callable[..., Any] | None:
        """The ``'message'`` handler (``MessageEvent``); assigning replaces it, ``None`` removes it."""
        return self._get_handler("message")

    @onmessage.setter
    def onmessage(self, listener: Callable[..., Any] | None) -> None:
        self._set_handler("message", listener)

    @property
    def onclose(self) -> Callable[..., Any] | None:
        """The ``'close'`` handler (``CloseEvent``); assigning replaces it, ``None`` removes it."""
        return self._get_handler("close")

    @onclose.setter
    def onclose(self, listener: Callable[..., Any] | None) -> None:
        self._set_handler("close", listener)

    @property
    def onerror(self) -> Callable[..., Any] | None:
        """The ``'error'`` handler (``ErrorEvent``); assigning replaces it, ``None`` removes it."""
        return self._get_handler("error")

    @onerror.setter
    def onerror(self, listener: Callable[..., Any] | None) -> None:
        self._set_handler("error", listener)

    # -- JavaScript spellings ---------------------------------------------------------------

    addEventListener = add_event_listener
    removeEventListener = remove_event_listener


def _type_name(value: object) -> str:
    return type(value).__name__
