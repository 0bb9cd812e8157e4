"""TLS: ``ws.http.Server(ssl=...)`` serves HTTPS and WSS on one port; the client verifies certificates."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from ws import ConnectError, WebSocket, WebSocketServer
from ws.http import Server

from .conftest import Recorder, run
from .fixtures.tls import TestPKI, expired

pki = TestPKI()
OURS = "ws client ↔ ws server"  # the column of the interop matrix (tests/fixtures/interop_matrix.py)


async def tls_server(server_ssl: ssl.SSLContext, seen: list[Any] | None = None) -> Server:
    """HTTPS route ``/hello`` and a WSS echo on ``/ws``, one port."""
    server = Server("127.0.0.1:0", ssl=server_ssl)
    server.get("/hello", lambda ctx: ctx.text(200, f"hello over {'https' if ctx.request.secure else 'http'}"))

    def verify(info: Any) -> bool:
        if seen is not None:
            seen.append((info.secure, info.req.secure))
        return True

    def on_connection(sock: WebSocket, request: Any) -> None:
        sock.on("message", lambda event: sock.send(event.data))

    WebSocketServer(server=server, path="/ws", verify_client=verify).on("connection", on_connection)
    await server.serve_async()
    return server


async def https_get(port: int, path: str, context: ssl.SSLContext, host: str = "localhost") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=host)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


@pytest.mark.interop(OURS, "tls")
def test_https_and_wss_on_one_port() -> None:
    async def main() -> None:
        seen: list[Any] = []
        server = await tls_server(pki.server_context(), seen)
        try:
            assert server.secure and server.url.startswith("https://")
            reply = await https_get(server.port, "/hello", pki.client_context())
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello over https")

            sock = WebSocket(f"wss://localhost:{server.port}/ws", ssl=pki.client_context())
            rec = Recorder(sock, "open", "message", "close", "error")
            await rec.wait("open", timeout=10)
            sock.send("secret")
            sock.send(b"\x00" * 100_000)
            large = bytes(range(256)) * 8192  # 2 MiB: read straight into its own buffer, through TLS
            sock.send(large)
            sock.send(large[::-1])
            messages = await rec.wait("message", 4, timeout=20)
            assert [m[0].data for m in messages] == ["secret", b"\x00" * 100_000, large, large[::-1]]
            sock.close(1000, "bye")
            assert (await rec.wait("close", timeout=10))[0] == (1000, "bye")
            assert rec.count("error") == 0
            assert seen == [(True, True)]  # verify_client's info.secure and req.secure
        finally:
            await server.close_async()

    run(main)


def test_plain_http_to_tls_port_does_not_open() -> None:
    async def main() -> None:
        server = await tls_server(pki.server_context())
        try:
            sock = WebSocket(f"ws://localhost:{server.port}/ws", handshake_timeout=10)
            rec = Recorder(sock, "open", "close", "error")
            await rec.wait("close", timeout=15)
            assert rec.count("open") == 0 and rec.count("error") == 1
        finally:
            await server.close_async()

    run(main)


async def failed_connect(url: str, **options: Any) -> str:
    sock = WebSocket(url, **options)
    rec = Recorder(sock, "open", "close", "error")
    await rec.wait("close", timeout=10)
    assert rec.count("open") == 0
    assert rec.args("close") == [(1006, "")]
    (error,), = rec.args("error")
    assert isinstance(error, ConnectError)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    return str(error)


@pytest.mark.parametrize(
    "case, names, cert_options, url_host, expected",
    [
        # The default context trusts only the system store, not our test CA.
        ("untrusted", ("localhost",), {}, "localhost", "unable to get local issuer certificate"),
        ("wrong host", ("example.org",), {}, "localhost", "Hostname mismatch, certificate is not valid for 'localhost'"),
        ("wrong ip", ("localhost",), {}, "127.0.0.1", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
        ("expired", ("localhost",), expired(), "localhost", "certificate has expired"),
    ],
)
@pytest.mark.interop(OURS, "tls-errors")
def test_bad_certificates_say_which_check_failed(case: str, names: tuple, cert_options: dict, url_host: str, expected: str) -> None:
    async def main() -> None:
        server = await tls_server(pki.server_context(*names, **cert_options))
        try:
            client_ssl = None if case == "untrusted" else pki.client_context()
            options = {"ssl": client_ssl} if client_ssl is not None else {}
            message = await failed_connect(f"wss://{url_host}:{server.port}/ws", **options)
            assert "TLS certificate verification failed" in message
            assert expected in message, message
            assert f":{server.port}" in message
        finally:
            await server.close_async()

    run(main)


def test_ssl_option_is_checked() -> None:
    for bad in (False, "cert.pem", 1):
        with pytest.raises(TypeError, match="ssl must be an ssl.SSLContext"):
            WebSocket("wss://localhost:1/", ssl=bad)


def test_ssl_option_must_be_a_context_for_custom_trust() -> None:
    """Only an ``SSLContext`` brings its own trust: ``ssl=True`` (like no ``ssl``) is the system store."""

    async def main() -> None:
        server = await tls_server(pki.server_context())
        try:
            url = f"wss://localhost:{server.port}/ws"
            message = await failed_connect(url, ssl=True)
            assert "unable to get local issuer certificate" in message, message
            sock = WebSocket(url, ssl=pki.client_context())
            rec = Recorder(sock, "open", "close", "error")
            await rec.wait("open", timeout=10)
            sock.close()
            await rec.wait("close", timeout=10)
            assert rec.count("error") == 0
        finally:
            await server.close_async()

    run(main)


def test_ws_urls_ignore_the_ssl_option() -> None:
    """``ws://`` never speaks TLS, whatever ``ssl`` says."""

    async def main() -> None:
        secure: list[bool] = []
        server = Server("127.0.0.1:0")
        WebSocketServer(server=server, path="/ws").on("connection", lambda sock, req: secure.append(req.secure))
        await server.serve_async()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/ws", ssl=pki.client_context())
            rec = Recorder(sock, "open", "close", "error")
            await rec.wait("open", timeout=10)
            sock.close()
            await rec.wait("close", timeout=10)
            assert rec.count("error") == 0
            assert secure == [False]  # the server saw a plain connection
        finally:
            await server.close_async()

    run(main)
