"""Interop with Node's ``ws`` (tests/fixtures/node), both directions.

Our client against a Node ``WebSocketServer`` and a Node client against our
server, each with and without permessage-deflate: subprotocols, text and
binary echo, 16 MiB messages, fragmented messages, ping/pong, close codes
and reasons both ways, and handshake refusals by ``verifyClient`` /
``verify_client`` as each side reports them.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from ws import HandshakeError, Reject, WebSocket, WebSocketServer
from ws.http import Server

from .conftest import Recorder, connect, run
from .fixtures.node_peer import NodePeer, pattern, require_node_ws
from .fixtures.tls import TestPKI, check_wss_peer

BIG = 16 * 1024 * 1024
DEFLATE = pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
TIMEOUT = 60  # a loaded CI machine moving 16 MiB through deflate twice
pki = TestPKI()


@pytest.fixture(autouse=True)
def _node() -> None:
    require_node_ws()


# -- our client -> Node server --------------------------------------------------------


@DEFLATE
@pytest.mark.interop("Node ws server", "echo", "large", "subprotocol", "deflate")
def test_client_echo_big_and_negotiation(deflate: bool) -> None:
    async def main() -> None:
        node, port = await NodePeer.server({"echo": True, "perMessageDeflate": deflate, "prefer": "chat.v2"})
        async with node:
            # BIG passes the 1 MiB default of a compressed connection: the limit is set, as a user would.
            sock, rec = await connect(port, "/echo?x=1", ["chat.v1", "chat.v2"], max_payload=BIG)
            await rec.wait("open", timeout=20)
            opened = await node.wait("open")
            assert opened["path"] == "/echo?x=1"
            assert sock.protocol == opened["protocol"] == "chat.v2"
            assert ("permessage-deflate" in sock.extensions) is deflate
            assert ("permessage-deflate" in opened["extensions"]) is deflate
            big = pattern(BIG, 3)
            sock.send("héllo ✓")
            sock.send(b"\x00\xff\x01")
            sock.send(big)
            messages = [m[0] for m in await rec.wait("message", 3, timeout=TIMEOUT)]
            assert [(m.data if len(m.data) < 100 else len(m.data)) for m in messages] == ["héllo ✓", b"\x00\xff\x01", BIG]
            assert messages[2].data == big
            seen = node.of("message")
            assert [(e["binary"], e["length"]) for e in seen] == [(False, len("héllo ✓".encode())), (True, 3), (True, BIG)]
            assert seen[0]["text"] == "héllo ✓"
            assert seen[2]["sha256"] == hashlib.sha256(big).hexdigest()
            sock.close()
            await rec.wait("close", timeout=20)
            assert rec.count("error") == 0

    run(main, TIMEOUT + 30)


@DEFLATE
@pytest.mark.interop("Node ws server", "fragments", "large", "deflate")
def test_client_receives_fragments_and_big(deflate: bool) -> None:
    async def main() -> None:
        node, port = await NodePeer.server({"perMessageDeflate": deflate})
        async with node:
            sock, rec = await connect(port, max_payload=BIG)
            await rec.wait("open", timeout=20)
            await node.wait("open")
            node.command("fragments", id=1, parts=["frag", "men", "ted ✓"])
            parts = [base64.b64encode(p).decode() for p in (b"\x01\x02", b"", b"\x03" * 70000)]
            node.command("fragments", id=1, parts=parts, binary=True)
            node.command("sendBig", id=1, size=BIG, seed=9)
            messages = [m[0] for m in await rec.wait("message", 3, timeout=TIMEOUT)]
            assert messages[0].data == "fragmented ✓"
            assert messages[1].data == b"\x01\x02" + b"\x03" * 70000 and messages[1].is_binary
            assert messages[2].data == pattern(BIG, 9)
            sock.close()
            await rec.wait("close", timeout=20)

    run(main, TIMEOUT + 30)


@DEFLATE
@pytest.mark.interop("Node ws server", "fragments-sent", "deflate")
def test_client_sends_fragments(deflate: bool) -> None:
    async def main() -> None:
        node, port = await NodePeer.server({"echo": True, "perMessageDeflate": deflate})
        async with node:
            sock, rec = await connect(port, per_message_deflate=deflate)
            await rec.wait("open", timeout=20)
            await node.wait("open")
            sock.send("frag", fin=False)
            sock.send("men", fin=False)
            sock.send("ted ✓")
            sock.send(b"\x01" * 70000, fin=False)
            sock.send(b"\x02", fin=True)
            messages = [m[0] for m in await rec.wait("message", 2, timeout=20)]
            seen = node.of("message")
            assert seen[0]["text"] == "fragmented ✓" and (seen[1]["binary"], seen[1]["length"]) == (True, 70001)
            assert messages[0].data == "fragmented ✓" and messages[1].data == b"\x01" * 70000 + b"\x02"
            sock.close()
            await rec.wait("close", timeout=20)
            assert rec.count("error") == 0

    run(main)


@pytest.mark.interop("Node ws server", "ping")
def test_client_ping_pong() -> None:
    async def main() -> None:
        node, port = await NodePeer.server({})
        async with node:
            sock, rec = await connect(port)
            await rec.wait("open", timeout=20)
            await node.wait("open")
            sock.ping("py-ping")
            assert (await node.wait("ping"))["data"] == "py-ping"
            assert (await rec.wait("pong", timeout=20))[0] == (b"py-ping",)
            node.command("ping", id=1, data="node-ping")
            assert (await rec.wait("ping", timeout=20))[0] == (b"node-ping",)
            assert (await node.wait("pong"))["data"] == "node-ping"
            sock.close()
            await rec.wait("close", timeout=20)

    run(main)


@pytest.mark.interop("Node ws server", "close")
def test_client_close_codes_both_ways() -> None:
    async def main() -> None:
        node, port = await NodePeer.server({})
        async with node:
            sock, rec = await connect(port)
            await rec.wait("open", timeout=20)
            sock.close(4001, "py bye ✓")
            assert (await rec.wait("close", timeout=20))[0] == (4001, "py bye ✓")
            closed = await node.wait("close")
            assert (closed["code"], closed["reason"]) == (4001, "py bye ✓")

            sock, rec = await connect(port)
            await rec.wait("open", timeout=20)
            await node.wait("open", 2)
            node.command("close", id=2, code=4002, reason="node bye")
            assert (await rec.wait("close", timeout=20))[0] == (4002, "node bye")
            closed = await node.wait("close", 2)
            assert (closed["code"], closed["reason"]) == (4002, "node bye")
            assert rec.count("error") == 0

    run(main)


@pytest.mark.interop("Node ws server", "refusal")
def test_client_sees_node_verify_client_rejection() -> None:
    async def main() -> None:
        node, port = await NodePeer.server({})
        async with node:
            _, rec = await connect(port, headers={"X-Reject": "403"})
            await rec.wait("close", timeout=20)
            assert rec.count("open") == 0
            (status, headers, body), = rec.args("unexpected-response")
            assert status == 403
            assert ("x-refused-by", "node-ws") in [(k.lower(), v) for k, v in headers]
            assert body == b"Refused by Node"
            (error,), = rec.args("error")
            assert isinstance(error, HandshakeError) and error.status == 403
            assert str(error) == "Unexpected server response: 403 Forbidden"
            assert not node.of("open")

    run(main)


# -- Node client -> our server ----------------------------------------------------------


async def our_server(deflate: bool = False, reject: bool = False) -> tuple[Server, list[WebSocket], list[Recorder]]:
    """An echo server on ``/echo``; its sockets and their recorders land in the returned lists."""
    server = Server("127.0.0.1:0")
    sockets: list[WebSocket] = []
    recorders: list[Recorder] = []

    def verify(info: Any) -> bool:
        if reject or info.req.get_header("x-reject"):
            raise Reject(403, "Refused by Python", {"X-Refused-By": "ws-python"})
        return True

    def on_connection(sock: WebSocket, request: Any) -> None:
        sockets.append(sock)
        recorders.append(Recorder(sock, "message", "ping", "pong", "close", "error"))
        sock.on("message", lambda event: sock.send(event.data))

    def choose(offered: list[str], request: Any) -> str | None:
        return "chat.v2" if "chat.v2" in offered else None

    wss = WebSocketServer(
        server=server, path="/echo", per_message_deflate=deflate, verify_client=verify, handle_protocols=choose,
        max_payload=BIG,  # over the 1 MiB default of a compressed connection
    )
    wss.on("connection", on_connection)
    await server.serve_async()
    return server, sockets, recorders


@DEFLATE
@pytest.mark.interop("Node ws client", "echo", "large", "subprotocol", "deflate")
def test_node_client_echo_big_and_negotiation(deflate: bool) -> None:
    async def main() -> None:
        server, sockets, recorders = await our_server(deflate)
        try:
            url = f"ws://127.0.0.1:{server.port}/echo"
            async with await NodePeer.client(url, {"protocols": ["chat.v1", "chat.v2"]}) as node:
                opened = await node.wait("open")
                assert opened["protocol"] == "chat.v2" == sockets[0].protocol
                assert ("permessage-deflate" in opened["extensions"]) is deflate
                assert ("permessage-deflate" in sockets[0].extensions) is deflate
                node.command("send", id=1, text="héllo ✓")
                node.command("send", id=1, binary=base64.b64encode(b"\x00\xff").decode())
                node.command("sendBig", id=1, size=BIG, seed=5)
                await node.wait("message", 3, timeout=TIMEOUT)
                seen = node.of("message")
                assert seen[0]["text"] == "héllo ✓" and not seen[0]["binary"]
                assert (seen[1]["binary"], seen[1]["length"]) == (True, 2)
                assert (seen[2]["length"], seen[2]["sha256"]) == (BIG, hashlib.sha256(pattern(BIG, 5)).hexdigest())
                received = [m[0].data for m in recorders[0].args("message")]
                assert received[:2] == ["héllo ✓", b"\x00\xff"] and received[2] == pattern(BIG, 5)
                node.command("close", id=1, code=1000, reason="")
                await node.wait("close")
        finally:
            await server.close_async()

    run(main, TIMEOUT + 30)


@DEFLATE
@pytest.mark.interop("Node ws client", "fragments", "deflate")
def test_node_client_fragments(deflate: bool) -> None:
    async def main() -> None:
        server, _, recorders = await our_server(deflate)
        try:
            async with await NodePeer.client(f"ws://127.0.0.1:{server.port}/echo") as node:
                await node.wait("open")
                node.command("fragments", id=1, parts=["a" * 1000, "b", "✓"])
                parts = [base64.b64encode(b"\x00" * 10).decode(), base64.b64encode(b"\x01" * 100000).decode()]
                node.command("fragments", id=1, parts=parts, binary=True)
                echoed = await node.wait("message", 2)
                rec = recorders[0]
                received = [m[0] for m in await rec.wait("message", 2, timeout=20)]
                assert received[0].data == "a" * 1000 + "b✓"
                assert received[1].data == b"\x00" * 10 + b"\x01" * 100000 and received[1].is_binary
                assert echoed["length"] == 100010 and node.of("message")[0]["text"] == "a" * 1000 + "b✓"
                node.command("close", id=1, code=1000)
                await node.wait("close")
        finally:
            await server.close_async()

    run(main)


@DEFLATE
@pytest.mark.interop("Node ws client", "fragments-sent", "deflate")
def test_node_client_receives_our_fragments(deflate: bool) -> None:
    async def main() -> None:
        server, sockets, _ = await our_server(deflate)
        try:
            async with await NodePeer.client(f"ws://127.0.0.1:{server.port}/echo") as node:
                await node.wait("open")
                sock = sockets[0]
                sock.send("frag", fin=False)
                sock.send("men", fin=False)
                sock.send("ted ✓")
                sock.send(b"\x01" * 70000, fin=False)
                sock.send(b"\x02", fin=True)
                await node.wait("message", 2, timeout=20)
                seen = node.of("message")
                assert seen[0]["text"] == "fragmented ✓" and not seen[0]["binary"]
                assert (seen[1]["binary"], seen[1]["length"]) == (True, 70001)
                node.command("close", id=1, code=1000)
                await node.wait("close")
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop("Node ws client", "ping")
def test_node_client_ping_pong() -> None:
    async def main() -> None:
        server, sockets, recorders = await our_server()
        try:
            async with await NodePeer.client(f"ws://127.0.0.1:{server.port}/echo") as node:
                await node.wait("open")
                rec = recorders[0]
                node.command("ping", id=1, data="node-ping")
                assert (await rec.wait("ping", timeout=20))[0] == (b"node-ping",)
                assert (await node.wait("pong"))["data"] == "node-ping"
                sockets[0].ping(b"py-ping")
                assert (await node.wait("ping"))["data"] == "py-ping"
                assert (await rec.wait("pong", timeout=20))[0] == (b"py-ping",)
                node.command("close", id=1, code=1000)
                await node.wait("close")
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop("Node ws client", "close")
def test_node_client_close_codes_both_ways() -> None:
    async def main() -> None:
        server, sockets, recorders = await our_server()
        try:
            url = f"ws://127.0.0.1:{server.port}/echo"
            async with await NodePeer.client(url) as node:
                await node.wait("open")
                node.command("close", id=1, code=4003, reason="node bye ✓")
                closed = await node.wait("close")
                assert (closed["code"], closed["reason"]) == (4003, "node bye ✓")
                rec = recorders[0]
                assert (await rec.wait("close", timeout=20))[0] == (4003, "node bye ✓")
            async with await NodePeer.client(url) as node:
                await node.wait("open")
                sockets[1].close(4004, "py bye")
                closed = await node.wait("close")
                assert (closed["code"], closed["reason"]) == (4004, "py bye")
                rec = recorders[1]
                assert (await rec.wait("close", timeout=20))[0] == (4004, "py bye")
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop("Node ws client", "refusal")
def test_node_client_sees_verify_client_rejection() -> None:
    async def main() -> None:
        server, sockets, _ = await our_server(reject=True)
        try:
            async with await NodePeer.client(f"ws://127.0.0.1:{server.port}/echo") as node:
                refused = await node.wait("unexpected-response")
                assert refused["status"] == 403
                assert refused["headers"]["x-refused-by"] == "ws-python"
                assert refused["body"] == "Refused by Python\n"
                assert not node.of("open") and sockets == []
        finally:
            await server.close_async()

    run(main)


# -- TLS (wss://) both ways --------------------------------------------------------------


@pytest.mark.interop("Node ws server", "wss")
def test_client_wss_to_node_server(tmp_path: Path) -> None:
    async def main() -> None:
        cert, key = pki.server_files(tmp_path, "localhost")
        node, port = await NodePeer.server({"echo": True, "tls": {"cert": cert, "key": key}})
        async with node:
            await check_wss_peer(f"wss://localhost:{port}/", pki.client_context())
            assert len(node.of("open")) == 1

    run(main)


@pytest.mark.interop("Node ws client", "wss")
def test_node_client_wss_to_our_server(tmp_path: Path) -> None:
    async def main() -> None:
        server = Server("127.0.0.1:0", ssl=pki.server_context("localhost"))
        sockets: list[WebSocket] = []

        def on_connection(sock: WebSocket, request: Any) -> None:
            sockets.append(sock)
            sock.on("message", lambda event: sock.send(event.data))

        WebSocketServer(server=server, path="/echo").on("connection", on_connection)
        await server.serve_async()
        try:
            url = f"wss://localhost:{server.port}/echo"
            async with await NodePeer.client(url, {"ca": pki.ca_file(tmp_path / "ca.pem")}) as node:
                await node.wait("open")
                node.command("send", id=1, text="over tls")
                assert (await node.wait("message"))["text"] == "over tls"
                node.command("close", id=1, code=1000)
                await node.wait("close")
            async with await NodePeer.client(url) as node:  # Node's own CA list only
                error = await node.wait("error")
                assert error["code"] in ("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY")
                assert not node.of("open")
            assert len(sockets) == 1
        finally:
            await server.close_async()

    run(main)
