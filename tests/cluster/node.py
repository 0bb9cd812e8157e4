"""One server process of a test cluster: the same handler code any single process would run.

    python -m tests.cluster.node REDIS_URL TTL

Serves, on a free port of 127.0.0.1, with ``backplane=RedisBackplane(REDIS_URL)``:

* ``/bc``: a plain ``WebSocketServer``; a client message ``{"broadcast": text}``
  broadcasts it (``"local": true``: this process only; ``"exclude_me": true``:
  not back to the sender);
* ``/other``: a second path, which must never see ``/bc``'s broadcasts;
* ``/room/:room?user=NAME``: the routes style with the process-wide rooms: the
  connection subscribes and joins, says ``{"ready": ...}`` once the cluster
  knows it, then publishes what it receives (``{"leave": true}`` leaves);
* ``/direct``: the connect/disconnect style; ``{"whoami": 1}`` answers the
  connection id, ``{"to": id, "data": x}`` sends by id (anywhere in the
  cluster), ``{"close": id, "code": c}`` closes by id; the outcome is answered;
* HTTP ``GET /state``: presence and the errors seen; ``GET /broadcast?text=``
  and ``GET /publish?room=&text=`` publish from the server side.

Prints ``READY <port> <node id>`` once listening; stops on SIGTERM, or by
itself after two minutes so that a failed test leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from ws import WebSocket, WebSocketServer, http
from ws.backplane import BackplaneError, RedisBackplane
from ws.exceptions import ConnectionNotFound
from ws.styles import rooms
from ws.styles.connections import EventContext, websocket
from ws.styles.routes import RouteContext, route_ws


async def main(url: str, ttl: float) -> None:
    backplane = RedisBackplane(url, presence_ttl=ttl, connect_timeout=1.0, command_timeout=1.0, reconnect_max_delay=0.3)
    server = http.Server("127.0.0.1:0", backplane=backplane)
    errors: list[str] = []

    def record(exc: BaseException) -> None:
        cause = exc.__cause__
        errors.append(f"{type(exc).__name__}: {exc}" + (f" (cause: {type(cause).__name__})" if cause else ""))

    bc = WebSocketServer(server=server, path="/bc")
    other = WebSocketServer(server=server, path="/other")
    for wss in (bc, other):
        wss.on("error", record)

    def on_bc(socket: WebSocket, request: Any) -> None:
        def on_message(event: Any) -> None:
            command = json.loads(event.data)
            bc.broadcast(command["broadcast"], local=bool(command.get("local")), exclude=socket if command.get("exclude_me") else None)

        socket.on("message", on_message)

    bc.on("connection", on_bc)

    @route_ws(server, "/room/:room")
    async def room(ctx: RouteContext) -> None:
        chat = rooms.get(ctx.params["room"])
        user = ctx.query.get("user")
        unsubscribe = chat.subscribe(ctx.send)
        chat.join(user, announce=False)
        ctx.send({"ready": await chat.members_async()})  # members_async waits for this node's changes
        try:
            async for message in ctx.messages:
                if isinstance(message, dict) and message.get("leave"):
                    break
                chat.publish(message)
        finally:
            unsubscribe()
            chat.leave(user, announce=False)

    direct = websocket(server, "direct")
    direct.wss.on("error", record)

    @direct.on("message")
    async def on_direct(ctx: EventContext) -> None:
        command = ctx.req.json()
        me = ctx.req.connection_id
        try:
            if "whoami" in command:
                await direct.send_async(me, {"id": me})
            elif "to" in command:
                await direct.send_async(command["to"], command["data"])
                await direct.send_async(me, {"sent": command["to"]})
            elif "close" in command:
                await direct.close_async(command["close"], command.get("code", 1000), "closed by id")
                await direct.send_async(me, {"closed": command["close"]})
        except ConnectionNotFound as exc:
            await direct.send_async(me, {"error": "ConnectionNotFound", "message": str(exc)})

    @server.get("/state")
    async def state(ctx: Any) -> None:
        answer: dict[str, Any] = {"node": backplane.node_id, "connected": backplane.connected, "errors": errors}
        try:  # presence reads fail (BackplaneError) while Redis is down
            answer.update({
                "bc": await bc.count_async(),
                "other": await other.count_async(),
                "total": await bc.total_count_async(),
                "direct": await direct.connections_async(),
                "rooms": {name: await rooms.members_async(name) for name in await rooms.names_async()},
                "nodes": await backplane.nodes(),
            })
        except BackplaneError as exc:
            answer["presence_error"] = str(exc)
        ctx.json(200, answer)

    @server.get("/broadcast")
    def broadcast(ctx: Any) -> None:
        local = ctx.request.query("local") == "1"
        ctx.json(200, {"local": bc.broadcast(ctx.request.query("text") or "", local=local)})

    @server.get("/publish")
    def publish(ctx: Any) -> None:
        ctx.json(200, {"local": rooms.publish(ctx.request.query("room") or "", ctx.request.query("text") or "")})

    await server.serve_async()
    rooms.default.backend.on("error", record)  # type: ignore[attr-defined]
    print("READY", server.port, backplane.node_id, flush=True)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    try:
        await asyncio.wait_for(stop, 120)
    except asyncio.TimeoutError:
        pass
    for wss in (bc, other, direct.wss):
        wss.close()
    await server.close_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
