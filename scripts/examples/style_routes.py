"""Routed rooms: a chat with path parameters, validated messages, rooms and a token guard.

    python scripts/examples/style_routes.py [port]            # demo: Alice and Bob chat, then exit
    python scripts/examples/style_routes.py [port] --serve    # keep serving
    # ws://127.0.0.1:PORT/chat/room/general?username=Alice&token=alice-token
"""

import datetime
import sys
from typing import Literal, Optional

from pydantic import BaseModel

from ws.styles import rooms
from ws import WebSocket
from ws.styles.routes import require_auth
from ws import http
from ws.styles.routes import route_ws

args = [a for a in sys.argv[1:] if not a.startswith("--")]
port = int(args[0]) if args else 0
TOKENS = {"alice-token": "Alice", "bob-token": "Bob"}


class ClientMessage(BaseModel):
    type: Literal["message", "typing"]
    content: Optional[str] = None


server = http.Server(f"127.0.0.1:{port}")


@route_ws(server, "/chat/room/:room_id", message=ClientMessage, guard=require_auth(TOKENS.get))
async def room(ctx):
    username = ctx.user
    chat = rooms.get(ctx.params["room_id"])
    unsubscribe = chat.subscribe(ctx.send)
    chat.join(username)  # subscribers get {"type": "joined", ...}
    try:
        async for msg in ctx.messages:  # validated ClientMessage objects
            chat.publish(
                {
                    "type": msg.type,
                    "username": username,
                    "content": msg.content,
                    "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                }
            )
    finally:
        unsubscribe()
        chat.leave(username)


server.serve()
address = server.address
print("listening on", f"ws://{address}/chat/room/:room_id", flush=True)

if "--serve" not in sys.argv:
    url = f"ws://{address}/chat/room/general"
    running = {"intruder", "alice"}

    def finished(name):
        running.discard(name)
        if not running:
            server.close()

    intruder = WebSocket(url)  # no token: refused with 401 before any WebSocket opens
    intruder.on("error", lambda error: print("intruder:", error, flush=True))
    intruder.on("close", lambda code, reason: finished("intruder"))

    alice = WebSocket(url + "?token=alice-token")
    bob = None

    def show(name):
        def on_message(event):
            print(f"{name} sees: {event.data}", flush=True)
            if name == "Alice" and '"joined"' in event.data and '"Bob"' in event.data:
                alice.send('{"type": "message", "content": "Hello everyone!"}')
            if name == "Bob" and "Hello everyone" in event.data:
                bob.send('{"type": "shout"}')  # invalid: answered with {"error": ...}
            if name == "Bob" and '"error"' in event.data:
                bob.close()
            if name == "Alice" and '"left"' in event.data:
                alice.close()

        return on_message

    def alice_joined(event):
        global bob
        if bob is None and '"Alice"' in event.data:
            bob = WebSocket(url, headers={"Authorization": "Bearer bob-token"})
            bob.on("message", show("Bob"))

    alice.on("message", alice_joined)
    alice.on("message", show("Alice"))
    alice.on("close", lambda code, reason: finished("alice"))
