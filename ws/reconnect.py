"""``ReconnectingWebSocket``: a client that comes back after the server goes away.

Why a helper and not ``WebSocket(url, reconnect=True)``: a ``WebSocket`` is
one connection, as in browsers and Node -- ``ready_state`` CLOSED is final,
``'close'`` fires once, ``protocol``/``extensions`` describe one handshake.
Reconnecting inside it would break those promises for every listener.  The
helper is a separate EventEmitter that owns a sequence of ``WebSocket``
objects (``.socket`` is the current one) and forwards their events, adding
``'reconnect'`` between them.

Policy:

* after any close the user did not ask for, wait ``initial_delay`` seconds,
  then ``initial_delay * factor``, ... up to ``max_delay``; each delay is
  shortened by a random share of up to ``jitter`` (0.5: between half and
  all of it) so that many clients do not return in lockstep; the count
  restarts after a successful open;
* ``max_retries`` attempts in a row without an open (``None``: forever),
  then an ``'error'`` (``ReconnectError``) and the helper is CLOSED;
* ``send()`` while down queues the message (at most ``max_queued``, sent in
  order right after the next ``'open'``); beyond that, or with
  ``max_queued=0``, the message is refused with an ``'error'``
  (``QueueFullError`` / ``NotOpenError``) -- never silently lost;
* ``close()`` stops everything and drops the queue.

With ``recover=True`` (for a server path with ``recovery=``, see
``ws.recovery``) it also keeps the position of the last recorded message
and reconnects with it (``?offset=...&epoch=...``), so the server sends
exactly what was missed.  It takes the envelope off: ``'message'`` gets
the payload alone, ``position`` is the last position, ``recovered`` what
the last status said, and each status is a ``'recovery'`` event
(``ws.recovery.Status``).
"""

from __future__ import annotations

import asyncio
import collections
import random
import urllib.parse
from typing import Any, Callable, Iterable, Mapping

from .connection import client as _client
from ._runtime import loop as _loop
from ._runtime.emitter import MAX_HELD_EVENTS, report
from .connection.dom import EventTarget
from .events import ReadyState
from .exceptions import NotOpenError, QueueFullError, ReconnectError
from .connection.websocket import CLOSED, CONNECTING, OPEN, WebSocket
from .events import BINARY, TEXT, MessageEvent
from .backplane.history import Position
from .recovery import read_message

__all__ = ["ReconnectingWebSocket", "ReconnectError", "QueueFullError", "backoff_delay"]

#: Events of the inner socket that are passed on unchanged (``'message'`` too, unless ``recover=True``).
FORWARDED = ("error", "ping", "pong", "unexpected-response", "drain")


def backoff_delay(attempt: int, initial: float, maximum: float, factor: float, jitter: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before attempt ``attempt`` (1, 2, ...): exponential, capped, jittered."""
    base = min(maximum, initial * factor ** (attempt - 1))
    return base * (1.0 - jitter * rng())


class ReconnectingWebSocket(EventTarget):
    """A client ``WebSocket`` that reconnects with exponential backoff (see the module doc).

    Events: ``'open'``, ``'message'``, ``'close'`` ``(code, reason)`` (for
    every connection that ends), ``'reconnect'`` ``(attempt, delay)`` (a new
    attempt is scheduled), ``'error'``, ``'ping'``, ``'pong'``, and with
    ``recover=True`` ``'recovery'`` ``(status)``.  Other keyword options go
    to every ``WebSocket`` it creates.  ``'message'`` listeners follow the
    socket's rule (two required arguments: ``(data, is_binary)``), and
    ``onopen``/``onmessage``/``onclose``/``onerror`` and
    ``add_event_listener`` work as on a ``WebSocket``.
    """

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSED = CLOSED

    def __init__(
        self,
        url: str,
        protocols: str | Iterable[str] | Mapping[str, Any] | None = None,
        socket_options: Mapping[str, Any] | None = None,
        *,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        max_retries: int | None = None,
        max_queued: int = 100,
        recover: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        # Node's shapes, (url, {...}) and (url, protocols, {...}), as WebSocket; camelCase spellings
        # (maxRetries=...) arrive in ``options``.
        protocols, options = _client.client_arguments(protocols, socket_options, options)
        initial_delay = options.pop("initial_delay", initial_delay)
        max_delay = options.pop("max_delay", max_delay)
        max_retries = options.pop("max_retries", max_retries)
        max_queued = options.pop("max_queued", max_queued)
        _client.parse_url(url)
        protocols = _client.parse_protocols(protocols) or None
        if initial_delay < 0 or max_delay < initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 or None")
        if max_queued < 0:
            raise ValueError("max_queued must be >= 0")
        self.url = url
        self.protocols = protocols
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.factor = factor
        self.jitter = jitter
        self.max_retries = max_retries
        self.max_queued = max_queued
        self.recover = bool(options.pop("recover", recover))
        #: With ``recover=True``: the position of the last recorded message received (sent on reconnection).
        self.position: Position | None = None
        #: With ``recover=True``: whether the last connection recovered what was missed (``None`` before any status).
        self.recovered: bool | None = None
        self._options = options
        self._loop: asyncio.AbstractEventLoop = _loop.bind()
        self._ref = _loop.Ref(self._loop)
        self._hold_events = not _loop.in_loop(self._loop)
        self._queue: collections.deque[str | bytes] = collections.deque()
        self._failures = 0
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        self.socket: WebSocket | None = None
        self._ref.hold()
        if _loop.is_reactor(self._loop):
            # SIGINT/SIGTERM in a script stop the reconnecting too; else the 1001 that closes the
            # connection reads as a drop, and the process reconnects until the reactor's 5 s are up.
            _loop.reactor.on_shutdown(self._going_away)
        self._connect()  # in the caller's thread: bad options raise here

    # -- public API -----------------------------------------------------------------------

    @property
    def ready_state(self) -> ReadyState:
        """OPEN while a connection is up, CLOSED once stopped, CONNECTING otherwise."""
        if self._stopped:
            return CLOSED
        sock = self.socket
        return OPEN if sock is not None and sock.ready_state == OPEN else CONNECTING

    @property
    def queued(self) -> int:
        """Messages waiting for the next connection."""
        return len(self._queue)

    def send(self, data: str | bytes | bytearray | memoryview | MessageEvent) -> None:
        """Send now if connected, else queue (bounded); refusals are ``'error'`` events.

        A ``MessageEvent`` sends its data (an echo: ``send(msg)``).
        """
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            if not isinstance(data, MessageEvent):
                raise TypeError(f"data must be str or bytes-like, got {type(data).__name__}")
            data = data.data
        if not isinstance(data, (str, bytes)):
            data = bytes(data)
        _loop.call(self._loop, self._send, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the current connection and stop reconnecting; queued messages are dropped."""
        _loop.call(self._loop, self._close, code, reason)

    def ref(self) -> ReconnectingWebSocket:
        self._ref.ref()
        return self

    def unref(self) -> ReconnectingWebSocket:
        self._ref.unref()
        return self

    def __repr__(self) -> str:
        return f"<ReconnectingWebSocket {self.url} {self.ready_state.name} queued={len(self._queue)}>"

    # -- on the loop ------------------------------------------------------------------------

    def _send(self, data: str | bytes) -> None:
        sock = self.socket
        if not self._stopped and sock is not None and sock.ready_state == OPEN:
            sock.send(data)
        elif self._stopped or self.max_queued == 0:
            state = self.ready_state
            self._emit_event("error", NotOpenError(state, state.name))
        elif len(self._queue) >= self.max_queued:
            self._emit_event("error", QueueFullError(f"{self.max_queued} messages already wait for the connection; message refused"))
        else:
            self._queue.append(data)

    def _close(self, code: int, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sock = self.socket
        if sock is not None and sock.ready_state != CLOSED:
            sock.close(code, reason)  # its 'close' is forwarded, then we release
        else:
            self._done()

    def _going_away(self) -> None:
        """SIGINT/SIGTERM in a script: close with 1001 (going away) and reconnect no more."""
        self._close(1001, "")

    def _done(self) -> None:
        """Stopped for good: the process need not stay alive for us, nor a signal stop us."""
        _loop.reactor.remove_shutdown(self._going_away)
        self._ref.release()

    def _connect(self) -> None:
        self._timer = None
        if self._stopped:
            return
        sock = WebSocket(self._target(), self.protocols, **self._options)
        self.socket = sock
        for event in FORWARDED:
            sock.on(event, self._forwarder(event))
        sock.on("message", self._received if self.recover else self._forwarder("message"))
        sock.on("open", self._opened)
        sock.on("close", self._closed)

    def _target(self) -> str:
        """The URL of the next attempt: with ``recover=True`` and a position, it asks for what came after it."""
        position = self.position
        if not self.recover or position is None:
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in ("offset", "epoch")]
        query += [("offset", str(position.offset)), ("epoch", position.epoch)]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def _received(self, event: MessageEvent) -> None:
        """``recover=True``: note positions, take the envelope off, turn statuses into ``'recovery'``."""
        status, offset, payload = read_message(event.data)
        if status is not None:
            self.position, self.recovered = status.position, status.recovered
            self._emit_event("recovery", status)
            return
        if offset is not None and self.position is not None:
            if offset <= self.position.offset:
                return  # had it already (the server never sends one twice; this guards the promise here too)
            self.position = Position(offset, self.position.epoch)
            event = MessageEvent(BINARY if isinstance(payload, bytes) else TEXT, payload, event.target)
        self._emit_event("message", event)

    def _forwarder(self, event: str) -> Callable[..., None]:
        def forward(*args: Any) -> None:
            self._emit_event(event, *args)

        return forward

    def _opened(self) -> None:
        self._failures = 0
        sock = self.socket
        self._emit_event("open")
        while self._queue and sock is not None and sock.ready_state == OPEN:
            sock.send(self._queue.popleft())

    def _closed(self, code: int, reason: str) -> None:
        self._emit_event("close", code, reason)
        if self._stopped:
            self._done()
            return
        self._failures += 1
        if self.max_retries is not None and self._failures > self.max_retries:
            self._stopped = True
            self._queue.clear()
            self._emit_event("error", ReconnectError(f"gave up after {self.max_retries} reconnection attempts"))
            self._done()
            return
        delay = backoff_delay(self._failures, self.initial_delay, self.max_delay, self.factor, self.jitter)
        self._timer = self._loop.call_later(delay, self._connect)
        self._emit_event("reconnect", self._failures, delay)

    # -- events for listeners attached late (plain scripts) -------------------------------

    def _emit_event(self, event: str, *args: Any) -> None:
        """As ``WebSocket``: a script-made helper keeps events until someone listens."""
        if not self._hold_events:
            self.emit(event, *args)
        else:
            self._emit_kept(event, *args, limit=MAX_HELD_EVENTS)

    def _report_unhandled(self, error: Any, claimable: bool = False) -> None:
        report(f"unhandled 'error' event on ReconnectingWebSocket {self.url}: {error}")
        self._unhandled(error, claimable)

    # -- JavaScript spellings (the EventEmitter ones come from EventEmitter) --------------

    readyState = ready_state
