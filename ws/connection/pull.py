"""Python idioms on top of the EventEmitter: ``recv``, ``async for``, ``with``.

``WebSocket`` stays event-driven; this mixin adds pull-style reading for
code that prefers it.  The inbox (a bounded queue of ``MessageEvent``) is
created the first time ``recv``/iteration/``with``/``async with`` is used, as
one more ``'message'`` listener, so ``.on('message')`` listeners keep
receiving every message too.  When the inbox is full the socket stops
reading (TCP pushes back on the peer) until the consumer catches up: a
socket that uses these idioms must also consume with ``recv``/``async for``.

Every wait comes in two spellings with one return type each, so that what a
call returns never depends on where it was called from:

* in a thread (a plain script): ``recv()``, ``send_wait()``, ``wait_open()``,
  ``wait_closed()``, ``with`` block and return the value.  Inside a running
  event loop they raise ``RuntimeError`` naming the async spelling: blocking
  there would freeze the loop, and on the socket's own loop deadlock it.
* in a coroutine: ``await recv_async()``, ``send_async()``,
  ``wait_open_async()``, ``wait_closed_async()``, ``async with``, ``async
  for``.  They work on the socket's own loop and on any other loop (the wait
  then runs on the socket's loop and is awaited across threads).

The plain names are the blocking ones, as ``send()``/``close()`` are callable
from anywhere and ``_async`` marks a coroutine throughout ``ws``
(``http.Server.close_async``).
"""

from __future__ import annotations

import asyncio
import collections
from asyncio import current_task as _current_task
from types import TracebackType
from typing import Any, AsyncIterator, Callable, Coroutine, TypeVar

from .._runtime import loop as _loop
from .._runtime.flow import FlowGate
from ..events import MessageEvent, ReadyState
from ..exceptions import ConnectionClosed, NotOpenError, WebSocketError

__all__ = ["IterationMixin", "DEFAULT_INBOX_SIZE"]

T = TypeVar("T")
_Sock = TypeVar("_Sock", bound="IterationMixin")

#: Messages kept for ``recv()`` before the socket stops reading.
DEFAULT_INBOX_SIZE = 256

_CONNECTING, _OPEN, _CLOSED = ReadyState.CONNECTING, ReadyState.OPEN, ReadyState.CLOSED


class _Inbox:
    """Messages waiting for ``recv()``; lives on the socket's loop only."""

    __slots__ = ("items", "waiters", "closed", "gate", "sock", "replier")

    def __init__(self, sock: IterationMixin, limit: int) -> None:
        self.sock = sock
        self.items: collections.deque[MessageEvent] = collections.deque()
        self.waiters: list[asyncio.Future[None]] = []
        self.closed: tuple[int, str] | None = None
        # Too many unread messages stop the socket reading (TCP pushes back), until half are read.
        self.gate = FlowGate(limit, limit // 2, lambda: sock._set_paused(True), lambda: sock._set_paused(False))
        #: The task that last waited in ``recv_async()`` for the message it got: its next ``send``
        #: leaves at once rather than at the end of the loop turn (``replying``).
        self.replier: asyncio.Task[Any] | None = None

    def put(self, event: MessageEvent) -> None:
        items = self.items
        items.append(event)
        waiters = self.waiters
        if waiters:  # (_wake's work inline: a recv_async() waits for each message of a ping-pong)
            self.waiters = []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        if len(items) >= self.gate.high:  # (the gate's own test first: no call per message below it)
            self.gate.added(len(items), can_pause=not self.sock._paused)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._wake()

    def take(self) -> MessageEvent | None:
        """The oldest message, or ``None``; raises ``ConnectionClosed`` once drained after close."""
        items = self.items
        if items:
            event = items.popleft()
            if self.gate.paused:  # (the gate's own test first)
                self.gate.removed(len(items))
            return event
        if self.closed is not None:
            raise ConnectionClosed(*self.closed)
        return None

    def replying(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a coroutine's ``send`` is the reply of the task that waited for a message; asks once.

        A coroutine that waited in ``recv_async()`` and then sends is most
        likely answering (request/response, ping-pong): its frame is written
        at once, which spares the loop turn of the end-of-turn write.  Any
        other coroutine's sends (a burst from a sender task) still leave
        together at the end of the turn.
        """
        replier, self.replier = self.replier, None
        return replier is not None and replier is _current_task(loop)

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


async def _bounded(awaitable: Coroutine[Any, Any, T], timeout: float | None) -> T:
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s") from None


def _ok(*args: object) -> None:
    """An outcome of ``_first`` that ends the wait normally."""
    return None


def _as_error(error: object) -> BaseException:
    return error if isinstance(error, BaseException) else WebSocketError(str(error))


def _check_data(data: object) -> str | bytes:
    """``data`` as ``str``/``bytes``; a copy of other buffers, which the caller may reuse before we run.

    A ``MessageEvent`` is its data, as for ``send``.
    """
    if isinstance(data, MessageEvent):
        data = data.data
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be str or bytes-like, got {type(data).__name__}")


class IterationMixin:
    """``recv``, ``send_wait``/``send_async``, ``async for`` and context managers for ``WebSocket``."""

    # Provided by WebSocket.
    _loop: asyncio.AbstractEventLoop
    _ready_state: ReadyState
    _closed_with: tuple[int, str] | None
    _paused: bool
    _writing_paused: bool
    _inbox: _Inbox | None = None
    on: Callable[..., Any]
    remove_listener: Callable[..., Any]
    _set_paused: Callable[[bool], None]
    send: Callable[..., None]
    close: Callable[..., None]
    close_timeout: float

    # -- where a wait runs ------------------------------------------------------------

    def _block(self, wait: Coroutine[Any, Any, T], timeout: float | None, call: str, instead: str) -> T:
        """Run ``wait`` on the socket's loop and block this thread for its result.

        Inside a running loop this raises at once, naming the spelling to use
        ``instead``: on the socket's own loop the wait could never end.
        """
        if _loop._get_running_loop() is not None:
            wait.close()  # never started: no "never awaited" warning
            raise RuntimeError(f"{call} blocks the thread; inside asyncio use '{instead}'")
        return _loop.run_blocking(self._loop, _bounded(wait, timeout), timeout=None)

    async def _await(self, wait: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Await ``wait`` on the socket's loop, from that loop or from another one."""
        if asyncio.get_running_loop() is self._loop:
            return await _bounded(wait, timeout)
        future = asyncio.run_coroutine_threadsafe(_bounded(wait, timeout), self._loop)
        return await asyncio.wrap_future(future)

    # -- receiving ------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> MessageEvent:
        """Block until the next message; in a coroutine use ``await recv_async()``.

        Raises ``ConnectionClosed`` once the socket has closed and every
        message received before was taken, ``TimeoutError`` after ``timeout``
        seconds.
        """
        return self._block(self.recv_async(), timeout, "recv()", "await sock.recv_async()")

    async def recv_async(self, timeout: float | None = None) -> MessageEvent:
        """The next message; the coroutine form of ``recv()`` (same errors).

        On the socket's own loop without ``timeout`` this coroutine waits
        itself, on one future the read callback resolves, and a ``send`` its
        task makes after waiting is written at once (``_Inbox.replying``).
        """
        if timeout is not None or not _loop.in_loop(self._loop):
            # (On the socket's loop this very method then waits, without the timeout.)
            return await self._await(self.recv_async(), timeout)
        inbox = self._inbox or self._ensure_inbox()
        items = inbox.items
        if not items:
            loop = self._loop
            while not items:
                if inbox.closed is not None:
                    raise ConnectionClosed(*inbox.closed)
                fut: asyncio.Future[None] = loop.create_future()
                inbox.waiters.append(fut)
                try:
                    await fut
                except BaseException:
                    if fut in inbox.waiters:  # (woken, it is not: _wake empties the list)
                        inbox.waiters.remove(fut)
                    raise
            inbox.replier = _current_task(loop)
        if inbox.gate.paused:
            # There is a message: take() returns it (and may resume reading).
            return inbox.take()  # type: ignore[return-value]
        return items.popleft()

    def _ensure_inbox(self, limit: int = DEFAULT_INBOX_SIZE) -> _Inbox:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = _Inbox(self, limit)
            if self._ready_state == _CLOSED:
                inbox.close(*self._close_status())
            else:
                self.on("message", inbox.put)
                self.on("close", self._inbox_closed)
        return inbox

    def _inbox_closed(self, code: int, reason: str) -> None:
        if self._inbox is not None:
            self._inbox.close(code, reason)

    def __aiter__(self) -> AsyncIterator[MessageEvent]:
        """``async for event in sock:``; ends cleanly when the socket closes."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MessageEvent]:
        while True:
            try:
                yield await self.recv_async()
            except ConnectionClosed:
                return

    # -- sending --------------------------------------------------------------------

    def send_wait(self, data: str | bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """Send, then block while the write buffer is above its high-water mark.

        ``send()`` never waits; this is the blocking form of ``send_async()``.
        Raises ``NotOpenError`` (not an ``'error'`` event) when the socket is
        not OPEN and ``ConnectionClosed`` if it closes while waiting for
        ``'drain'``.
        """
        self._block(self._send_and_drain(_check_data(data)), timeout, "send_wait()", "await sock.send_async(data)")

    async def send_async(self, data: str | bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """Send, then wait while the write buffer is above its high-water mark (errors as ``send_wait``)."""
        await self._await(self._send_and_drain(_check_data(data)), timeout)

    async def _send_and_drain(self, data: str | bytes) -> None:
        if self._ready_state != _OPEN:
            raise NotOpenError(self._ready_state, self._ready_state.name)
        self.send(data)
        if self._writing_paused:
            await self._until("drain")

    async def _until(self, event: str) -> None:
        """Wait for ``event``; a ``'close'`` first raises ``ConnectionClosed``."""
        await self._first({event: _ok, "close": ConnectionClosed})

    async def _first(self, outcomes: dict[str, Callable[..., BaseException | None]]) -> None:
        """Wait for the first of several events; an outcome that returns an exception raises it."""
        fut: asyncio.Future[None] = self._loop.create_future()

        def listener(outcome: Callable[..., BaseException | None]) -> Callable[..., None]:
            def settle(*args: object) -> None:
                if fut.done():
                    return
                error = outcome(*args)
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

            return settle

        handlers = {event: listener(outcome) for event, outcome in outcomes.items()}
        self._listen(handlers)
        try:
            await fut
        finally:
            self._unlisten(handlers)

    # -- opening and closing ----------------------------------------------------------

    def wait_open(self, timeout: float | None = None) -> None:
        """Block until the socket is OPEN; the connect error (``ConnectError``, ...) is raised."""
        self._block(self._wait_open(), timeout, "wait_open()", "await sock.wait_open_async()")

    async def wait_open_async(self, timeout: float | None = None) -> None:
        """Wait until the socket is OPEN; the coroutine form of ``wait_open()``."""
        await self._await(self._wait_open(), timeout)

    async def _wait_open(self, keep_messages: bool = False) -> None:
        if keep_messages:
            # Pull-style code reads next: keep what arrives from now on (a
            # greeting can come in the same packet as the handshake response).
            self._ensure_inbox()
        if self._ready_state == _OPEN:
            return
        if self._ready_state != _CONNECTING:
            raise NotOpenError(self._ready_state, self._ready_state.name)
        await self._first({"open": _ok, "error": _as_error, "close": ConnectionClosed})

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until ``'close'`` was emitted; in a coroutine use ``await wait_closed_async()``."""
        self._block(self._wait_closed(), timeout, "wait_closed()", "await sock.wait_closed_async()")

    async def wait_closed_async(self, timeout: float | None = None) -> None:
        """Wait until ``'close'`` was emitted; the coroutine form of ``wait_closed()``."""
        await self._await(self._wait_closed(), timeout)

    async def _wait_closed(self) -> None:
        if self._ready_state == _CLOSED:
            return
        await self._first({"close": _ok})

    def _close_status(self) -> tuple[int, str]:
        """The code and reason of a socket that closed before the inbox existed."""
        return self._closed_with or (1006, "")

    def _listen(self, handlers: dict[str, Callable[..., None]]) -> None:
        for event, handler in handlers.items():
            self.on(event, handler)

    def _unlisten(self, handlers: dict[str, Callable[..., None]]) -> None:
        for event, handler in handlers.items():
            try:
                self.remove_listener(event, handler)
            except KeyError:
                pass

    def __enter__(self: _Sock) -> _Sock:
        """``with WebSocket(url) as sock:`` in a thread: blocks until OPEN (the connect error is raised)."""
        self._block(self._wait_open(keep_messages=True), None, "'with WebSocket(...)'", "async with WebSocket(...)")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        try:
            self.wait_closed(timeout=self.close_timeout + 1)
        except TimeoutError:
            pass  # the close timer has aborted the connection by now

    async def __aenter__(self: _Sock) -> _Sock:
        """``async with WebSocket(url) as sock:``: waits until OPEN (the connect error is raised)."""
        await self._await(self._wait_open(keep_messages=True), None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        try:
            await self.wait_closed_async(timeout=self.close_timeout + 1)
        except TimeoutError:
            pass
