"""Attach a ``WebSocketServer`` to HTTP servers that are not ``ws.http.Server``.

Supported: the standard library's ``http.server.HTTPServer`` /
``ThreadingHTTPServer`` (and ``wsgiref``'s ``WSGIServer``, which is one),
served by the user's own ``serve_forever()``.

The adapter wraps the server's ``RequestHandlerClass``: once a handler has
parsed a request head, an upgrade on one of our paths is taken over -- the
socket is detached from the handler (which then ends without answering or
closing it), any bytes its buffered reader already holds become ``head``,
and the socket is handed to our event loop with
``loop.connect_accepted_socket``.  Every other request goes on to the
user's ``do_GET``/``do_POST`` untouched.  The handler thread never waits
for our loop, so a single-threaded ``HTTPServer`` keeps serving too.

TLS servers (a wrapped ``httpd.socket``) are refused: the TLS session
cannot move between the two stacks.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
import socketserver
import ssl
import weakref
from typing import Any
from urllib.parse import urlsplit

from .._runtime import loop as _loop
from .._runtime.net import format_host_port
from ..request import Request
from ..upgrade import PathFilter, UpgradeHandler

__all__ = ["adapt", "StdlibAdapter"]

logger = logging.getLogger("ws.server")

# One adapter per server, without writing onto the user's object; an entry
# goes away with its server.
_adapters: weakref.WeakKeyDictionary[socketserver.BaseServer, StdlibAdapter] = weakref.WeakKeyDictionary()


def adapt(server: object) -> StdlibAdapter | None:
    """The adapter for ``server`` (the same one each time), or ``None`` when its type is not supported."""
    if isinstance(server, socketserver.BaseServer) and isinstance(server.RequestHandlerClass, type):
        if issubclass(server.RequestHandlerClass, http.server.BaseHTTPRequestHandler):
            existing = _adapters.get(server)
            if existing is None:
                existing = _adapters[server] = StdlibAdapter(server)
            return existing
    return None


class StdlibAdapter:
    """A ``socketserver`` HTTP server as a ``ws.upgrade.UpgradeHost``."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self._loop = _loop.bind()
        self._handlers: dict[str | None, UpgradeHandler] = {}
        self._install()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the adopted sockets (and so the WebSockets) run on."""
        return self._loop

    @property
    def address(self) -> str:
        """The server's ``'host:port'``."""
        return format_host_port(self.host, self.port)

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])  # type: ignore[index]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    def add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Take over upgrade requests on ``path`` for ``handler`` (``None``: every other path)."""
        if path in self._handlers:
            raise ValueError(f"an upgrade handler is already registered on {path!r}")
        self._handlers[path] = handler

    def remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Undo ``add_upgrade_handler`` (no error when it is not registered)."""
        if self._handlers.get(path) is handler:
            del self._handlers[path]

    def _handler_for(self, path: str) -> UpgradeHandler | None:
        handler = self._handlers.get(path)
        if handler is None:
            handler = self._handlers.get(None)
            if isinstance(handler, PathFilter) and not handler.handles_path(path):
                return None
        return handler

    def _install(self) -> None:
        """Subclass the user's handler class once, adding the upgrade check."""
        adapter = self
        base = self.server.RequestHandlerClass

        class Handler(base):  # type: ignore[misc, valid-type]
            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                if adapter._takes_over(self):
                    self.close_connection = True
                    return False  # the request is ours: the handler stops here
                return True

        Handler.__name__ = Handler.__qualname__ = f"{base.__name__}WithWebSocket"
        Handler.__module__ = base.__module__
        Handler.__doc__ = base.__doc__
        self.server.RequestHandlerClass = Handler

    # -- in the handler's thread ----------------------------------------------------

    def _takes_over(self, handler: http.server.BaseHTTPRequestHandler) -> bool:
        if not handler.headers.get("Upgrade"):
            return False
        target = self._handler_for(urlsplit(handler.path).path or "/")
        if target is None:
            return False
        conn = handler.connection
        if isinstance(conn, ssl.SSLSocket):
            handler.send_error(501, "WebSocket upgrades are not supported on a TLS http.server")
            return True
        try:
            head = _buffered(handler, conn)
            request = Request(
                handler.command,
                handler.path,
                list(handler.headers.items()),
                http_version=handler.request_version.partition("/")[2] or "1.1",
                peername=handler.client_address,
            )
            sock = socket.socket(conn.family, conn.type, conn.proto, fileno=conn.detach())
        except Exception:
            logger.exception("could not take over the upgrade request")
            return False
        sock.setblocking(False)
        _loop.call(self._loop, self._start, sock, request, head, target)
        return True

    # -- on our loop ----------------------------------------------------------------

    def _start(self, sock: socket.socket, request: Request, head: bytes, target: UpgradeHandler) -> None:
        task = self._loop.create_task(self._hand_over(sock, request, head, target))
        task.add_done_callback(_report)

    async def _hand_over(self, sock: socket.socket, request: Request, head: bytes, target: UpgradeHandler) -> None:
        holder = _Holding()
        try:
            transport, _ = await self._loop.connect_accepted_socket(lambda: holder, sock)
        except Exception:
            sock.close()
            raise
        if holder.lost:
            return
        target.handle_upgrade(request, transport, head + bytes(holder.buffer))


class _Holding(asyncio.Protocol):
    """Keeps what arrives between adopting the socket and the handshake."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _buffered(handler: Any, conn: socket.socket) -> bytes:
    """Bytes the handler's reader read past the request head, without blocking for more."""
    reader = handler.rfile
    peek = getattr(reader, "peek", None)
    if peek is None:
        return b""
    conn.setblocking(False)
    try:
        return bytes(peek())
    except (BlockingIOError, OSError, ValueError):
        return b""


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("WebSocket hand-over from http.server failed", exc_info=task.exception())
