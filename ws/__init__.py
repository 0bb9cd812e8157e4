"""``ws``: the JavaScript WebSocket API for Python.

    from ws import WebSocket
    ws = WebSocket('ws://127.0.0.1:8080/ws')
    ws.on('open', lambda: ws.send('hello'))
    ws.on('message', lambda evt: print(evt.data))

``WebSocket`` (client and accepted sockets) and ``WebSocketServer`` are
pyee EventEmitters.  The protocol is ``websockets``' Sans-I/O layer, HTTP is
h11 (``ws.http``), I/O is asyncio: objects made inside a running loop live
on it; objects made in a plain script live on one shared background loop.
"""

from __future__ import annotations

from ._runtime import compat as _compat
from ._runtime import log as _log
from .styles import rooms
from ._runtime.log import disable_debug, enable_debug
from .events import BINARY, TEXT, CloseEvent, ErrorEvent, Event, MessageEvent
from .exceptions import (
    ConnectError,
    ConnectionClosed,
    HandshakeError,
    NotOpenError,
    ProtocolError,
    Reject,
    WebSocketError,
)
from .styles.handlers import context, create_websocket, get_client, get_client_by_handler, get_clients
from .request import Request, RequestSocket
from .styles.routes import require_auth
from .server import VerifyInfo, WebSocketServer
from .connection.websocket import CLOSED, CLOSING, CONNECTING, OPEN, WebSocket
from .reconnect import ReconnectingWebSocket

__version__ = "0.1.0"

TextMessage = TEXT
BinaryMessage = BINARY

_log.configure_from_env()
_compat.install(WebSocket, WebSocketServer, Request, RequestSocket, MessageEvent, CloseEvent, ReconnectingWebSocket)
_compat.export_functions(globals())

__all__ = [
    "WebSocket",
    "WebSocketServer",
    "ReconnectingWebSocket",
    "Request",
    "VerifyInfo",
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
    "CONNECTING",
    "OPEN",
    "CLOSING",
    "CLOSED",
    "TextMessage",
    "BinaryMessage",
    "context",
    "create_websocket",
    "get_clients",
    "get_client",
    "get_client_by_handler",
    "require_auth",
    "rooms",
    "enable_debug",
    "disable_debug",
    "__version__",
]
