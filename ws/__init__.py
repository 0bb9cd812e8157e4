"""``ws``: the JavaScript WebSocket API for Python.

    from ws import WebSocket
    ws = WebSocket('ws://127.0.0.1:8080/ws')
    ws.on('open', lambda: ws.send('hello'))
    ws.on('message', lambda evt: print(evt.data))

``WebSocket`` (client and accepted sockets) and ``WebSocketServer`` are
pyee EventEmitters.  The protocol is ``websockets``' Sans-I/O layer, HTTP is
h11 (``ws.http``), I/O is asyncio: objects made inside a running loop live
on it; objects made in a plain script live on one shared background loop.

This module is the core API only, one spelling per name (``__all__``).  The
HTTP server is ``ws.http``, the ASGI integration ``ws.asgi`` and the
application styles ``ws.styles.*``.  Names are imported on first use
(PEP 562), so ``import ws.http`` or ``import ws.protocol``, which run this
file first, do not load the WebSocket server or the connection code.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._runtime import log as _log
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._runtime.log import disable_debug, enable_debug
    from .connection.websocket import WebSocket
    from .events import CloseEvent, ErrorEvent, Event, MessageEvent, ReadyState
    from .exceptions import (
        ConnectError,
        ConnectionClosed,
        HandshakeError,
        NotOpenError,
        ProtocolError,
        QueueFullError,
        ReconnectError,
        Reject,
        WebSocketError,
    )
    from .backplane.history import Position, Recovery
    from .reconnect import ReconnectingWebSocket
    from .request import Request
    from .protocol.handshake import VerifyInfo
    from .server import WebSocketServer

__all__ = [
    "WebSocket",
    "WebSocketServer",
    "ReconnectingWebSocket",
    "Request",
    "VerifyInfo",
    "ReadyState",
    "Event",
    "MessageEvent",
    "CloseEvent",
    "ErrorEvent",
    "WebSocketError",
    "ConnectError",
    "ConnectionClosed",
    "HandshakeError",
    "ProtocolError",
    "NotOpenError",
    "Reject",
    "ReconnectError",
    "QueueFullError",
    "Recovery",
    "Position",
    "enable_debug",
    "disable_debug",
    "__version__",
]

#: public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "WebSocket": "ws.connection.websocket",
    "WebSocketServer": "ws.server",
    "ReconnectingWebSocket": "ws.reconnect",
    "Request": "ws.request",
    "VerifyInfo": "ws.protocol.handshake",
    "ReadyState": "ws.events",
    "Event": "ws.events",
    "MessageEvent": "ws.events",
    "CloseEvent": "ws.events",
    "ErrorEvent": "ws.events",
    "WebSocketError": "ws.exceptions",
    "ConnectError": "ws.exceptions",
    "ConnectionClosed": "ws.exceptions",
    "HandshakeError": "ws.exceptions",
    "ProtocolError": "ws.exceptions",
    "NotOpenError": "ws.exceptions",
    "Reject": "ws.exceptions",
    "ReconnectError": "ws.exceptions",
    "QueueFullError": "ws.exceptions",
    "Recovery": "ws.backplane.history",
    "Position": "ws.backplane.history",
    "enable_debug": "ws._runtime.log",
    "disable_debug": "ws._runtime.log",
}

#: Names ``ws`` exported before its API was cut to the core: where they live now.
_MOVED: dict[str, str] = {
    "CONNECTING": "WebSocket.CONNECTING (or ws.ReadyState.CONNECTING)",
    "OPEN": "WebSocket.OPEN (or ws.ReadyState.OPEN)",
    "CLOSING": "WebSocket.CLOSING (or ws.ReadyState.CLOSING)",
    "CLOSED": "WebSocket.CLOSED (or ws.ReadyState.CLOSED)",
    "TextMessage": "WebSocket.TextMessage",
    "BinaryMessage": "WebSocket.BinaryMessage",
    "context": "ws.styles.handlers.context",
    "create_websocket": "ws.styles.handlers.create_websocket",
    "createWebsocket": "ws.styles.handlers.createWebsocket",
    "get_clients": "ws.styles.handlers.get_clients",
    "getClients": "ws.styles.handlers.getClients",
    "get_client": "ws.styles.handlers.get_client",
    "getClient": "ws.styles.handlers.getClient",
    "get_client_by_handler": "ws.styles.handlers.get_client_by_handler",
    "getClientByHandler": "ws.styles.handlers.getClientByHandler",
    "require_auth": "ws.styles.routes.require_auth",
    "rooms": "ws.styles.rooms (from ws.styles import rooms)",
    "RequestSocket": "ws.request.RequestSocket",
}


#: The public subpackages and modules, so that ``import ws; ws.http.Server`` works.
_SUBMODULES = frozenset(
    {"asgi", "cli", "connection", "events", "exceptions", "forwarded", "http", "protocol", "reconnect", "request", "server", "styles", "upgrade"}
)


def __getattr__(name: str) -> _typing.Any:
    """Import a public name on first use (then it is an ordinary module global)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f"ws.{name}")
    if name in _MOVED:
        raise AttributeError(f"module 'ws' has no attribute {name!r}: it moved to {_MOVED[name]}")
    raise AttributeError(f"module 'ws' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The core names and the public submodules, nothing private."""
    return sorted({*__all__, *_SUBMODULES})


_log.configure_from_env()
