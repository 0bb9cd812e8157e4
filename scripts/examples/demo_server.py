"""The demo: a chat page (static/) and a WebSocket chat on /chat that broadcasts every message.

    python scripts/examples/demo_server.py [port]     # or PORT=8080; HOST=0.0.0.0 to share it

Open the printed URL in a few browser tabs (or run demo_client.py) and talk.
Only the chat page's own origin (and clients that send no Origin header,
such as demo_client.py) may open /chat: a page of another site is refused
with 403 (docs/security.md, Cross-Site WebSocket Hijacking).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ws import WebSocket, WebSocketServer
from ws import http
from ws.protocol.origins import page_origins

STATIC = Path(__file__).resolve().parent / "static"
#: A chat line is small; anything bigger is refused by the protocol layer (1009).
MAX_MESSAGE = 64 * 1024


def build(address: str) -> tuple[http.Server, Any]:
    """The HTTP server (page + /chat) and its WebSocketServer, not yet serving."""
    server = http.Server(address=address)
    server.static("/", STATIC)

    def on_connection(socket: WebSocket, request: Any) -> None:
        def on_message(event: Any) -> None:
            if isinstance(event.data, str) and event.data.strip():
                chat.broadcast(event.data)  # to everyone, the sender included

        socket.on("message", on_message)

    # No page may connect until the port is known; then the page's own origins, and clients without Origin.
    chat = WebSocketServer(server=server, path="/chat", max_payload=MAX_MESSAGE, allowed_origins=[None])
    chat.on("connection", on_connection)

    def allow_own_page(address: str) -> None:
        assert server.host is not None and server.port is not None
        chat.allowed_origins = [*page_origins(server.host, server.port, secure=server.secure), None]

    server.on("listening", allow_own_page)
    return server, chat


def main(argv: list[str]) -> None:
    port = argv[1] if len(argv) > 1 else os.environ.get("PORT", "8080")
    host = os.environ.get("HOST", "127.0.0.1")
    server, _ = build(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    server.serve(lambda address: print(f"demo chat on http://{address}/ (WebSocket: /chat)", flush=True))


if __name__ == "__main__":
    main(sys.argv)
