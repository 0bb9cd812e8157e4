"""A lean handshake's socket builds its protocol object on first need, over real sockets.

Messages never build it; a ping, a close, a fragment or a failure does, and
from then on the socket holds the real object.  Behaviour is the same either
way: the rest of the suite runs with the lazy object, these tests check the
moment it is built and compare with one built at once.
"""

from __future__ import annotations

import pytest

from ws import WebSocket
from ws.protocol import _websockets

from .conftest import connect, echo_server, run


def _lazy(sock: WebSocket) -> bool:
    return isinstance(sock._proto, _websockets.LazyServer)


@pytest.mark.parametrize("eager", [False, True])
def test_messages_leave_it_unbuilt_a_ping_and_the_close_build_it(eager: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_websockets, "EAGER", eager)

    async def main() -> None:
        async with echo_server() as served:
            client, rec = await connect(served.port, "/ws", per_message_deflate=False)
            await rec.wait("open")
            sock, server_rec = await served.socket()
            assert _lazy(sock) is not eager
            for text in ("a", "b" * 70_000):
                client.send(text)
            client.send("frag", fin=False)  # the lean reader joins fragments itself
            client.send("ment")
            messages = await rec.wait("message", 3)
            assert [m[0].data for m in messages] == ["a", "b" * 70_000, "fragment"]
            assert _lazy(sock) is not eager
            client.ping(b"p")
            await rec.wait("pong")
            assert type(sock._proto) is _websockets.Server  # the socket holds the real one now
            sock.ping(b"q")
            await rec.wait("ping")
            client.close(4001, "bye")
            ((code, reason),) = await server_rec.wait("close")
            assert (code, reason) == (4001, "bye")
            assert (await rec.wait("close"))[0] == (4001, "bye")

    run(main)


@pytest.mark.parametrize("eager", [False, True])
def test_a_server_close_and_a_protocol_error_on_an_unbuilt_object(eager: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_websockets, "EAGER", eager)

    async def main() -> None:
        async with echo_server(max_payload=10) as served:
            first, rec = await connect(served.port, "/ws", per_message_deflate=False)
            await rec.wait("open")
            sock, _ = await served.socket()
            sock.close(1000, "done")
            assert (await rec.wait("close"))[0] == (1000, "done")
            second, rec2 = await connect(served.port, "/ws", per_message_deflate=False)
            await rec2.wait("open")
            sock2, server_rec = await served.socket()
            assert _lazy(sock2) is not eager
            second.send("x" * 11)  # over max_payload: 1009
            ((code, _reason),) = await server_rec.wait("close")
            assert code == 1009
            assert (await rec2.wait("close"))[0][0] == 1009

    run(main)
