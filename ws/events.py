"""Event objects: what ``'message'`` listeners and DOM-style listeners receive.

They use ``__slots__``: one is built per message, so they must be cheap.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection.websocket import WebSocket

__all__ = ["ReadyState", "Event", "MessageEvent", "CloseEvent", "ErrorEvent", "TEXT", "BINARY"]

TEXT = 1
BINARY = 2


class ReadyState(enum.IntEnum):
    """A connection's state, as ``readyState`` in browsers and Node's ``ws``.

    An ``IntEnum``, so ``sock.ready_state == 1`` and ``== WebSocket.OPEN``
    both hold and ``sock.ready_state.name`` is ``'OPEN'``.
    """

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Event:
    """A DOM-style event (``addEventListener`` listeners get one)."""

    __slots__ = ("type", "target")

    def __init__(self, type: str, target: WebSocket | None = None) -> None:
        self.type = type
        self.target = target

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type!r}>"


class MessageEvent:
    """One received message.

    ``type`` is ``1`` (text) or ``2`` (binary) as in JSH; ``data`` is ``str``
    for text and ``bytes`` for binary; ``is_binary`` says which.  ``str(event)``
    is the data and ``sock.send(event)`` sends it, so ``print(msg)`` and an
    echo by ``send(msg)`` do what was meant.
    """

    __slots__ = ("type", "data", "target")

    def __init__(self, type: int, data: str | bytes, target: WebSocket | None = None) -> None:
        self.type = type
        self.data = data
        self.target = target

    @property
    def is_binary(self) -> bool:
        return self.type == BINARY

    def __str__(self) -> str:
        """The data, so that ``print(event)`` and ``f"{event}"`` show the message (bytes as ``b'...'``)."""
        data = self.data
        return data if type(data) is str else str(data)

    def __repr__(self) -> str:
        kind = "binary" if self.type == BINARY else "text"
        return f"<MessageEvent {kind} {len(self.data)} {'bytes' if self.type == BINARY else 'chars'}>"

    isBinary = is_binary


class CloseEvent(Event):
    """``'close'`` as a DOM event: ``code``, ``reason``, ``was_clean``."""

    __slots__ = ("code", "reason", "was_clean")

    def __init__(self, code: int, reason: str, was_clean: bool, target: WebSocket | None = None) -> None:
        super().__init__("close", target)
        self.code = code
        self.reason = reason
        self.was_clean = was_clean

    @property
    def wasClean(self) -> bool:
        """The DOM's spelling of ``was_clean``."""
        return self.was_clean


class ErrorEvent(Event):
    """``'error'`` as a DOM event: ``error`` and its ``message``."""

    __slots__ = ("error", "message")

    def __init__(self, error: BaseException, target: WebSocket | None = None) -> None:
        super().__init__("error", target)
        self.error = error
        self.message = str(error)
