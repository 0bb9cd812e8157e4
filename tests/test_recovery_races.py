"""Races of recovery across loops and while a path's stream starts (found in review; each failed before its fix).

* ASGI: the server's sockets live on the ASGI server's loop, its recovery on the loop it was made
  on.  A socket is known to the server one hop before the recovery has it: a message handed to
  every client in between must not reach it (it would come again with its catch-up).
* A client that connects while the stream starts gets the broadcasts made after it connected.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from websockets.asyncio.client import connect

import ws
from ws import WebSocketServer, http
from ws.asgi import ASGIApp
from ws.backplane import MemoryBackplane, MemoryHub
from ws.backplane.history import Position, Recovery

from .conftest import run
from .test_asgi import FakeASGI, scope


def texts(fake: FakeASGI) -> list[str]:
    return [m["text"] for m in fake.sent if m["type"] == "websocket.send"]


def test_asgi_a_returning_client_gets_its_status_first_and_each_message_once() -> None:
    async def main() -> None:
        hub = MemoryHub()
        wss = await asyncio.to_thread(
            lambda: WebSocketServer(no_server=True, path="/ws", backplane=MemoryBackplane(hub, node_id="asgi"), recovery=Recovery())
        )
        cluster_loop = wss.loop
        other = MemoryBackplane(hub, node_id="other")
        await other.start()
        app = ASGIApp(wss)
        # A first client rebinds the server to this loop and learns the epoch.
        first = FakeASGI({"type": "websocket.connect"})
        t1 = asyncio.ensure_future(app(scope(), first.receive, first.send))
        await first.sent_type("websocket.send")
        epoch = json.loads(texts(first)[0])["epoch"]
        for n in range(1, 4):
            await other.publish_recorded("path:/ws", b"\x01m%d" % n, Recovery())
        await first.sent_type("websocket.send", 4)
        # Stall the cluster's loop for a moment; meanwhile offset 4 is published and a client returns with offset 2.
        cluster_loop.call_soon_threadsafe(time.sleep, 0.3)
        await asyncio.sleep(0.05)
        await other.publish_recorded("path:/ws", b"\x01m4", Recovery())   # its delivery is queued on the cluster loop
        back = FakeASGI({"type": "websocket.connect"})
        t2 = asyncio.ensure_future(app(scope(query=f"offset=2&epoch={epoch}".encode()), back.receive, back.send))
        await back.sent_type("websocket.send", 3)
        await asyncio.sleep(0.3)
        got = texts(back)
        assert got[0].startswith('{"type":"recovery"'), got     # the status comes first
        assert got[1:] == ["3:m3", "4:m4"], got                  # then 3, 4 once each
        for fake in (first, back):
            fake.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(asyncio.gather(t1, t2), 5)
        wss.close()
        await other.close()

    run(main)


def test_asgi_returning_clients_under_steady_broadcasts_get_status_then_consecutive_offsets() -> None:
    async def main() -> None:
        wss = await asyncio.to_thread(lambda: WebSocketServer(no_server=True, path="/ws", recovery=Recovery()))
        app = ASGIApp(wss)
        first = FakeASGI({"type": "websocket.connect"})
        t1 = asyncio.ensure_future(app(scope(), first.receive, first.send))
        await first.sent_type("websocket.send")
        epoch = json.loads(first.sent[1]["text"])["epoch"]
        stop = threading.Event()

        def publisher() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                wss.broadcast(f"m{n}")
                time.sleep(0.0005)

        thread = threading.Thread(target=publisher)
        thread.start()
        await asyncio.sleep(0.2)
        bad = 0
        for attempt in range(40):
            back = FakeASGI({"type": "websocket.connect"})
            task = asyncio.ensure_future(app(scope(query=f"offset=1&epoch={epoch}".encode()), back.receive, back.send))
            await back.sent_type("websocket.send")
            await asyncio.sleep(0.05)
            back.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait_for(task, 5)
            got = [m["text"] for m in back.sent if m["type"] == "websocket.send"]
            offsets = [int(t.split(":", 1)[0]) for t in got if not t.startswith("{")]
            if not got[0].startswith('{"type":"recovery"') or offsets != list(range(2, 2 + len(offsets))):
                bad += 1
        stop.set()
        thread.join()
        first.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(t1, 5)
        wss.close()
        assert bad == 0

    run(main, timeout=60)


class Distant(MemoryBackplane):
    """History reads take a round trip, as Redis' do (the project's tests use the same)."""

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Any:
        await asyncio.sleep(0.3)
        return await super().history(channel, since, recovery)


def test_a_broadcast_made_after_a_client_connected_while_the_stream_starts_reaches_it() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/feed", recovery=ws.Recovery(), backplane=Distant(MemoryHub()))
        wss.on("connection", lambda sock, req: wss.broadcast("welcome"))
        await server.serve_async()
        async with connect(f"ws://127.0.0.1:{server.port}/feed") as conn:
            got = [await asyncio.wait_for(conn.recv(), 3)]
            try:
                got.append(await asyncio.wait_for(conn.recv(), 1))
            except asyncio.TimeoutError:
                pass
        server.close()
        assert got[1:] == ["1:welcome"], got

    run(main)
