"""The one seam between HTTP servers and WebSocket servers.

An HTTP server that can hand a connection over to a WebSocket server is an
``UpgradeHost``: ``ws.http.Server``, the standard library adapter
(``ws.http.stdlib``) and the named endpoints of the application styles.  A
WebSocket server registers itself with ``add_upgrade_handler(path,
handler)``; when an ``Upgrade: websocket`` request arrives on that path the
host stops reading HTTP from the connection and calls
``handler.handle_upgrade(request, transport, head)`` on its loop, as Node's
HTTP server emits ``'upgrade'`` and knows nothing more.

This module only declares the interface (``typing.Protocol``): it imports
nothing above ``ws.request``, so that HTTP never imports the WebSocket server.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from .request import Request

__all__ = ["UpgradeHandler", "PathFilter", "UpgradeHost"]


@runtime_checkable
class UpgradeHandler(Protocol):
    """What a host calls once an upgrade request for its path has been read.

    Called on the host's loop.  From then on the handler owns ``transport``:
    it answers the handshake (101 or a refusal) and sets its own protocol on
    it.  ``head`` holds the bytes the peer sent after the request head.
    """

    def handle_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None: ...


@runtime_checkable
class PathFilter(Protocol):
    """A catch-all handler (registered on ``path=None``) that takes only some paths."""

    def handles_path(self, path: str) -> bool: ...


@runtime_checkable
class UpgradeHost(Protocol):
    """An HTTP server that WebSocket servers attach to."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the host's connections (and so the handlers' sockets) run on."""
        ...

    @property
    def address(self) -> str | None:
        """``'host:port'`` (or a unix socket path) once listening, else ``None``."""
        ...

    def add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Route upgrades for ``path`` (``None``: every other path) to ``handler``."""
        ...

    def remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Undo ``add_upgrade_handler``; no error when ``handler`` is not registered there."""
        ...
