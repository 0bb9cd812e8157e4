"""One python-socketio node of the cluster comparison (``benchmarks/cluster_peers/run.py``).

    python psio_server.py --port P --redis redis://127.0.0.1:R/0 [--channel socketio] [--host uvicorn|aiohttp] [--loop asyncio|uvloop]

``socketio.AsyncServer`` with ``client_manager=socketio.AsyncRedisManager(url)``,
as its documentation sets it up, served by uvicorn (ASGI, its default
WebSocket implementation) or by aiohttp.  The same events as the Socket.IO
node (``socketio/server.js``): namespace ``/`` for subscribers (a handshake
query ``room=N`` enters room ``N``), namespace ``/pub`` for publishers
(``b`` payload: emit to everyone; ``r`` room, payload: emit to the room).
The event loop is chosen here (``--loop``), not by uvicorn, so that every
Python server in a run has the same one.  Prints ``READY`` once listening;
stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any
from urllib.parse import parse_qs

import socketio


def make_server(redis: str, channel: str, async_mode: str) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(
        async_mode=async_mode,
        client_manager=socketio.AsyncRedisManager(redis, channel=channel),
        transports=["websocket"],
    )

    @sio.on("connect")
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        room = parse_qs(environ.get("QUERY_STRING", "")).get("room")
        if room:
            await sio.enter_room(sid, room[0])

    @sio.on("b", namespace="/pub")
    async def broadcast(sid: str, payload: str) -> None:
        await sio.emit("m", payload)

    @sio.on("r", namespace="/pub")
    async def to_room(sid: str, room: str, payload: str) -> None:
        await sio.emit("m", payload, to=room)

    return sio


async def serve_uvicorn(port: int, redis: str, channel: str, stop: asyncio.Event) -> None:
    import uvicorn

    app = socketio.ASGIApp(make_server(redis, channel, "asgi"))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # SIGTERM is ours (below)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("uvicorn stopped before listening")
        await asyncio.sleep(0.02)
    print("READY", flush=True)
    await stop.wait()
    server.should_exit = True
    await task


async def serve_aiohttp(port: int, redis: str, channel: str, stop: asyncio.Event) -> None:
    from aiohttp import web

    app = web.Application()
    make_server(redis, channel, "aiohttp").attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", flush=True)
    await stop.wait()
    await runner.cleanup()


async def main(port: int, redis: str, channel: str, host: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await (serve_uvicorn if host == "uvicorn" else serve_aiohttp)(port, redis, channel, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", default="socketio", help="AsyncRedisManager's Redis channel")
    parser.add_argument("--host", choices=("uvicorn", "aiohttp"), default="uvicorn")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    options = parser.parse_args()
    if options.loop == "uvloop":
        import uvloop

        uvloop.run(main(options.port, options.redis, options.channel, options.host))
    else:
        asyncio.run(main(options.port, options.redis, options.channel, options.host))
