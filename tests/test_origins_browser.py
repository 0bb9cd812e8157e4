"""Cross-Site WebSocket Hijacking in a real browser: headless Chromium, a victim server, another origin's page.

The "bank" server authenticates WebSockets by a session cookie in ``verify_client``, on two paths: ``/open``
without ``allowed_origins`` and ``/ws`` with its own origin only.  A second server on another port (another
origin, the same site, so the browser attaches the bank's cookie) serves the same probe page
(tests/fixtures/web/origin_probe.html), whose JavaScript opens ``new WebSocket(...)`` to the bank and
reports ``onopen``/``onmessage``/``onerror``/``onclose`` into the page.  The test reads both ends: what the
page saw, what ``verify_client`` saw, and the browser's own log of the handshake's answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ws import Reject, WebSocket, WebSocketServer
from ws.http import Server

from .conftest import until_sync
from .fixtures.browser import start_chromium

WEB = Path(__file__).resolve().parent / "fixtures" / "web"
PATIENCE = 20.0


class Bank:
    """The victim: a page and two cookie-authenticated WebSocket paths that echo, recording what they saw."""

    def __init__(self) -> None:
        self.server = Server("127.0.0.1:0")
        self.server.static("/", WEB)
        self.seen: list[tuple[str, str | None, str | None]] = []  # (path, Origin, Cookie) as verify_client saw them
        self.opened: list[str] = []
        self.open = self._endpoint("/open")
        self.protected = self._endpoint("/ws")
        self.server.serve()
        self.origin = f"http://127.0.0.1:{self.server.port}"
        self.protected.allowed_origins = [self.origin]  # set once the port is known, as ws serve does

    def _endpoint(self, path: str) -> WebSocketServer:
        def verify(info: Any) -> bool:
            cookie = info.req.get_header("cookie")
            self.seen.append((path, info.origin, cookie))
            if cookie != "session=alice":  # "authentication" by the session cookie alone: the vulnerable pattern
                raise Reject(401, "log in first")
            return True

        wss = WebSocketServer(server=self.server, path=path, verify_client=verify)

        def on_connection(sock: WebSocket, request: Any) -> None:
            self.opened.append(path)
            sock.on("message", lambda event: sock.send(f"{path} for alice: {event.data}"))

        wss.on("connection", on_connection)
        return wss

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


def probe(driver: Any, page: str, target: str) -> dict[str, Any]:
    """Load the probe page from ``page`` (an origin), opening a WebSocket to ``target``; what the page reported."""
    driver.get(f"{page}/origin_probe.html?target={target}")
    return until_sync(
        lambda: (report := driver.execute_script("return window.report")) and report["done"] and report,
        timeout=PATIENCE, what=f"the page of {page} to report on {target}",
    )


def handshake_log(driver: Any) -> list[str]:
    """The browser's log lines about WebSocket handshakes since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if "WebSocket" in entry["message"]]


@pytest.mark.interop("Chromium", "origin")
def test_another_origins_page_uses_the_cookie_unless_allowed_origins_refuses_it(driver: Any) -> None:
    bank = Bank()
    evil = Server("127.0.0.1:0")
    evil.static("/", WEB)
    evil.serve()
    elsewhere = f"http://127.0.0.1:{evil.port}"
    try:
        # Alice logs in to the bank: its page sets her session cookie (for host 127.0.0.1, every port).
        driver.get(f"{bank.origin}/origin_probe.html")
        driver.execute_script("document.cookie = 'session=alice; path=/'")
        handshake_log(driver)

        # 1. The bank's own page, on the protected path: connects, with the cookie, and talks.
        own = probe(driver, bank.origin, bank.url("/ws"))
        assert own["events"] == ["open", "message", "close"], own
        assert own["message"] == f"/ws for alice: hello from {bank.origin}"
        assert bank.seen == [("/ws", bank.origin, "session=alice")]

        # 2. The attack, where nothing checks Origin: the other origin's page gets alice's connection.
        hijack = probe(driver, elsewhere, bank.url("/open"))
        assert hijack["events"] == ["open", "message", "close"], hijack
        assert hijack["message"] == f"/open for alice: hello from {elsewhere}"
        assert bank.seen[-1] == ("/open", elsewhere, "session=alice")  # the browser sent her cookie along

        # 3. The same page against allowed_origins: 403 before verify_client, the page never opens.
        before = list(bank.seen), list(bank.opened)
        handshake_log(driver)
        refused = probe(driver, elsewhere, bank.url("/ws"))
        assert refused["events"] == ["error", "close"] and refused["close"] == {"code": 1006, "wasClean": False}, refused
        assert refused["message"] is None
        assert (bank.seen, bank.opened) == before  # verify_client was not called, no connection
        log = handshake_log(driver)
        assert any(f"WebSocket connection to '{bank.url('/ws')}' failed" in line and "403" in line for line in log), log

        # 4. Another name of the same server is another origin too (localhost is not 127.0.0.1).
        other_name = probe(driver, f"http://localhost:{bank.server.port}", bank.url("/ws"))
        assert "open" not in other_name["events"] and other_name["close"]["code"] == 1006, other_name
        assert (bank.seen, bank.opened) == before

        # 5. The bank's own page still connects.
        again = probe(driver, bank.origin, bank.url("/ws"))
        assert again["events"] == ["open", "message", "close"], again
        assert bank.opened == ["/ws", "/open", "/ws"]
    finally:
        evil.close()
        bank.server.close()
