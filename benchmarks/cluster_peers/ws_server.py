"""One ``ws`` node of the cluster comparison (``benchmarks/cluster_peers/run.py``): the public API as users write it.

    python ws_server.py --port P --redis redis://127.0.0.1:R/0 [--prefix ws:] [--recovery] [--loop asyncio|uvloop]
    python ws_server.py --check-recovery     # exit 0 when WebSocketServer takes recovery=ws.Recovery()

Paths (the same roles as the Socket.IO peers' events, see ``load.py``):

* ``/sub``: broadcast subscribers (they only listen).
* ``/room?room=N``: a member of room ``N``, through ``ws.styles.rooms``
  on the backplane (``room.subscribe(socket.send)``, as a handler would).
* ``/pub``: each message is ``WebSocketServer.broadcast`` to ``/sub`` on
  every node.
* ``/pubroom``: each message ``"N payload"`` is ``rooms.publish(N, payload)``.

Publishers have paths of their own so they are never in the broadcast set.
With ``--recovery`` the ``/sub`` server records its broadcasts
(``recovery=ws.Recovery()``): subscribers then receive a status, then
``"<offset>:<payload>"``; and the rooms are recorded
(``rooms.get(N, recovery=ws.Recovery())``): members then receive a status,
then ``{"room": N, "offset": ..., "data": payload}`` as JSON text.  Prints
``READY`` once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import ws
from ws import WebSocketServer, http
from ws.backplane import RedisBackplane
from ws.styles import rooms


def recovery_policy() -> Any:
    """``ws.Recovery()`` if this ``ws`` records broadcasts and rooms, else ``SystemExit`` saying what is missing."""
    recovery = getattr(ws, "Recovery", None)
    if recovery is None:
        raise SystemExit("ws has no Recovery: WebSocketServer(recovery=ws.Recovery()) is not in this ws yet")
    try:
        WebSocketServer(no_server=True, recovery=recovery()).close()
    except TypeError as exc:
        raise SystemExit(f"WebSocketServer does not take recovery= here: {exc}") from None
    try:
        rooms.Rooms().get("probe", recovery=recovery())
    except TypeError as exc:
        raise SystemExit(f"rooms.get does not take recovery= here: {exc}") from None
    return recovery()


async def main(port: int, redis: str, prefix: str, recovery: bool) -> None:
    policy = recovery_policy() if recovery else None
    options = {"recovery": policy} if policy is not None else {}
    # An object rather than the URL only for prefix=: two ws setups share the run's Redis without hearing each other.
    server = http.Server(f"127.0.0.1:{port}", backplane=RedisBackplane(redis, prefix=prefix))
    fanout = WebSocketServer(server=server, path="/sub", per_message_deflate=False, **options)
    members = WebSocketServer(server=server, path="/room", per_message_deflate=False)
    publish = WebSocketServer(server=server, path="/pub", per_message_deflate=False)
    publish_room = WebSocketServer(server=server, path="/pubroom", per_message_deflate=False)
    await server.serve_async()
    assert server.backplane is not None
    rooms.use_backend(rooms.BackplaneBackend(server.backplane, loop=asyncio.get_running_loop()))

    def member(socket: Any, request: Any) -> None:
        if policy is None:
            leave = rooms.get(request.query("room")).subscribe(socket.send)
        else:  # a recorded room's subscriber gets JSON values (a status, then envelopes)
            leave = rooms.get(request.query("room"), recovery=policy).subscribe(lambda m: socket.send(json.dumps(m)))
        socket.on("close", lambda *_: leave())

    def room_message(event: Any) -> None:
        room, _, payload = event.data.partition(" ")
        rooms.get(room, recovery=policy).publish(payload)

    members.on("connection", member)
    publish.on("connection", lambda socket, request: socket.on("message", lambda event: fanout.broadcast(event.data)))
    publish_room.on("connection", lambda socket, request: socket.on("message", room_message))
    print("READY", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for wss in (fanout, members, publish, publish_room):
        wss.close()
    await server.close_async()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int)
    parser.add_argument("--redis")
    parser.add_argument("--prefix", default="ws:", help="the backplane's key and channel prefix")
    parser.add_argument("--recovery", action="store_true",
                        help="WebSocketServer(..., recovery=ws.Recovery()) on /sub, and recorded rooms")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--check-recovery", action="store_true", help="only say whether the recovery option exists")
    options = parser.parse_args()
    if options.check_recovery:
        recovery_policy()
        sys.exit(0)
    if options.port is None or options.redis is None:
        parser.error("--port and --redis are required")
    if options.loop == "uvloop":
        import uvloop

        uvloop.run(main(options.port, options.redis, options.prefix, options.recovery))
    else:
        asyncio.run(main(options.port, options.redis, options.prefix, options.recovery))
