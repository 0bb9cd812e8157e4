"""A recorded room with a browser client: the JavaScript of docs/coming-from-justscale.md, in headless Chromium.

The snippet is taken from the document itself (only the URL is this server's). The server cuts
the browser's connection twice while a room receives numbered messages; the page comes back with
its last position, as the docs show, and must end up with every number once, in order.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ws import Recovery
from ws.http import Server
from ws.styles.rooms import Rooms
from ws.styles.routes import require_auth, route_ws

from .conftest import until_sync
from .fixtures.browser import run_js, start_chromium
from .fixtures.doc_blocks import block

WEB = Path(__file__).resolve().parent / "fixtures" / "web"


def doc_snippet() -> str:
    """The browser code of the rooms' recovery section of docs/coming-from-justscale.md."""
    snippet = block("rooms-recovery-browser").code
    assert "wss://example.com/chat/room/general" in snippet
    return snippet.replace("wss://example.com/chat/room/general", "${args[0]}").replace("setTimeout(connect, 1000)", "setTimeout(connect, 50)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


@pytest.mark.interop("Chromium", "recovery")
def test_a_browser_that_loses_its_connection_gets_every_message_of_the_room_once_in_order(driver: Any) -> None:
    total = 600
    server = Server("127.0.0.1:0")
    server.static("/", WEB)
    lobby = Rooms()
    recovery = Recovery(window=60, max_messages=total)
    sockets: list[Any] = []

    @route_ws(server, "/chat/room/:room_id", guard=require_auth({"secret": "Alice"}.get))
    async def room(ctx: Any) -> None:
        sockets.append(ctx.socket)
        chat = lobby.get(ctx.params["room_id"], recovery=recovery)
        unsubscribe = chat.subscribe(ctx.send, since=ctx.query)
        try:
            async for _ in ctx.messages:
                pass
        finally:
            unsubscribe()

    server.serve()
    page = "window.got = []; window.statuses = []; window.resyncs = 0; const token = 'secret';\n"
    page += "function show(data) { window.got.push(data); }\nfunction reloadRoom() { window.resyncs += 1; }\n"
    page += doc_snippet().replace("({ epoch, offset } = msg);", "({ epoch, offset } = msg); window.statuses.push(msg);")
    page += "\nreturn true;"
    try:
        driver.get(f"http://127.0.0.1:{server.port}/index.html")
        assert run_js(driver, page, f"ws://127.0.0.1:{server.port}/chat/room/general") is True
        until_sync(lambda: driver.execute_script("return window.statuses.length") >= 1, timeout=20, what="the first status")
        general = lobby.get("general")

        def publish() -> None:
            for n in range(1, total + 1):
                general.publish({"n": n})
                time.sleep(0.004)

        publisher = threading.Thread(target=publish)
        publisher.start()
        for cut in range(2):
            until_sync(lambda: len(driver.execute_script("return window.got")) > (cut + 1) * total // 3, timeout=20, what="messages before the cut")
            for sock in list(sockets):
                sock.terminate()
            until_sync(lambda: driver.execute_script("return window.statuses.length") >= cut + 2, timeout=20, what="the browser came back")
        publisher.join(30)
        until_sync(lambda: len(driver.execute_script("return window.got")) >= total, timeout=20, what=f"all {total} messages")
        time.sleep(0.2)
        got = driver.execute_script("return window.got")
        statuses = driver.execute_script("return window.statuses")
        assert [m["n"] for m in got] == list(range(1, total + 1))
        assert [s["recovered"] for s in statuses] == [False, True, True] and statuses[0]["reason"] == "new"
        assert all(s["room"] == "general" for s in statuses)
        assert driver.execute_script("return window.resyncs") == 0
    finally:
        server.close()
