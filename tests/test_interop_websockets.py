"""Interop with Python's ``websockets``, asyncio and sync implementations, both directions.

Text, binary, large and fragmented messages, subprotocols, compression,
ping/pong, close codes both ways, refusals and TLS.

One scenario is written once as a coroutine over a small connection
wrapper: the asyncio implementation runs it on the test's loop, the sync
one in a thread (blocking calls inside that thread's own loop are fine).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as async_connect
from websockets.asyncio.server import serve as async_serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect as sync_connect
from websockets.sync.server import serve as sync_serve

from ws import HandshakeError, Reject, WebSocket, WebSocketServer
from ws.http import Server

from .conftest import Recorder, connect, run, serving, until
from .fixtures.node_peer import pattern
from .fixtures.tls import TestPKI, check_wss_peer

BIG = 16 * 1024 * 1024
TIMEOUT = 60
IMPLS = pytest.mark.parametrize("impl", ["asyncio", "sync"])
DEFLATE = pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
pki = TestPKI()
#: The oldest websockets setup.cfg admits is tested too (scripts/test's lowest venv): its peer API differs.
WEBSOCKETS_MAJOR = int(websockets.__version__.split(".")[0])


def no_keepalive(impl: str) -> dict[str, Any]:
    """Options that turn the peer's pings off: its sync implementation has them (``ping_interval``) from 15 on."""
    return {"ping_interval": None} if impl == "asyncio" or WEBSOCKETS_MAJOR >= 15 else {}


def interop(side: str, *features: str) -> Any:
    """The ``{impl}`` in the peer name is filled from the test's parameters (see interop_matrix)."""
    return pytest.mark.interop(f"websockets {{impl}} {side}", *features)


class Conn:
    """The calls the scenarios need, the same for both implementations."""

    def __init__(self, conn: Any, sync: bool) -> None:
        self.conn = conn
        self.sync = sync

    @property
    def subprotocol(self) -> str | None:
        return self.conn.subprotocol

    @property
    def extensions(self) -> str:
        response = getattr(self.conn, "response", None)
        return (response.headers.get("Sec-WebSocket-Extensions") or "") if response is not None else ""

    # The Sans-I/O protocol's: the connections have these attributes only from websockets 15 on.
    @property
    def close_code(self) -> int | None:
        return self.conn.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        return self.conn.protocol.close_reason

    async def send(self, message: Any) -> None:
        if self.sync:
            self.conn.send(message)
        else:
            await self.conn.send(message)

    async def recv(self) -> Any:
        if self.sync:
            return self.conn.recv(timeout=TIMEOUT)
        return await asyncio.wait_for(self.conn.recv(), TIMEOUT)

    async def ping(self, data: bytes) -> None:
        """Ping and wait for the pong."""
        if self.sync:
            assert self.conn.ping(data).wait(TIMEOUT)
        else:
            await asyncio.wait_for(await self.conn.ping(data), TIMEOUT)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.sync:
            self.conn.close(code, reason)
        else:
            await self.conn.close(code, reason)

    async def closed(self) -> None:
        """Wait until the peer ended the connection."""
        try:
            while True:
                await self.recv()
        except ConnectionClosed:
            pass


# -- our client -> websockets server -------------------------------------------------

#: What the server handler saw: (path, event, value), from any thread.
Log = list[tuple[str, str, Any]]


async def handle(conn: Conn, path: str, log: Log) -> None:
    """The websockets-side server behaviour, chosen by path."""
    log.append((path, "open", (conn.subprotocol, conn.conn.request.headers.get("Sec-WebSocket-Extensions"))))
    if path == "/fragments":
        await conn.send(["frag", "men", "ted ✓"])  # an iterable is sent as fragments
        await conn.send([b"\x01", b"", b"\x02" * 70000])
        await conn.send(pattern(BIG, 7))
    elif path == "/ping":
        await conn.ping(b"ws-ping")
        await conn.send("pong received")
    try:
        while True:
            message = await conn.recv()
            log.append((path, "message", message))
            if message == "close-me":
                await conn.close(4002, "websockets bye")
                break
            await conn.send(message)
    except ConnectionClosed:
        pass
    log.append((path, "close", (conn.close_code, conn.close_reason)))


def prefer_v2(connection: Any, offered: Any) -> str | None:
    return "chat.v2" if "chat.v2" in offered else None


def refuse(connection: Any, request: Any) -> Any:
    if request.headers.get("X-Reject"):
        response = connection.respond(403, "Refused by websockets\n")
        response.headers["X-Refused-By"] = "websockets"
        return response
    return None


class WebsocketsServer:
    """A websockets server (asyncio on this loop, or sync in a thread) running :func:`handle`."""

    def __init__(self, impl: str, deflate: bool, ssl: Any = None) -> None:
        self.impl = impl
        self.log: Log = []
        self.options: dict[str, Any] = dict(  # noqa: C408 - keyword form reads as options
            select_subprotocol=prefer_v2, compression="deflate" if deflate else None,
            max_size=None, process_request=refuse, ssl=ssl, **no_keepalive(impl),
        )
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> WebsocketsServer:
        if self.impl == "asyncio":
            async def handler(conn: Any) -> None:
                await handle(Conn(conn, False), conn.request.path, self.log)

            self._server = await async_serve(handler, "127.0.0.1", 0, **self.options)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            def sync_handler(conn: Any) -> None:
                asyncio.run(handle(Conn(conn, True), conn.request.path, self.log))

            self._server = sync_serve(sync_handler, "127.0.0.1", 0, **self.options)
            self.port = self._server.socket.getsockname()[1]
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.impl == "asyncio":
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 20)
        else:
            await asyncio.to_thread(self._server.shutdown)
            await asyncio.to_thread(self._thread.join, 20)  # type: ignore[union-attr]

    async def wait_for(self, path: str, event: str, timeout: float = 20) -> Any:
        """The value of the first ``event`` the handler logged on ``path`` (waits for it)."""

        def found() -> tuple[Any] | None:
            return next(((value,) for p, e, value in list(self.log) if (p, e) == (path, event)), None)

        (value,) = await until(found, timeout, step=0.02, what=f"no {event!r} on {path} at the websockets server")
        return value


@IMPLS
@DEFLATE
@interop("server", "echo", "large", "subprotocol", "deflate")
def test_client_echo_big_and_negotiation(impl: str, deflate: bool) -> None:
    async def main() -> None:
        async with WebsocketsServer(impl, deflate) as server:
            # BIG passes the 1 MiB default of a compressed connection: the limit is set, as a user would.
            sock, rec = await connect(server.port, "/echo", ["chat.v1", "chat.v2"], max_payload=BIG)
            await rec.wait("open", timeout=20)
            assert sock.protocol == "chat.v2"
            assert ("permessage-deflate" in sock.extensions) is deflate
            big = pattern(BIG, 1)
            sock.send("héllo ✓")
            sock.send(b"\x00\xff")
            sock.send(big)
            messages = [m[0] for m in await rec.wait("message", 3, timeout=TIMEOUT)]
            assert [m.data for m in messages[:2]] == ["héllo ✓", b"\x00\xff"] and messages[2].data == big
            received = [v for p, e, v in server.log if e == "message"]
            assert received[:2] == ["héllo ✓", b"\x00\xff"] and received[2] == big
            sock.close()
            await rec.wait("close", timeout=20)
            assert rec.count("error") == 0

    run(main, TIMEOUT + 30)


@IMPLS
@DEFLATE
@interop("server", "fragments", "large", "deflate")
def test_client_receives_fragments(impl: str, deflate: bool) -> None:
    async def main() -> None:
        async with WebsocketsServer(impl, deflate) as server:
            sock, rec = await connect(server.port, "/fragments", max_payload=BIG)
            messages = [m[0] for m in await rec.wait("message", 3, timeout=TIMEOUT)]
            assert messages[0].data == "fragmented ✓"
            assert messages[1].data == b"\x01" + b"\x02" * 70000
            assert messages[2].data == pattern(BIG, 7)
            sock.close()
            await rec.wait("close", timeout=20)

    run(main, TIMEOUT + 30)


@IMPLS
@interop("server", "ping")
def test_client_ping_pong(impl: str) -> None:
    async def main() -> None:
        async with WebsocketsServer(impl, False) as server:
            sock, rec = await connect(server.port, "/ping")
            (message,), = await rec.wait("message", timeout=20)  # sent once our pong arrived
            assert message.data == "pong received"
            assert rec.args("ping") == [(b"ws-ping",)]
            sock.ping("py-ping")
            assert (await rec.wait("pong", timeout=20)) == [(b"py-ping",)]
            sock.close()
            await rec.wait("close", timeout=20)

    run(main)


@IMPLS
@interop("server", "close")
def test_client_close_codes_both_ways(impl: str) -> None:
    async def main() -> None:
        async with WebsocketsServer(impl, False) as server:
            sock, rec = await connect(server.port, "/a")
            await rec.wait("open", timeout=20)
            sock.close(4001, "py bye ✓")
            assert (await rec.wait("close", timeout=20)) == [(4001, "py bye ✓")]
            assert await server.wait_for("/a", "close") == (4001, "py bye ✓")

            sock, rec = await connect(server.port, "/b")
            await rec.wait("open", timeout=20)
            sock.send("close-me")
            assert (await rec.wait("close", timeout=20)) == [(4002, "websockets bye")]
            assert await server.wait_for("/b", "close") == (4002, "websockets bye")
            assert rec.count("error") == 0

    run(main)


@IMPLS
@interop("server", "refusal")
def test_client_sees_refusal(impl: str) -> None:
    async def main() -> None:
        async with WebsocketsServer(impl, False) as server:
            _, rec = await connect(server.port, "/echo", headers={"X-Reject": "1"})
            await rec.wait("close", timeout=20)
            assert rec.count("open") == 0
            (status, headers, body), = rec.args("unexpected-response")
            assert status == 403 and body == b"Refused by websockets\n"
            assert ("X-Refused-By", "websockets") in headers
            (error,), = rec.args("error")
            assert isinstance(error, HandshakeError) and error.status == 403
            assert not [e for _, e, _ in server.log if e == "open"]

    run(main)


# -- websockets client -> our server -------------------------------------------------------


async def our_server(deflate: bool = False, ssl: Any = None) -> tuple[Server, list[WebSocket], list[Recorder]]:
    """Echo on ``/echo`` ("close me" closes with 4004); ``verify_client`` refuses requests with ``X-Reject``."""
    server = Server("127.0.0.1:0", ssl=ssl)
    sockets: list[WebSocket] = []
    recorders: list[Recorder] = []

    def verify(info: Any) -> Any:
        if info.req.get_header("x-reject") == "tuple":
            return (False, 401, "Who are you")  # the ws (Node) verifyClient result form
        if info.req.get_header("x-reject"):
            raise Reject(403, "Refused by Python ws", {"X-Refused-By": "ws-python"})
        return True

    def on_connection(sock: WebSocket, request: Any) -> None:
        sockets.append(sock)
        recorders.append(Recorder(sock, "message", "ping", "pong", "close", "error"))
        sock.on("message", lambda event: sock.close(4004, "py bye") if event.data == "close me" else sock.send(event.data))

    wss = WebSocketServer(
        server=server, path="/echo", per_message_deflate=deflate, verify_client=verify, protocols=["chat.v2"],
        max_payload=BIG,  # over the 1 MiB default of a compressed connection
    )
    wss.on("connection", on_connection)
    await server.serve_async()
    return server, sockets, recorders


async def as_client(impl: str, url: str, scenario: Callable[[Conn], Any], **options: Any) -> Any:
    """Run ``scenario(conn)`` on a websockets client of implementation ``impl``."""
    options.setdefault("max_size", None)
    options = {**no_keepalive(impl), **options}
    if impl == "asyncio":
        async with async_connect(url, open_timeout=20, **options) as conn:
            return await scenario(Conn(conn, False))

    def in_thread() -> Any:
        with sync_connect(url, open_timeout=20, **options) as conn:
            return asyncio.run(scenario(Conn(conn, True)))

    return await asyncio.to_thread(in_thread)


@IMPLS
@DEFLATE
@interop("client", "echo", "large", "subprotocol", "deflate")
def test_websockets_client_echo_big_and_negotiation(impl: str, deflate: bool) -> None:
    async def main() -> None:
        server, sockets, recorders = await our_server(deflate)
        big = pattern(BIG, 2)

        async def scenario(conn: Conn) -> list[Any]:
            assert conn.subprotocol == "chat.v2"
            assert ("permessage-deflate" in conn.extensions) is deflate
            replies = []
            for message in ("héllo ✓", b"\x00\xff", big):
                await conn.send(message)
                replies.append(await conn.recv())
            await conn.close()
            return replies

        try:
            url = f"ws://127.0.0.1:{server.port}/echo"
            replies = await as_client(impl, url, scenario, subprotocols=["chat.v1", "chat.v2"], compression="deflate" if deflate else None)
            assert replies[:2] == ["héllo ✓", b"\x00\xff"] and replies[2] == big
            assert ("permessage-deflate" in sockets[0].extensions) is deflate
            assert sockets[0].protocol == "chat.v2"
            assert (await recorders[0].wait("close", timeout=20)) == [(1000, "")]
        finally:
            await server.close_async()

    run(main, TIMEOUT + 30)


@IMPLS
@DEFLATE
@interop("client", "fragments", "deflate")
def test_websockets_client_fragments(impl: str, deflate: bool) -> None:
    async def main() -> None:
        server, _, recorders = await our_server(deflate)

        async def scenario(conn: Conn) -> list[Any]:
            await conn.send(["a" * 1000, "b", "✓"])
            await conn.send([b"\x00" * 10, b"\x01" * 100000])
            replies = [await conn.recv(), await conn.recv()]
            await conn.close()
            return replies

        try:
            replies = await as_client(impl, f"ws://127.0.0.1:{server.port}/echo", scenario, compression="deflate" if deflate else None)
            assert replies == ["a" * 1000 + "b✓", b"\x00" * 10 + b"\x01" * 100000]
            received = [m[0] for m in recorders[0].args("message")]
            assert [m.is_binary for m in received] == [False, True]
        finally:
            await server.close_async()

    run(main)


@IMPLS
@interop("client", "ping")
def test_websockets_client_ping_pong(impl: str) -> None:
    async def main() -> None:
        server, sockets, recorders = await our_server()
        loop = asyncio.get_running_loop()

        async def scenario(conn: Conn) -> Any:
            await conn.ping(b"ws-ping")  # returns once our pong arrived
            # Ask our side to ping; websockets answers, our 'pong' fires.
            if impl == "asyncio":
                await ping_from_server()
            else:
                asyncio.run_coroutine_threadsafe(ping_from_server(), loop).result(20)
            await conn.close()

        async def ping_from_server() -> None:
            sockets[0].ping(b"py-ping")
            await recorders[0].wait("pong", timeout=20)

        try:
            await as_client(impl, f"ws://127.0.0.1:{server.port}/echo", scenario)
            assert recorders[0].args("ping") == [(b"ws-ping",)]
            assert recorders[0].args("pong") == [(b"py-ping",)]
        finally:
            await server.close_async()

    run(main)


@IMPLS
@interop("client", "close")
def test_websockets_client_close_codes_both_ways(impl: str) -> None:
    async def main() -> None:
        server, _, recorders = await our_server()
        url = f"ws://127.0.0.1:{server.port}/echo"

        async def client_closes(conn: Conn) -> Any:
            await conn.close(4003, "websockets bye ✓")
            return conn.close_code, conn.close_reason

        async def server_closes(conn: Conn) -> Any:
            await conn.send("close me")
            await conn.closed()
            return conn.close_code, conn.close_reason

        try:
            assert await as_client(impl, url, client_closes) == (4003, "websockets bye ✓")
            assert (await recorders[0].wait("close", timeout=20)) == [(4003, "websockets bye ✓")]
            assert await as_client(impl, url, server_closes) == (4004, "py bye")
            assert (await recorders[1].wait("close", timeout=20)) == [(4004, "py bye")]
        finally:
            await server.close_async()

    run(main)


@IMPLS
@interop("client", "refusal")
def test_websockets_client_sees_verify_client_rejection(impl: str) -> None:
    async def main() -> None:
        server, sockets, _ = await our_server()

        async def never(conn: Conn) -> None:  # pragma: no cover - the handshake fails
            raise AssertionError("opened")

        try:
            with pytest.raises(InvalidStatus) as info:
                await as_client(impl, f"ws://127.0.0.1:{server.port}/echo", never, additional_headers={"X-Reject": "1"})
            response = info.value.response
            assert response.status_code == 403
            assert response.headers["X-Refused-By"] == "ws-python"
            assert response.body == b"Refused by Python ws\n"
            with pytest.raises(InvalidStatus) as info:
                await as_client(impl, f"ws://127.0.0.1:{server.port}/echo", never, additional_headers={"X-Reject": "tuple"})
            assert info.value.response.status_code == 401
            assert sockets == []
        finally:
            await server.close_async()

    run(main)


@IMPLS
@interop("client", "subprotocol", "close")
def test_websockets_client_gets_our_preferred_protocol_and_a_normal_close(impl: str) -> None:
    """Our server picks by its own order among those offered; its 1000 close is a normal one to websockets."""

    async def main() -> None:
        async with serving("/", protocols=["v2", "v1"]) as served:
            assert served.wss is not None
            served.wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.close(1000, "as asked")))

            async def scenario(conn: Conn) -> Any:
                assert conn.subprotocol == "v2"
                await conn.send("close please")
                with pytest.raises(ConnectionClosedOK):
                    await conn.recv()
                return conn.close_code, conn.close_reason

            assert await as_client(impl, served.url, scenario, subprotocols=["v1", "v2"]) == (1000, "as asked")
            (_, rec), = served.accepted
            assert await rec.wait("close", timeout=20) == [(1000, "as asked")]

    run(main)


# -- TLS (wss://) both ways --------------------------------------------------------------


@IMPLS
@interop("server", "wss")
def test_client_wss_to_websockets_server(impl: str) -> None:
    async def main() -> None:
        async with WebsocketsServer(impl, False, ssl=pki.server_context("localhost")) as server:
            await check_wss_peer(f"wss://localhost:{server.port}/echo", pki.client_context())

    run(main)


@IMPLS
@interop("client", "wss")
def test_websockets_client_wss_to_our_server(impl: str) -> None:
    async def main() -> None:
        server, sockets, _ = await our_server(ssl=pki.server_context("localhost"))

        async def scenario(conn: Conn) -> Any:
            await conn.send("over tls")
            reply = await conn.recv()
            await conn.close()
            return reply

        try:
            url = f"wss://localhost:{server.port}/echo"
            assert await as_client(impl, url, scenario, ssl=pki.client_context()) == "over tls"
            with pytest.raises(ssl.SSLCertVerificationError):
                await as_client(impl, url, scenario)
            assert len(sockets) == 1
        finally:
            await server.close_async()

    run(main)
