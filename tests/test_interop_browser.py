"""Interop with a real browser: headless Chromium's own ``WebSocket`` against our server.

The page (tests/fixtures/web) is served by ``ws.http.Server.static``; the
tests drive it with Selenium and check both ends: what the browser saw and
what our ``WebSocketServer`` saw.  Our servers run on the background reactor
loop, as in a plain script, while Selenium blocks the test thread.

The same page is also served over ``https://`` with WebSocket over
``wss://`` (one ``Server(ssl=...)``), its certificate issued by the test
run's trustme CA.  That browser trusts only this certificate's public key
(``--ignore-certificate-errors-spki-list``); a second server with another
certificate from the same CA must be refused, which shows the browser
really verifies.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ws import Reject, WebSocket, WebSocketServer
from ws.http import Server

from .conftest import until_sync
from .fixtures.browser import run_js, spki_sha256, start_chromium
from .fixtures.node_peer import pattern
from .fixtures.tls import TestPKI

WEB = Path(__file__).resolve().parent / "fixtures" / "web"
ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
pki = TestPKI()


# Server-side events arrive on the reactor thread; the browser is slower than our own clients.
PATIENCE = 20.0


def browser_test(*features: str) -> Any:
    return pytest.mark.interop("Chromium", *features)


class Site:
    """The test server: the harness page and several WebSocket endpoints, recording what happens.

    With ``ssl_context`` it serves ``https://`` and ``wss://`` on its one port.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = Server("127.0.0.1:0", ssl=ssl_context)
        self.server.static("/", WEB)
        self.log: list[tuple[str, str, Any]] = []  # (path, event, value); list.append is thread-safe
        self.server.on("request", lambda ctx: self.log.append((ctx.request.path, "http", ctx.request.secure)))
        self.sockets: dict[str, list[WebSocket]] = {}
        for path, options in (
            ("/echo", {}),
            ("/deflate", {"per_message_deflate": True, "max_payload": 4 * MiB}),  # over the 1 MiB compressed default
            ("/private", {"verify_client": self._refuse}),
            ("/chat", {}),
        ):
            wss = WebSocketServer(server=self.server, path=path, handle_protocols=self._choose, **options)
            wss.on("connection", self._connected(path))
            if path == "/chat":
                self.chat = wss
        self.server.serve()
        scheme = "s" if ssl_context is not None else ""
        self.url = f"http{scheme}://127.0.0.1:{self.server.port}"
        self.ws_url = f"ws{scheme}://127.0.0.1:{self.server.port}"

    @staticmethod
    def _choose(offered: list[str], request: Any) -> str | None:
        return "b" if "b" in offered else None

    def _refuse(self, info: Any) -> bool:
        self.log.append(("/private", "refused", info.origin))
        raise Reject(403, "Forbidden: no browsers here")

    def _connected(self, path: str) -> Callable[[WebSocket, Any], None]:
        def on_connection(sock: WebSocket, request: Any) -> None:
            self.sockets.setdefault(path, []).append(sock)
            opened = (sock.protocol, sock.extensions, request.get_header("origin"), request.secure)
            self.log.append((path, "open", opened))

            def on_message(event: Any) -> None:
                self.log.append((path, "message", event.data))
                if event.data == "close me":
                    sock.close(4001, "server bye ✓")
                elif path != "/chat":
                    sock.send(event.data)

            sock.on("message", on_message)
            sock.on("close", lambda code, reason: self.log.append((path, "close", (code, reason))))
            sock.on("pong", lambda data: self.log.append((path, "pong", data)))

        return on_connection

    def of(self, path: str, event: str) -> list[Any]:
        return [value for p, e, value in list(self.log) if (p, e) == (path, event)]

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


@pytest.fixture
def page(driver: Any, site: Site) -> Any:
    """The harness page, freshly loaded in the first tab."""
    for handle in driver.window_handles[1:]:
        driver.switch_to.window(handle)
        driver.close()
    driver.switch_to.window(driver.window_handles[0])
    driver.get(f"{site.url}/index.html")
    assert driver.execute_script("return typeof window.harness") == "object"
    return driver


ECHO_SCRIPT = """
const [url, size] = args;
const s = harness.open(url, ['a', 'b']);
if (!await s.opened) return {opened: false, close: s.close};
const text = 'héllo ✓ ' + 'x'.repeat(size);
const bin = harness.pattern(size, 5);
s.ws.send('héllo ✓');
s.ws.send(new Uint8Array([0, 1, 255]));
s.ws.send(text);
s.ws.send(bin);
const echoes = [await s.next(), await s.next(), await s.next(), await s.next()];
const result = {
  opened: true, protocol: s.ws.protocol, extensions: s.ws.extensions,
  first: echoes[0],
  smallIsArrayBuffer: echoes[1] instanceof ArrayBuffer,
  small: Array.from(new Uint8Array(echoes[1])),
  bigTextOk: echoes[2] === text, bigTextLength: echoes[2].length,
  bigBinaryOk: echoes[3] instanceof ArrayBuffer && harness.sameBytes(echoes[3], bin.buffer),
};
s.ws.close(1000);
result.close = await s.closed;
return result;
"""


def check_echo(page: Any, site: Site, path: str) -> None:
    """ECHO_SCRIPT on ``path``: what the browser got back and what the server received."""
    before = len(site.of(path, "message"))
    result = run_js(page, ECHO_SCRIPT, f"{site.ws_url}{path}", MiB)
    assert "error" not in result, result
    assert result["opened"] and result["protocol"] == "b"
    deflate = path == "/deflate"
    assert ("permessage-deflate" in result["extensions"]) is deflate
    assert result["first"] == "héllo ✓"
    assert result["smallIsArrayBuffer"] and result["small"] == [0, 1, 255]
    assert result["bigTextOk"] and result["bigTextLength"] == len("héllo ✓ ") + MiB
    assert result["bigBinaryOk"]
    assert result["close"] == {"code": 1000, "reason": "", "wasClean": True}
    protocol, extensions, origin, secure = site.of(path, "open")[-1]
    assert protocol == "b" and ("permessage-deflate" in extensions) is deflate and origin == site.url
    assert secure is site.url.startswith("https:")
    received = until_sync(lambda: site.of(path, "message")[before:] if len(site.of(path, "message")) >= before + 4 else None, timeout=PATIENCE)
    assert received[0] == "héllo ✓" and received[1] == b"\x00\x01\xff"
    assert received[2] == "héllo ✓ " + "x" * MiB
    assert hashlib.sha256(received[3]).digest() == hashlib.sha256(pattern(MiB, 5)).digest()
    assert until_sync(lambda: site.of(path, "close"), timeout=PATIENCE)[-1] == (1000, "")


@pytest.mark.parametrize("path", ["/echo", "/deflate"], ids=["plain", "deflate"])
@browser_test("echo", "large", "subprotocol", "deflate")
def test_echo_subprotocol_and_deflate(page: Any, site: Site, path: str) -> None:
    check_echo(page, site, path)


@browser_test("no-subprotocol")
def test_no_acceptable_subprotocol(page: Any, site: Site) -> None:
    # RFC 6455 lets a server pick none of the offered subprotocols, but
    # Chromium then fails the connection ("Sent non-empty
    # 'Sec-WebSocket-Protocol' header but no response was received").
    result = run_js(page, """
        const s = harness.open(args[0], ['x']);
        const opened = await s.opened;
        await s.closed;
        return {opened, events: s.events, close: s.close};
    """, f"{site.ws_url}/echo")
    assert result["opened"] is False and result["events"] == ["error", "close"]
    assert result["close"]["code"] == 1006


@browser_test("ping")
def test_browser_answers_our_ping(page: Any, site: Site) -> None:
    # Browsers cannot send pings; they must answer ours.
    count = len(site.sockets.get("/echo", []))
    assert run_js(page, "window.s = harness.open(args[0]); return await window.s.opened;", f"{site.ws_url}/echo") is True
    sock = until_sync(lambda: site.sockets["/echo"][count] if len(site.sockets.get("/echo", [])) > count else None, timeout=PATIENCE)
    sock.ping(b"are you there")
    assert until_sync(lambda: [p for p in site.of("/echo", "pong") if p == b"are you there"], what="the browser's pong", timeout=PATIENCE)
    result = run_js(page, "window.s.ws.send('still open'); const m = await window.s.next(); window.s.ws.close(); return m;")
    assert result == "still open"


def check_close(page: Any, site: Site) -> None:
    """The browser closes with 4000, the server with 4001; both ends see code and reason."""
    seen = len(site.of("/echo", "close"))
    result = run_js(page, """
        const s = harness.open(args[0]);
        await s.opened;
        s.ws.close(4000, 'browser bye ✓');
        const browserClosed = await s.closed;
        const t = harness.open(args[0]);
        await t.opened;
        t.ws.send('close me');
        const serverClosed = await t.closed;
        return {browserClosed, serverClosed};
    """, f"{site.ws_url}/echo")
    assert result["browserClosed"] == {"code": 4000, "reason": "browser bye ✓", "wasClean": True}
    assert result["serverClosed"] == {"code": 4001, "reason": "server bye ✓", "wasClean": True}

    def ours() -> list[Any]:
        return [c for c in site.of("/echo", "close")[seen:] if c[0] in (4000, 4001)]

    closes = until_sync(lambda: len(ours()) >= 2, what="both closes on the server", timeout=PATIENCE) and ours()
    assert sorted(closes) == [(4000, "browser bye ✓"), (4001, "server bye ✓")]


@browser_test("close")
def test_close_codes_both_ways(page: Any, site: Site) -> None:
    check_close(page, site)


@browser_test("refusal")
def test_verify_client_rejection(page: Any, site: Site) -> None:
    opened_before = len(site.of("/private", "open"))
    result = run_js(page, """
        const s = harness.open(args[0]);
        const opened = await s.opened;
        await s.closed;
        return {opened, events: s.events, close: s.close};
    """, f"{site.ws_url}/private")
    assert result["opened"] is False
    assert result["events"] == ["error", "close"]
    assert result["close"] == {"code": 1006, "reason": "", "wasClean": False}
    assert site.of("/private", "refused")[-1] == site.url  # the browser's Origin reached verify_client
    assert len(site.of("/private", "open")) == opened_before


@browser_test("broadcast")
def test_broadcast_to_tabs(page: Any, site: Site) -> None:
    tabs = 3
    join = """
        const s = harness.open(args[0]);
        window.chat = s;
        return await s.opened;
    """
    before = len(site.sockets.get("/chat", []))
    handles = []
    for i in range(tabs):
        if i:
            page.switch_to.new_window("tab")
            page.get(f"{site.url}/index.html")
        handles.append(page.current_window_handle)
        assert run_js(page, join, f"{site.ws_url}/chat") is True
    until_sync(lambda: len(site.chat.clients) >= tabs, what="all tabs connected", timeout=PATIENCE)
    assert len(site.sockets["/chat"]) - before == tabs
    assert site.chat.broadcast("to every tab ✓") >= tabs
    site.chat.broadcast(b"\x07\x08")
    for handle in handles:
        page.switch_to.window(handle)
        got = run_js(page, """
            const a = await window.chat.next();
            const b = await window.chat.next();
            window.chat.ws.close();
            return [a, Array.from(new Uint8Array(b))];
        """)
        assert got == ["to every tab ✓", [7, 8]]


# -- over TLS: the page from https://, the browser's WebSocket over wss:// -----------------------


def tls_site(folder: Path) -> tuple[Site, str]:
    """A ``Site`` on HTTPS/WSS with a fresh certificate from the test CA, and that certificate's SPKI hash."""
    cert, key = pki.server_files(folder, "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return Site(ssl_context=context), spki_sha256(Path(cert).read_bytes())


@pytest.fixture(scope="module")
def secure_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, str, Site]]:
    """(trusted site, its SPKI hash, stranger): two servers, each with its own certificate from the same CA."""
    trusted, spki = tls_site(tmp_path_factory.mktemp("trusted-cert"))
    try:
        stranger, _ = tls_site(tmp_path_factory.mktemp("stranger-cert"))
    except BaseException:
        trusted.close()
        raise
    yield trusted, spki, stranger
    trusted.close()
    stranger.close()


@pytest.fixture(scope="module")
def tls_driver(tmp_path_factory: pytest.TempPathFactory, secure_sites: tuple[Site, str, Site]) -> Iterator[Any]:
    """A second Chromium, started trusting the trusted site's certificate (by its SPKI) and nothing more."""
    d = start_chromium(tmp_path_factory.mktemp("chromium-tls-profile"), trust_spki=[secure_sites[1]])
    yield d
    d.quit()


@pytest.fixture
def secure_site(secure_sites: tuple[Site, str, Site]) -> Site:
    return secure_sites[0]


@pytest.fixture
def secure_page(tls_driver: Any, secure_site: Site) -> Any:
    """The harness page loaded from the trusted site over https://."""
    tls_driver.get(f"{secure_site.url}/index.html")
    assert tls_driver.execute_script("return typeof window.harness") == "object"
    assert tls_driver.execute_script("return [location.protocol, window.isSecureContext]") == ["https:", True]
    assert (secure_site.of("/index.html", "http") or [None])[-1] is True  # the page came over TLS
    return tls_driver


@browser_test("wss", "tls", "echo", "large")
def test_wss_echo_text_binary_and_1mib(secure_page: Any, secure_site: Site) -> None:
    check_echo(secure_page, secure_site, "/echo")


@browser_test("wss", "tls", "close")
def test_wss_close_codes_both_ways(secure_page: Any, secure_site: Site) -> None:
    check_close(secure_page, secure_site)


@browser_test("wss")
def test_wss_other_certificate_refused(secure_page: Any, secure_sites: tuple[Site, str, Site]) -> None:
    # The stranger's certificate comes from the same CA for the same name;
    # only its key differs, and its SPKI is not in the browser's list.
    trusted, _, stranger = secure_sites
    result = run_js(secure_page, """
        const [good, bad] = args;
        const t = harness.open(good);
        const trustedOpened = await t.opened;
        t.ws.close(1000);
        await t.closed;
        const s = harness.open(bad);
        const opened = await s.opened;
        if (opened) s.ws.close(1000);  // a failure of this test, but no wait for a close that never comes
        await s.closed;
        return {trustedOpened, opened, events: s.events, close: s.close};
    """, f"{trusted.ws_url}/echo", f"{stranger.ws_url}/echo")
    assert result["trustedOpened"] is True  # same page, same moment: the trusted server still opens
    assert result["opened"] is False and result["events"] == ["error", "close"]
    assert result["close"] == {"code": 1006, "reason": "", "wasClean": False}

    # Navigating to the stranger is an interstitial, not the page.
    secure_page.get(f"{stranger.url}/index.html")
    assert secure_page.execute_script("return typeof window.harness") == "undefined"
    assert "ERR_CERT_AUTHORITY_INVALID" in secure_page.page_source
    # The TLS handshake failed, so the stranger saw no request and no WebSocket.
    assert stranger.log == []

    # The stranger itself is fine: a client that trusts the test CA gets the page.
    conn = http.client.HTTPSConnection("127.0.0.1", stranger.server.port, context=pki.client_context(), timeout=10)
    try:
        conn.request("GET", "/index.html")
        reply = conn.getresponse()
        assert reply.status == 200 and b"ws interop harness" in reply.read()
    finally:
        conn.close()
    assert stranger.of("/index.html", "http") == [True]


# -- the demo page (scripts/examples/static, served by scripts/examples/demo_server.py) ----------


def load_demo_server() -> Any:
    spec = importlib.util.spec_from_file_location("demo_server", ROOT / "scripts" / "examples" / "demo_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@browser_test("demo")
def test_demo_page(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    demo = load_demo_server()
    server, chat = demo.build("127.0.0.1:0")
    server.serve()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        driver.switch_to.window(driver.window_handles[0])
        driver.get(url)
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(url)
        second = driver.current_window_handle

        def connected() -> bool:
            return "connected to" in driver.find_element(By.ID, "status").text

        for handle in (first, second):
            driver.switch_to.window(handle)
            until_sync(connected, what="the demo page to connect", timeout=PATIENCE)
        until_sync(lambda: len(chat.clients) == 2, what="both tabs on /chat", timeout=PATIENCE)

        def say(handle: str, name: str, text: str) -> None:
            driver.switch_to.window(handle)
            name_input = driver.find_element(By.ID, "name")
            name_input.clear()
            name_input.send_keys(name)
            driver.find_element(By.ID, "text").send_keys(text)
            driver.find_element(By.ID, "send").click()

        say(first, "alice", "hello from tab one")
        say(second, "bob", "hi alice, tab two here")
        expected = ["alice: hello from tab one", "bob: hi alice, tab two here"]
        for handle in (first, second):
            driver.switch_to.window(handle)
            lines = until_sync(
                lambda: [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li")] if len(
                    driver.find_elements(By.CSS_SELECTOR, "#log li")) >= 2 else None,
                what="both messages on the page", timeout=PATIENCE
            )
            assert lines == expected
        shot = tmp_path / "demo.png"
        assert driver.save_screenshot(str(shot))
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "ws demo chat" in body and "bob: hi alice, tab two here" in body
        driver.close()
        driver.switch_to.window(first)
    finally:
        server.close()
