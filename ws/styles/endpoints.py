"""Declarative endpoints: a map of names to ``on_open``/``on_message``/``on_close``.

    from ws.styles.endpoints import websockets

    websockets(server, {                       # seed idiom: server.websockets({...})
        'chat': {
            'on_open': lambda connection: ...,
            'on_message': lambda message, connection: connection.send({'echo': message}),
            'on_close': lambda code, reason, connection: ...,
        },
    }, prefix='/api/_websockets')

Each name becomes one ``WebSocketServer`` on ``prefix/name`` of the HTTP
server; the handlers are ordinary listeners of the accepted sockets, so
there is no second framing or server stack.  Messages arrive JSON-decoded
when they are JSON, and ``connection.send`` JSON-encodes dicts and lists.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Mapping

from .._runtime.emitter import invoke
from . import cluster as _cluster
from .messages import decode, encode
from ..request import Request
from ..server import WebSocketServer
from ..connection.websocket import WebSocket

__all__ = ["Connection", "websockets", "DEFAULT_PREFIX", "HANDLER_NAMES"]

DEFAULT_PREFIX = "/api/_websockets"
HANDLER_NAMES = ("on_open", "on_message", "on_close")

logger = logging.getLogger("ws.endpoints")


class Connection:
    """One client of a declared endpoint: ``id``, ``request``, ``query``, ``send``, ``close``."""

    __slots__ = ("id", "endpoint", "request", "query", "socket")

    def __init__(self, endpoint: str, socket: WebSocket, request: Request) -> None:
        self.id = uuid.uuid4().hex
        self.endpoint = endpoint
        self.socket = socket
        self.request = request
        self.query = {name: values[0] for name, values in request.params.items() if values}

    def send(self, message: Any) -> None:
        """Send ``message``: text/bytes as they are, dicts, lists and other values as JSON."""
        self.socket.send(encode(message))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (closing handshake with ``code`` and ``reason``)."""
        self.socket.close(code, reason)

    @property
    def remote_address(self) -> str | None:
        return self.socket.remote_address

    def __repr__(self) -> str:
        return f"<Connection {self.id} on {self.endpoint!r}>"


def check_handlers(name: Any, handlers: Any) -> dict[str, Callable[..., Any]]:
    """Validate one endpoint definition; raise ``TypeError`` naming what is wrong."""
    if not isinstance(name, str) or not name or any(c in name for c in "?#\\ \t\r\n"):
        raise TypeError(f"endpoint name must be a non-empty string usable in a URL path, got {name!r}")
    if not isinstance(handlers, Mapping):
        raise TypeError(f"endpoint {name!r} must map handler names to functions, got {type(handlers).__name__}")
    result: dict[str, Callable[..., Any]] = {}
    for key, fn in handlers.items():
        if key not in HANDLER_NAMES:
            raise TypeError(f"endpoint {name!r}: unknown key {key!r} (expected {', '.join(HANDLER_NAMES)})")
        if not callable(fn):
            raise TypeError(f"endpoint {name!r}: {key} must be callable, got {type(fn).__name__}")
        result[key] = fn
    return result


def join_path(prefix: str, name: str) -> str:
    """``'/api/_websockets'`` + ``'chat'`` -> ``'/api/_websockets/chat'``."""
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"prefix must be a string starting with '/', got {prefix!r}")
    return prefix.rstrip("/") + "/" + name.strip("/")


def websockets(
    server: Any, endpoints: Mapping[str, Mapping[str, Callable[..., Any]]], prefix: str = DEFAULT_PREFIX, **options: Any
) -> dict[str, WebSocketServer]:
    """Serve every endpoint of ``endpoints`` on ``server`` under ``prefix``.

    The seed idiom ``server.websockets({...})`` is spelled
    ``websockets(server, {...})``: the HTTP server does not import the styles.

    Everything is validated before anything is registered, so a bad
    definition leaves the server unchanged.  ``options`` go to each
    ``WebSocketServer`` (``max_payload``, ``per_message_deflate``...).
    Returns the ``WebSocketServer`` of each name.
    """
    if not isinstance(endpoints, Mapping):
        raise TypeError(f"endpoints must be a mapping of name -> handlers, got {type(endpoints).__name__}")
    checked = {name: check_handlers(name, handlers) for name, handlers in endpoints.items()}
    paths = {name: join_path(prefix, name) for name in checked}
    servers: dict[str, WebSocketServer] = {}
    _cluster.adopt(server)
    try:
        for name, handlers in checked.items():
            wss = WebSocketServer(server=server, path=paths[name], **options)
            wss.on("connection", _acceptor(name, handlers))
            servers[name] = wss
    except Exception:
        for wss in servers.values():
            wss.close()
        raise
    return servers


def _acceptor(name: str, handlers: dict[str, Callable[..., Any]]) -> Callable[[WebSocket, Request], None]:
    on_open = handlers.get("on_open")
    on_message = handlers.get("on_message")
    on_close = handlers.get("on_close")

    def accept(socket: WebSocket, request: Request) -> None:
        connection = Connection(name, socket, request)
        if on_message is not None:
            socket.on("message", lambda event: invoke(on_message, decode(event.data), connection, what=f"{name}.on_message"))
        if on_close is not None:
            socket.on("close", lambda code, reason: invoke(on_close, code, reason, connection, what=f"{name}.on_close"))
        # A peer's protocol error ends in 'close'; keep it out of the error log.
        socket.on("error", lambda exc: logger.debug("endpoint %s: %s", name, exc))
        if on_open is not None:
            invoke(on_open, connection, what=f"{name}.on_open")

    return accept
