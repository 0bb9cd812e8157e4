"""ws.connection.proxy: the client through an HTTP CONNECT proxy (explicit, from the environment, with auth)."""

from __future__ import annotations

from typing import Any

import pytest

from ws import ConnectError, WebSocket, WebSocketServer
from ws.connection.proxy import ProxyURL, bypasses, parse_proxy, proxy_for
from ws.http import Server

from .conftest import Recorder, run
from .fixtures.connect_proxy import ConnectProxy
from .fixtures.tls import TestPKI

pki = TestPKI()
OURS = "ws client ↔ ws server"  # the column of the interop matrix (tests/fixtures/interop_matrix.py)


async def echo_server(**options: Any) -> Server:
    server = Server("127.0.0.1:0", **options)

    def on_connection(sock: WebSocket, request: Any) -> None:
        sock.on("message", lambda event: sock.send(event.data))

    WebSocketServer(server=server, path="/echo").on("connection", on_connection)
    await server.serve_async()
    return server


async def echo_once(url: str, **options: Any) -> Recorder:
    """Connect, echo one message, close; the recorder holds what happened."""
    sock = WebSocket(url, **options)
    rec = Recorder(sock, "open", "message", "close", "error")
    await rec.wait("open", timeout=10)
    sock.send("through")
    (event,), = await rec.wait("message", timeout=10)
    assert event.data == "through"
    sock.close()
    await rec.wait("close", timeout=10)
    return rec


async def refused(url: str, **options: Any) -> str:
    sock = WebSocket(url, **options)
    rec = Recorder(sock, "open", "close", "error")
    await rec.wait("close", timeout=10)
    assert rec.count("open") == 0
    (error,), = rec.args("error")
    assert isinstance(error, ConnectError)
    return str(error)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.interop(OURS, "proxy")
def test_explicit_proxy_tunnels_ws(no_proxy_env: Any) -> None:
    async def main() -> None:
        server = await echo_server()
        try:
            async with ConnectProxy() as proxy:
                await echo_once(f"ws://127.0.0.1:{server.port}/echo", proxy=proxy.url)
                assert [(r["method"], r["target"]) for r in proxy.requests] == [("CONNECT", f"127.0.0.1:{server.port}")]
                assert "proxy-authorization" not in proxy.requests[0]["headers"]
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "proxy", "tls")
def test_wss_through_proxy_verifies_the_target_certificate(no_proxy_env: Any) -> None:
    async def main() -> None:
        server = await echo_server(ssl=pki.server_context())
        try:
            async with ConnectProxy() as proxy:
                url = f"wss://localhost:{server.port}/echo"
                await echo_once(url, proxy=proxy.url, ssl=pki.client_context())
                # Without our CA the tunnel opens but TLS inside it is refused.
                message = await refused(url, proxy=proxy.url)
                assert "certificate verify" in message or "verification failed" in message
                assert [r["target"] for r in proxy.requests] == [f"localhost:{server.port}"] * 2
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "proxy-auth")
def test_basic_proxy_auth(no_proxy_env: Any) -> None:
    async def main() -> None:
        server = await echo_server()
        try:
            async with ConnectProxy(auth="alice:s3cr:t") as proxy:
                url = f"ws://127.0.0.1:{server.port}/echo"
                await echo_once(url, proxy=f"http://alice:s3cr%3At@127.0.0.1:{proxy.port}")
                assert proxy.requests[0]["headers"]["proxy-authorization"] == "Basic YWxpY2U6czNjcjp0"
                message = await refused(url, proxy=proxy.url)
                assert message == f"proxy 127.0.0.1:{proxy.port} refused CONNECT 127.0.0.1:{server.port}: 407 Proxy Authentication Required"
                message = await refused(url, proxy=f"http://alice:wrong@127.0.0.1:{proxy.port}")
                assert "407" in message and "wrong" not in message
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "proxy-env")
def test_environment_proxies(no_proxy_env: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        plain = await echo_server()
        secure = await echo_server(ssl=pki.server_context())
        try:
            async with ConnectProxy() as http_proxy, ConnectProxy() as https_proxy:
                no_proxy_env.setenv("http_proxy", http_proxy.url)
                no_proxy_env.setenv("https_proxy", https_proxy.url)
                await echo_once(f"ws://127.0.0.1:{plain.port}/echo")
                await echo_once(f"wss://localhost:{secure.port}/echo", ssl=pki.client_context())
                assert [r["target"] for r in http_proxy.requests] == [f"127.0.0.1:{plain.port}"]
                assert [r["target"] for r in https_proxy.requests] == [f"localhost:{secure.port}"]
                # proxy=None opts out; no_proxy skips matching hosts.
                await echo_once(f"ws://127.0.0.1:{plain.port}/echo", proxy=None)
                no_proxy_env.setenv("no_proxy", "example.org, localhost")
                await echo_once(f"wss://localhost:{secure.port}/echo", ssl=pki.client_context())
                no_proxy_env.setenv("NO_PROXY", "")
                no_proxy_env.setenv("no_proxy", "127.0.0.0/8")
                await echo_once(f"ws://127.0.0.1:{plain.port}/echo")
                assert len(http_proxy.requests) == 1 and len(https_proxy.requests) == 1
                # An explicit proxy wins over the environment.
                await echo_once(f"ws://127.0.0.1:{plain.port}/echo", proxy=https_proxy.url)
                assert len(https_proxy.requests) == 2
        finally:
            await plain.close_async()
            await secure.close_async()

    run(main)


@pytest.mark.interop(OURS, "proxy-env")
def test_unreachable_proxy_and_bad_env(no_proxy_env: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with ConnectProxy() as proxy:
            port = proxy.port
        message = await refused("ws://127.0.0.1:9/x", proxy=f"http://127.0.0.1:{port}")
        assert message.startswith(f"cannot connect to proxy 127.0.0.1:{port}: ")
        no_proxy_env.setenv("http_proxy", "socks5://127.0.0.1:1080")
        message = await refused("ws://127.0.0.1:9/x")
        assert "http_proxy from the environment" in message and "only 'http://' proxies" in message

    run(main)


def test_proxy_refusing_the_target(no_proxy_env: Any) -> None:
    async def main() -> None:
        async with ConnectProxy() as proxy:
            async with ConnectProxy() as gone:
                closed_port = gone.port
            message = await refused(f"ws://127.0.0.1:{closed_port}/x", proxy=proxy.url)
            assert message == f"proxy 127.0.0.1:{proxy.port} refused CONNECT 127.0.0.1:{closed_port}: 502 Bad Gateway"

    run(main)


# -- parsing and choosing, without sockets -----------------------------------------


def test_parse_proxy() -> None:
    proxy = parse_proxy("http://u%40x:p%3Aw@proxy.local:3128")
    assert (proxy.host, proxy.port, proxy.username, proxy.password) == ("proxy.local", 3128, "u@x", "p:w")
    assert "p:w" not in repr(proxy) and proxy.authorization() == "Basic dUB4OnA6dw=="
    assert parse_proxy("proxy.local:8080").address == "proxy.local:8080"
    assert parse_proxy("http://[::1]:8080").address == "[::1]:8080"
    assert parse_proxy("http://p").port == 80
    for bad in ("https://p:1", "socks5://p:1", "http://:8080", "http://p:notaport"):
        with pytest.raises(ValueError, match="Invalid proxy URL"):
            parse_proxy(bad)
    with pytest.raises(ValueError, match=r"\*\*\*"):
        parse_proxy("ftp://u:hunter2@p")
    with pytest.raises(TypeError):
        parse_proxy(3128)


def test_bad_proxy_option_is_an_error_at_construction() -> None:
    with pytest.raises(ValueError, match="only 'http://' proxies"):
        WebSocket("ws://127.0.0.1:1/", proxy="socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="max_redirects"):
        WebSocket("ws://127.0.0.1:1/", max_redirects=-1)


@pytest.mark.parametrize(
    "host, port, rule, expected",
    [
        ("example.com", 80, "*", True),
        ("example.com", 80, "example.com", True),
        ("api.example.com", 80, ".example.com", True),
        ("api.example.com", 80, "example.com", True),
        ("badexample.com", 80, "example.com", False),
        ("example.com", 80, "example.com:8080", False),
        ("example.com", 8080, "other, example.com:8080", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("::1", 80, "[::1]:80", True),
        ("::1", 80, "::1", True),
        ("localhost", 80, "", False),
    ],
)
def test_no_proxy_rules(host: str, port: int, rule: str, expected: bool) -> None:
    assert bypasses(host, port, rule) is expected


def test_proxy_for() -> None:
    env = {"HTTP_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "no_proxy": "skip.me"}
    assert proxy_for("env", False, "h", 80, env).host == "upper"  # type: ignore[union-attr]
    assert proxy_for("env", True, "h", 443, env).host == "lower"  # type: ignore[union-attr]
    assert proxy_for("env", True, "skip.me", 443, env) is None
    assert proxy_for(None, True, "h", 443, env) is None
    assert proxy_for("env", False, "h", 80, {}) is None
    explicit = ProxyURL("p", 1)
    assert proxy_for(explicit, False, "skip.me", 80, env) is explicit
