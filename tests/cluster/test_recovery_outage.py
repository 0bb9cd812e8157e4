"""A recorded path whose stream could not start (Redis down at that moment) starts once Redis is back.

Before the fix it never did: every later client waited for ever, with no status and no close,
and the live messages piled up for it.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect

import ws
from ws import WebSocketServer, http
from ws.backplane.redis_backplane import RedisBackplane

from ..backplane.conftest import RedisServer
from ..conftest import run, until


def test_a_recorded_path_attached_while_redis_is_down_serves_once_redis_is_back(redis_server: RedisServer) -> None:
    async def main() -> None:
        bp = RedisBackplane(redis_server.url, node_id="n1", reconnect_max_delay=0.2, command_timeout=1.0)
        await bp.start()
        redis_server.stop()
        await until(lambda: not bp.connected, what="the backplane saw Redis go")
        server = http.Server("127.0.0.1:0")
        errors: list[BaseException] = []
        wss = WebSocketServer(server=server, path="/feed", recovery=ws.Recovery(), backplane=bp)
        wss.on("error", errors.append)
        await server.serve_async()
        await until(lambda: errors, timeout=10, what="the start failed")
        redis_server.start()
        await until(lambda: bp.connected, timeout=10, what="reconnected")
        await asyncio.sleep(0.5)
        url = f"ws://127.0.0.1:{server.port}/feed"
        other = RedisBackplane(redis_server.url, node_id="n2")
        await other.start()
        async with connect(url) as conn:
            for n in range(50):
                await other.publish_recorded("path:/feed", b"\x01m%d" % n, ws.Recovery())
            try:
                first = await asyncio.wait_for(conn.recv(), 3)
            except asyncio.TimeoutError:
                first = None
            assert first is not None, "the client got nothing: no status, no message, no close"
            assert str(first).startswith('{"type":"recovery"'), first
        await other.close()
        server.close()

    run(main, timeout=40)
