"""Every exception class ``ws`` defines, in one place.

The core errors derive from ``WebSocketError`` (what ``'error'`` listeners
receive).  The others keep the builtin base their callers catch:
``ProxyError`` is an ``OSError`` (a failed tunnel is a failed connect),
``InvalidMessage`` a ``ValueError`` and ``ConnectionNotFound`` a
``LookupError``.  The modules that raise them re-export them, so
``from ws.reconnect import ReconnectError`` keeps working.  One warning
category lives here too: ``MaxListenersExceededWarning``.
"""

from __future__ import annotations

import http
from typing import Iterable, Mapping

__all__ = [
    "WebSocketError",
    "ConnectError",
    "HandshakeError",
    "ProtocolError",
    "NotOpenError",
    "ConnectionClosed",
    "Reject",
    "ReconnectError",
    "QueueFullError",
    "ProxyError",
    "InvalidMessage",
    "ConnectionNotFound",
    "MaxListenersExceededWarning",
]


class WebSocketError(Exception):
    """Base class of the errors ``ws`` emits as ``'error'`` events."""


class ConnectError(WebSocketError):
    """The client could not reach the server (refused, DNS, timeout, TLS).

    ``address`` is the ``host:port`` that was tried; ``__cause__`` holds the
    underlying ``OSError``/``ssl.SSLError``.
    """

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class HandshakeError(WebSocketError):
    """The server answered the upgrade request with something other than 101.

    ``status``, ``headers`` (a list of ``(name, value)``) and ``body`` are
    what the server sent; ``status`` is ``None`` when the response was not
    valid HTTP or failed a WebSocket check (bad accept key, unknown
    subprotocol or extension).
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []
        self.body = body


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455 (or a configured limit); ``close_code`` is what we sent."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code

    @property
    def code(self) -> int:
        """Alias of ``close_code`` (Node's ``err[kStatusCode]``)."""
        return self.close_code


class NotOpenError(WebSocketError):
    """``send``/``ping``/``pong`` was called while the socket was not OPEN."""

    def __init__(self, ready_state: int, name: str) -> None:
        super().__init__(f"WebSocket is not open: readyState {ready_state} ({name})")
        self.ready_state = ready_state


class ConnectionClosed(WebSocketError):
    """``recv()``/``send_async()`` on a socket that has closed: ``code`` and ``reason`` of its ``'close'``."""

    def __init__(self, code: int, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(f"WebSocket closed with code {code}{detail}")
        self.code = code
        self.reason = reason


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc``, with its class when the text is bare."""
    text = str(exc)
    if not text or text == "None":
        return type(exc).__name__
    return text


class Reject(WebSocketError):
    """Raise it in ``verify_client`` to refuse a handshake with this HTTP status.

    ``raise Reject(403, 'Forbidden', {'X-Why': 'banned'})``: the client gets
    that status, reason (as a plain-text body) and headers; nothing is
    reported as a server error.
    """

    def __init__(
        self,
        status: int = 401,
        reason: str = "",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason or _phrase(status)
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        self.headers: list[tuple[str, str]] = list(pairs or [])


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ReconnectError(WebSocketError):
    """``ReconnectingWebSocket`` gave up: ``max_retries`` attempts in a row failed."""


class QueueFullError(WebSocketError):
    """``ReconnectingWebSocket.send()`` while down with ``max_queued`` messages already waiting."""


class ProxyError(OSError):
    """The proxy could not be reached or refused the tunnel (status in ``status``).

    An ``OSError``, as any other failure to reach the server; the client
    reports it as the ``__cause__`` of a ``ConnectError``.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidMessage(ValueError):
    """A message failed a route's ``message=`` validation (``ws.styles.routes``)."""


class ConnectionNotFound(LookupError):
    """No open connection has this id (it never existed or it closed; ``ws.styles.connections``)."""


class MaxListenersExceededWarning(RuntimeWarning):
    """An event got more listeners than ``set_max_listeners`` allows (10 by default): Node's leak warning.

    A ``warnings`` category, so ``-W error::ws.exceptions.MaxListenersExceededWarning``
    makes it fatal in tests and ``warnings.filterwarnings`` silences it.
    """
