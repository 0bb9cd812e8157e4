"""Recovery with a browser client: the few lines of JavaScript from docs/recovery.md, in headless Chromium.

The server cuts the browser's connection twice while it broadcasts numbered messages; the page
reconnects with its last position, as the docs show, and must end up with every number once, in order.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ws import Recovery, WebSocketServer
from ws.http import Server

from .conftest import until_sync
from .fixtures.browser import run_js, start_chromium
from .fixtures.doc_blocks import block

WEB = Path(__file__).resolve().parent / "fixtures" / "web"


def page_script() -> str:
    """docs/recovery.md's browser snippet, as written there, with show() and reloadEverything() recording
    what the page got (binary payloads as the numbers they hold) and the test server's URL."""
    snippet = block("recovery-browser").code
    assert "wss://example.com/feed" in snippet and "socket.onclose" in snippet, "the snippet in docs/recovery.md changed shape"
    snippet = snippet.replace("`wss://example.com/feed${query}`", "args[0] + query").replace("setTimeout(connect, 1000)", "setTimeout(connect, 50)")
    snippet = snippet.replace("      ({ epoch, offset } = status);", "      window.statuses.push(status);\n      ({ epoch, offset } = status);")
    return (
        "window.got = []; window.statuses = [];\n"
        "function show(value) { window.got.push(typeof value === 'string' ? Number(value) : Number(new TextDecoder().decode(value))); }\n"
        "function reloadEverything() { window.got.push('resync'); }\n" + snippet + "\nreturn true;"
    )


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


@pytest.mark.interop("Chromium", "recovery")
def test_a_browser_that_loses_its_connection_gets_every_message_once_in_order(driver: Any) -> None:
    total = 600
    server = Server("127.0.0.1:0")
    server.static("/", WEB)
    feed = WebSocketServer(server=server, path="/feed", recovery=Recovery(window=60, max_messages=total))
    server.serve()
    try:
        driver.get(f"http://127.0.0.1:{server.port}/index.html")
        assert run_js(driver, page_script(), f"ws://127.0.0.1:{server.port}/feed") is True
        until_sync(lambda: driver.execute_script("return window.statuses.length") >= 1, timeout=20, what="the first status")

        def publish() -> None:
            for n in range(1, total + 1):
                feed.broadcast(str(n) if n % 3 else str(n).encode())  # every third one binary
                time.sleep(0.004)

        publisher = threading.Thread(target=publish)
        publisher.start()
        for cut in range(2):
            until_sync(lambda: len(driver.execute_script("return window.got")) > (cut + 1) * total // 3, timeout=20, what="messages before the cut")
            for sock in list(feed.clients or ()):
                sock.terminate()
            until_sync(lambda: driver.execute_script("return window.statuses.length") >= cut + 2, timeout=20, what="the browser came back")
        publisher.join(30)
        until_sync(lambda: len(driver.execute_script("return window.got")) >= total, timeout=20, what=f"all {total} numbers")
        time.sleep(0.2)
        got = driver.execute_script("return window.got")
        statuses = driver.execute_script("return window.statuses")
        assert got == list(range(1, total + 1))
        assert [s["recovered"] for s in statuses] == [False, True, True] and statuses[0]["reason"] == "new"
    finally:
        server.close()
