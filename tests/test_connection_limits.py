"""``max_connections`` (503), ``max_connections_per_ip`` (429) and ``trusted_proxies``, with real clients on loopback.

Refusals happen at the handshake, with ``Retry-After``; established
connections are never touched; the count is exact under churn.  Linux routes
all of 127.0.0.0/8 to the loopback interface, so clients bound to 127.0.0.1
and 127.0.0.2 are two client addresses.
"""

from __future__ import annotations

import asyncio
import random
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import InvalidStatus

from ws import Request, WebSocket, WebSocketServer
from ws.asgi import ASGIApp
from ws.styles.connections import EventContext, websocket

from .conftest import Recorder, echo_server, run, serving, until
from .fixtures.doc_blocks import block, with_port
from .fixtures.processes import ServerProcess, free_port
from .test_asgi import FakeASGI, scope
from .test_deploying import NGINX, Nginx
from .test_limits import T, Bystander
from .test_server import upgrade_request


@dataclass
class Answer:
    """What a raw client got for its upgrade request: status, headers (lower-case names), body; the streams."""

    status: int
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader = field(repr=False)
    writer: asyncio.StreamWriter = field(repr=False)

    def close(self) -> None:
        self.writer.transport.abort()


async def knock(port: int, path: str = "/ws", *, source: str = "127.0.0.1", **request: Any) -> Answer:
    """A raw upgrade request (``request``: ``upgrade_request``'s options) from ``source``; a refusal is read to its end."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), T)
    writer.write(upgrade_request(path, **request))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    body = b""
    if status != 101:
        body = await asyncio.wait_for(reader.read(), T)  # to EOF: a refusal closes the connection
        assert reader.at_eof()
    return Answer(status, headers, body, reader, writer)


async def refused_by_websockets_client(url: str, **options: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        async with ws_connect(url, open_timeout=T, **options):
            pass
    return caught.value


async def echoes(client: ClientConnection, text: str) -> None:
    await client.send(text)
    assert await asyncio.wait_for(client.recv(), T) == text


def forget_clients(*clients: ClientConnection) -> None:
    for client in clients:
        client.transport.abort()


# -- max_connections ----------------------------------------------------------------------


def test_at_the_limit_new_clients_get_503_with_retry_after_and_the_established_keep_talking() -> None:
    async def main() -> None:
        async with echo_server(max_connections=3) as served:
            wss = served.wss
            assert wss is not None
            ours = [await Bystander.open(served.url) for _ in range(2)]
            async with ws_connect(served.url, open_timeout=T) as theirs:
                assert wss.limits.held == 3 and len(wss.clients or ()) == 3

                refusal = await refused_by_websockets_client(served.url)
                assert refusal.response.status_code == 503
                assert refusal.response.headers["Retry-After"] == "5"
                raw = await knock(served.port)
                assert raw.status == 503 and raw.headers["retry-after"] == "5"
                assert raw.headers["content-type"].startswith("text/plain")
                assert b"too many connections" in raw.body
                assert wss.limits.held == 3  # refusals are not counted

                # Nothing happened to the three established connections.
                for n, bystander in enumerate(ours):
                    await bystander.still_echoes(f"still here {n}")
                await echoes(theirs, "and me")

                # One leaves: one more fits, and no more.
                await ours[0].close()
                await until(lambda: wss.limits.held == 2, T, what="the closed connection is still counted")
                async with ws_connect(served.url, open_timeout=T) as newcomer:
                    await echoes(newcomer, "in")
                    assert (await knock(served.port)).status == 503
            await ours[1].close()
            await until(lambda: wss.limits.held == 0, T, what="connections still counted after every close")

    run(main, timeout=60)


def test_a_refused_handshake_never_reaches_verify_client() -> None:
    async def main() -> None:
        calls: list[str | None] = []

        def verify(info: Any) -> bool:
            calls.append(info.req.client_ip)
            return True

        async with echo_server(max_connections=1, verify_client=verify) as served:
            async with ws_connect(served.url, open_timeout=T):
                for _ in range(5):
                    assert (await knock(served.port)).status == 503
            assert calls == ["127.0.0.1"]

    run(main)


def test_a_burst_of_parallel_handshakes_cannot_overshoot() -> None:
    async def main() -> None:
        async def slow_verify(info: Any) -> bool:
            await asyncio.sleep(0.1)  # every handshake of the burst is under way at once
            return True

        async with echo_server(max_connections=5, verify_client=slow_verify) as served:
            wss = served.wss
            assert wss is not None
            answers = await asyncio.gather(*(knock(served.port) for _ in range(20)))
            statuses = sorted(answer.status for answer in answers)
            assert statuses == [101] * 5 + [503] * 15, statuses
            await until(lambda: len(wss.clients or ()) == 5, T, what="the 5 accepted are not all clients")
            assert wss.limits.held == 5
            for answer in answers:
                answer.close()
            await until(lambda: wss.limits.held == 0, T, what="aborted connections still counted")

    run(main)


def test_handshakes_waiting_for_verify_client_hold_their_slot() -> None:
    async def main() -> None:
        let_in = asyncio.Event()
        waiting: list[str] = []

        async def verify(info: Any) -> bool:
            waiting.append(info.req.url)
            await let_in.wait()
            return True

        async with echo_server(max_connections=2, verify_client=verify, verify_timeout=T) as served:
            wss = served.wss
            assert wss is not None
            pending = [asyncio.ensure_future(knock(served.port, f"/ws?n={n}")) for n in range(2)]
            await until(lambda: len(waiting) == 2, T, what="verify_client was not called twice")
            assert wss.limits.held == 2 and not wss.clients
            assert (await knock(served.port, "/ws?n=2")).status == 503  # at once: no verify_client for it
            assert len(waiting) == 2
            let_in.set()
            answers = await asyncio.gather(*pending)
            assert [answer.status for answer in answers] == [101, 101]
            for answer in answers:
                answer.close()
            await until(lambda: wss.limits.held == 0, T, what="connections still counted")

    run(main)


# -- max_connections_per_ip ---------------------------------------------------------------


def test_per_ip_limit_gives_429_to_that_address_only() -> None:
    async def main() -> None:
        async with echo_server(max_connections_per_ip=2, retry_after=2) as served:
            wss = served.wss
            assert wss is not None
            first = [await ws_connect(served.url, open_timeout=T) for _ in range(2)]
            refusal = await refused_by_websockets_client(served.url)
            assert refusal.response.status_code == 429 and refusal.response.headers["Retry-After"] == "2"
            raw = await knock(served.port)
            assert raw.status == 429 and raw.headers["retry-after"] == "2" and b"from your address" in raw.body

            # Another address still gets in, up to its own limit.
            second = [await ws_connect(served.url, open_timeout=T, local_addr=("127.0.0.2", 0)) for _ in range(2)]
            assert (await knock(served.port, source="127.0.0.2")).status == 429
            assert wss.limits.held_by("127.0.0.1") == 2 == wss.limits.held_by("127.0.0.2")

            for n, client in enumerate(first + second):
                await echoes(client, f"untouched {n}")
            await first[0].close()
            await until(lambda: wss.limits.held_by("127.0.0.1") == 1, T, what="the closed connection still counts")
            again = await ws_connect(served.url, open_timeout=T)
            await echoes(again, "back in")
            for client in (again, first[1], *second):
                await client.close()
            await until(lambda: wss.limits.held == 0, T, what="connections still counted")

    run(main)


# -- trusted_proxies ------------------------------------------------------------------------


def collect_client_ips(served: Any) -> list[tuple[str | None, str | None]]:
    """``(client_ip, remote_address)`` of each accepted connection's request, as they come."""
    seen: list[tuple[str | None, str | None]] = []
    served.wss.on("connection", lambda sock, request: seen.append((request.client_ip, request.remote_address)))
    return seen


def test_forwarding_headers_are_believed_from_a_trusted_proxy() -> None:
    async def main() -> None:
        verified: list[str | None] = []

        def verify(info: Any) -> bool:
            verified.append(info.req.client_ip)
            return True

        options = {"max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.1"], "verify_client": verify}
        async with echo_server(**options) as served:
            seen = collect_client_ips(served)
            # nginx: the client's own X-Forwarded-For, then the address nginx saw.
            a = await knock(served.port, extra=(("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),))
            assert a.status == 101
            assert verified == ["203.0.113.7"]
            await until(lambda: seen, T)
            assert seen == [("203.0.113.7", "127.0.0.1")]  # remote_address stays the TCP peer
            # The same client through the proxy again: its own limit, not the proxy's.
            assert (await knock(served.port, extra=(("X-Forwarded-For", "203.0.113.7"),))).status == 429
            b = await knock(served.port, extra=(("X-Forwarded-For", "203.0.113.8"),))
            c = await knock(served.port, extra=(("X-Forwarded-For", "[2001:db8::1]:4711"),))
            assert (b.status, c.status) == (101, 101)
            assert verified == ["203.0.113.7", "203.0.113.8", "2001:db8::1"]
            # Garbage from the proxy: the proxy's own address, which has its one slot.
            d = await knock(served.port, extra=(("X-Forwarded-For", "not-an-address"),))
            assert d.status == 101 and verified[-1] == "127.0.0.1"
            assert (await knock(served.port, extra=(("X-Forwarded-For", "unknown"),))).status == 429
            for answer in (a, b, c, d):
                answer.close()

        # A proxy that writes RFC 7239 Forwarded (forwarded_header='Forwarded'): the same, in that header.
        verified.clear()
        async with echo_server(**options, forwarded_header="Forwarded") as served:
            assert served.wss is not None and served.wss.forwarded_header == "Forwarded"
            a = await knock(served.port, extra=(("Forwarded", "for=6.6.6.6, for=203.0.113.7;proto=https"),))
            assert a.status == 101 and verified == ["203.0.113.7"]
            assert (await knock(served.port, extra=(("Forwarded", "for=203.0.113.7"),))).status == 429
            b = await knock(served.port, extra=(("Forwarded", 'for="[2001:db8::1]:4711"'), ("X-Forwarded-For", "203.0.113.7")))
            assert b.status == 101 and verified[-1] == "2001:db8::1"  # its X-Forwarded-For is not read
            c = await knock(served.port, extra=(("Forwarded", "for=unknown"),))
            assert c.status == 101 and verified[-1] == "127.0.0.1"
            assert (await knock(served.port, extra=(("Forwarded", "for=_hidden"),))).status == 429
            for answer in (a, b, c):
                answer.close()

    run(main)


def test_a_banned_client_behind_nginx_cannot_escape_with_a_header_of_its_own() -> None:
    """The review's case: nginx appends to X-Forwarded-For and passes a client's own Forwarded on untouched.

    A client that added ``Forwarded: for=1.1.1.1`` (or ``for=127.0.0.1``) made the two headers disagree,
    and ``client_ip`` became the proxy: past the ban in verify_client, with the proxy's per-IP quota.
    """

    async def main() -> None:
        banned = {"203.0.113.7"}
        verified: list[str | None] = []

        def verify(info: Any) -> bool:
            verified.append(info.req.client_ip)
            return info.req.client_ip not in banned

        options = {"max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.1"], "verify_client": verify}
        async with echo_server(**options) as served:
            wss = served.wss
            assert wss is not None
            # What nginx forwards (we play nginx on 127.0.0.1): its X-Forwarded-For, the client's other lines.
            nginx = (("X-Forwarded-For", "203.0.113.7"),)
            assert (await knock(served.port, extra=nginx)).status == 401
            for own in (("Forwarded", "for=1.1.1.1"), ("Forwarded", "for=127.0.0.1"), ("Forwarded", 'for="x')):
                assert (await knock(served.port, extra=(*nginx, own))).status == 401, own
            # A line of its own before nginx's: nginx's entry is still the rightmost (HAProxy adds a line).
            own_line = (("X-Forwarded-For", "1.1.1.1"), *nginx)
            assert (await knock(served.port, extra=own_line)).status == 401
            assert verified == ["203.0.113.7"] * 5
            assert wss.limits.held == 0

            # An allowed client: one slot for its address, not a second one under the proxy's.
            nginx = (("X-Forwarded-For", "203.0.113.8"),)
            first = await knock(served.port, extra=nginx)
            assert first.status == 101
            for own in (("Forwarded", "for=1.1.1.1"), ("Forwarded", "for=203.0.113.8, for=127.0.0.1")):
                assert (await knock(served.port, extra=(*nginx, own))).status == 429, own
            assert wss.limits.held == 1 == wss.limits.held_by("203.0.113.8") and wss.limits.held_by("127.0.0.1") == 0
            first.close()
            await until(lambda: wss.limits.held == 0, T, what="the closed connection is still counted")

    run(main)


def test_forwarding_headers_from_an_untrusted_peer_are_ignored() -> None:
    async def main() -> None:
        options = {"max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.2"]}
        async with echo_server(**options) as served:
            seen = collect_client_ips(served)
            spoof = (("X-Forwarded-For", "203.0.113.1"), ("Forwarded", "for=203.0.113.1"))
            a = await knock(served.port, extra=spoof)
            assert a.status == 101
            # Another made-up address does not buy a second slot: the peer is counted.
            assert (await knock(served.port, extra=(("X-Forwarded-For", "203.0.113.2"),))).status == 429
            # From the trusted proxy, the header is the client.
            b = await knock(served.port, source="127.0.0.2", extra=(("X-Forwarded-For", "203.0.113.3"),))
            assert b.status == 101
            await until(lambda: len(seen) == 2, T)
            assert seen == [("127.0.0.1", "127.0.0.1"), ("203.0.113.3", "127.0.0.2")]
            a.close(), b.close()

        # Without trusted_proxies no header is believed.
        async with echo_server(max_connections_per_ip=1) as served:
            seen = collect_client_ips(served)
            a = await knock(served.port, extra=(("X-Forwarded-For", "203.0.113.1"),))
            assert (await knock(served.port, extra=(("X-Forwarded-For", "203.0.113.2"),))).status == 429
            await until(lambda: seen, T)
            assert seen == [("127.0.0.1", "127.0.0.1")]
            a.close()

    run(main)


# -- exact counts under churn -------------------------------------------------------------------


def test_the_count_returns_to_zero_after_200_connect_close_cycles() -> None:
    limit = 10

    async def main() -> None:
        async def verify(info: Any) -> bool:
            if info.req.query("slow"):
                await asyncio.sleep(0.05)
            return not info.req.query("deny")

        async with echo_server(max_connections=limit, max_connections_per_ip=limit, verify_client=verify) as served:
            wss = served.wss
            assert wss is not None
            port, url = served.port, served.url

            async def raw(path: str = "/ws", request: bytes | None = None, split: int | None = None) -> asyncio.StreamWriter:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
                data = request or upgrade_request(path)
                writer.write(data[:split] if split is not None else data)
                await writer.drain()
                return writer

            async def ours() -> None:
                client = WebSocket(url)
                rec = Recorder(client, "open", "message", "close")
                await rec.wait("open", timeout=T)
                client.send("x")
                await rec.wait("message", timeout=T)
                client.close()
                await rec.wait("close", timeout=T)

            async def theirs() -> None:
                async with ws_connect(url, open_timeout=T) as client:
                    await echoes(client, "y")

            async def half_a_head() -> None:
                (await raw(split=30)).transport.abort()

            async def abort_right_after_the_request() -> None:
                (await raw()).transport.abort()

            async def abort_while_verifying() -> None:
                writer = await raw("/ws?slow=1")
                await asyncio.sleep(0.01)
                writer.transport.abort()
                await asyncio.sleep(0.06)  # past the verdict: this worker leaves no slot behind it

            async def abort_once_open() -> None:
                answer = await knock(port)
                assert answer.status == 101
                answer.close()  # no close frame: the connection is lost

            async def denied() -> None:
                assert (await knock(port, "/ws?deny=1")).status == 401

            async def bad_request() -> None:
                assert (await knock(port, version="7")).status == 426

            cycles = [ours, theirs, half_a_head, abort_right_after_the_request, abort_while_verifying, abort_once_open, denied, bad_request]
            rng = random.Random(18)
            plan = [cycles[n % len(cycles)] for n in range(200)]
            rng.shuffle(plan)

            async def worker(share: list[Any]) -> None:
                for cycle in share:
                    await cycle()

            await asyncio.gather(*(worker(plan[n::4]) for n in range(4)))  # 4 at a time, under the limit
            await until(lambda: wss.limits.held == 0, 10, what=f"{wss.limits.held} connections still counted after the churn")
            assert wss.limits.held_by("127.0.0.1") == 0 and not wss.clients

            # All of the limit fits again, and not one more.
            answers = [await knock(port) for _ in range(limit)]
            assert [answer.status for answer in answers] == [101] * limit
            assert (await knock(port)).status == 503
            for answer in answers:
                answer.close()
            await until(lambda: wss.limits.held == 0, T, what="connections still counted")

    run(main, timeout=120)


def test_a_transport_lost_while_verify_client_decides_releases_its_slot() -> None:
    async def main() -> None:
        decide = asyncio.Event()

        async def verify(info: Any) -> bool:
            await decide.wait()
            return True

        wss = WebSocketServer(no_server=True, path="/ws", max_connections=1, verify_client=verify)
        accepted: list[asyncio.Transport] = []

        async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer.transport)  # type: ignore[arg-type]

        listener = await asyncio.start_server(take, "127.0.0.1", 0)
        try:
            port = listener.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            transport = await until(lambda: accepted and accepted[0], T)
            head = upgrade_request().decode().split("\r\n")
            headers = [tuple(part.strip() for part in line.split(":", 1)) for line in head[1:] if line]
            wss.handle_upgrade(Request("GET", "/ws", headers, peername=transport.get_extra_info("peername")), transport)
            await until(lambda: wss.limits.held == 1, T, what="the waiting handshake holds no slot")
            transport.close()  # the connection is gone while verify_client decides
            decide.set()
            await until(lambda: wss.limits.held == 0, T, what="the lost handshake still holds its slot")
            assert not wss.clients
            assert await asyncio.wait_for(reader.read(), T) == b""  # no 101
            writer.close()
        finally:
            listener.close()
            wss.close()

    run(main)


def test_closing_the_server_releases_every_slot() -> None:
    async def main() -> None:
        async with echo_server(max_connections=3) as served:
            wss = served.wss
            assert wss is not None
            answers = [await knock(served.port) for _ in range(3)]
            assert wss.limits.held == 3
            wss.close()
            for answer in answers:  # raw peers never answer the 1001: they just go
                assert await asyncio.wait_for(answer.reader.read(2), T) == b"\x88\x02"
                answer.close()
            await asyncio.wait_for(wss.wait_closed_async(), T)
            assert wss.limits.held == 0

    run(main)


# -- options -------------------------------------------------------------------------------------


def test_options_and_their_javascript_spellings() -> None:
    wss = WebSocketServer(
        {"noServer": True, "maxConnections": 10, "maxConnectionsPerIp": 2, "retryAfter": 1, "perIpIpv6Prefix": 64,
         "trustedProxies": ["10.0.0.0/8"]}
    )
    limits = wss.limits
    assert (limits.max_connections, limits.max_connections_per_ip, limits.retry_after, limits.per_ip_ipv6_prefix) == (10, 2, 1, 64)
    assert wss.trusted_proxies is not None and "10.1.2.3" in wss.trusted_proxies
    plain = WebSocketServer(no_server=True)
    assert plain.limits.max_connections is None and plain.limits.retry_after == 5 and plain.trusted_proxies is None
    with pytest.raises(ValueError, match="max_connections must be a positive integer"):
        WebSocketServer(no_server=True, max_connections=0)
    with pytest.raises(ValueError, match="trusted_proxies: 'proxy.internal'"):
        WebSocketServer(no_server=True, trusted_proxies=["proxy.internal"])
    with pytest.raises(TypeError, match="given twice"):
        WebSocketServer(no_server=True, max_connections=1, maxConnections=2)
    assert plain.forwarded_header == "X-Forwarded-For"
    assert WebSocketServer(no_server=True, forwardedHeader="forwarded").forwarded_header == "Forwarded"
    assert WebSocketServer(no_server=True, forwarded_header="X-FORWARDED-FOR").forwarded_header == "X-Forwarded-For"
    with pytest.raises(ValueError, match="forwarded_header must be 'X-Forwarded-For' .* or 'Forwarded'.*'X-Real-IP'"):
        WebSocketServer(no_server=True, trusted_proxies=["127.0.0.1"], forwarded_header="X-Real-IP")
    with pytest.raises(TypeError, match="forwarded_header must be a header name"):
        WebSocketServer(no_server=True, forwarded_header=["X-Forwarded-For", "Forwarded"])


# -- the connections style (ws.styles.connections) ---------------------------------------------


def test_the_connections_style_admits_before_its_connect_handlers_run() -> None:
    """The review's case: the connect handlers ran before the limits and trusted_proxies were applied.

    They saw the proxy's address as ``client_ip``, and with ``max_connections=1`` twenty slow handlers
    ran at once for clients that then got 503.
    """

    async def main() -> None:
        async with serving(None) as served:
            socket = websocket(served.server, "socket", max_connections=1, trusted_proxies=["127.0.0.1"])
            wss = socket.wss
            running, peak, seen = 0, 0, []

            @socket.on("connect")
            async def connect(ctx: EventContext) -> None:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                seen.append(ctx.req.request.client_ip)
                await asyncio.sleep(0.3)  # a database lookup of the session cookie, say
                running -= 1

            def through_nginx(n: int) -> Any:
                return knock(served.port, "/socket", extra=(("X-Forwarded-For", f"203.0.113.{n}"),))

            answers = await asyncio.gather(*(through_nginx(n) for n in range(20)))
            statuses = sorted(answer.status for answer in answers)
            assert statuses == [101] + [503] * 19, statuses
            assert peak == 1  # no handler ran for a refused client
            (admitted,) = [n for n, answer in enumerate(answers) if answer.status == 101]
            assert seen == [f"203.0.113.{admitted}"]  # the client's address, not nginx's
            assert wss.limits.held == 1 and len(wss.clients or ()) == 1
            for answer in answers:
                answer.close()
            await until(lambda: wss.limits.held == 0, T, what="the closed connection is still counted")

    run(main)


def test_the_connections_style_gives_the_slot_back_on_every_other_end() -> None:
    """A slot taken before the connect handlers is released exactly once: refused, failed, timed out, gone."""

    async def main() -> None:
        async with serving(None) as served:
            options = {"max_connections": 2, "max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.1"]}
            socket = websocket(served.server, "socket", connect_timeout=1, allowed_origins=["https://app.example"], **options)
            wss = socket.wss
            called: list[str] = []
            entered, proceed = asyncio.Event(), asyncio.Event()

            @socket.on("connect")
            async def connect(ctx: EventContext) -> None:
                who = ctx.req.query.get("who", [""])[0]
                called.append(who)
                if who == "eve":
                    ctx.res.success = False
                elif who == "bug":
                    raise RuntimeError("connect handler bug")
                elif who == "slow":
                    await asyncio.sleep(30)
                elif who == "gone":
                    entered.set()
                    await proceed.wait()  # then it admits a client that has left

            page = ("Origin", "https://app.example")

            def knock_as(who: str, ip: str = "203.0.113.1", origin: tuple[str, str] = page) -> Any:
                return knock(served.port, f"/socket?who={who}", extra=(("X-Forwarded-For", ip), origin))

            assert (await knock_as("eve")).status == 403
            assert (await knock_as("bug")).status == 500
            assert (await knock_as("slow")).status == 503  # connect_timeout
            assert (await knock_as("evil", origin=("Origin", "https://evil.example"))).status == 403
            assert called == ["eve", "bug", "slow"]  # no handler for the page allowed_origins refused
            assert wss.limits.held == 0

            # A client that leaves while its handler runs.
            _, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(upgrade_request("/socket?who=gone", extra=(("X-Forwarded-For", "203.0.113.1"), page)))
            await asyncio.wait_for(entered.wait(), T)
            assert wss.limits.held == 1 == wss.limits.held_by("203.0.113.1")
            # Its address is at its limit: 429 at once, no handler runs.
            assert (await knock_as("again")).status == 429 and called[-1] == "gone"
            writer.transport.abort()
            await asyncio.sleep(0.05)
            proceed.set()
            await until(lambda: wss.limits.held == 0, T, what="the client gone during its handler still counts")
            assert not wss.clients

            # And both slots fit again, each held by its open connection, then released.
            answers = [await knock_as("ann", "203.0.113.2"), await knock_as("bob", "203.0.113.3")]
            assert [answer.status for answer in answers] == [101, 101]
            assert (await knock_as("cat", "203.0.113.4")).status == 503
            assert wss.limits.held == 2 and called[-2:] == ["ann", "bob"]
            for answer in answers:
                answer.close()
            await until(lambda: wss.limits.held == 0, T, what="closed connections still counted")

    run(main)


# -- ASGI ----------------------------------------------------------------------------------------


def test_asgi_refuses_at_the_limit_the_same_way() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True, path="/ws", max_connections=1, max_connections_per_ip=1, trusted_proxies=["127.0.0.1"])
        app = ASGIApp(wss)
        http_response = {"websocket.http.response": {}}
        first = FakeASGI({"type": "websocket.connect"})
        running = asyncio.ensure_future(app(scope(extensions=http_response), first.receive, first.send))
        await first.sent_type("websocket.accept")
        assert wss.limits.held == 1

        refused = FakeASGI({"type": "websocket.connect"})
        await app(scope(extensions=http_response), refused.receive, refused.send)
        start, body = refused.sent
        assert start["status"] == 503 and (b"retry-after", b"5") in start["headers"]
        assert b"too many connections" in body["body"]
        refused = FakeASGI({"type": "websocket.connect"})
        await app(scope(), refused.receive, refused.send)  # no response extension: a close before accept
        assert refused.sent[0]["type"] == "websocket.close" and refused.sent[0]["reason"].startswith("503 ")

        first.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(running, T)
        assert wss.limits.held == 0

        # Per client address, through the trusted proxy's header.
        forwarded = scope(extensions=http_response)
        forwarded["headers"] = [*forwarded["headers"], (b"x-forwarded-for", b"203.0.113.7")]
        seen: list[str | None] = []
        wss.on("connection", lambda sock, request: seen.append(request.client_ip))
        first = FakeASGI({"type": "websocket.connect"})
        running = asyncio.ensure_future(app(forwarded, first.receive, first.send))
        await first.sent_type("websocket.accept")
        assert seen == ["203.0.113.7"] and wss.limits.held_by("203.0.113.7") == 1
        first.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(running, T)
        assert wss.limits.held == 0

    run(main)


def test_asgi_client_that_leaves_during_verify_client_releases_its_slot() -> None:
    async def main() -> None:
        async def verify(info: Any) -> bool:
            await asyncio.sleep(30)
            return True

        wss = WebSocketServer(no_server=True, path="/ws", max_connections=1, verify_client=verify)
        fake = FakeASGI({"type": "websocket.connect"})
        task = asyncio.ensure_future(ASGIApp(wss)(scope(), fake.receive, fake.send))
        await until(lambda: wss.limits.held == 1, T)
        task.cancel()  # what an ASGI server does when the client goes away
        with pytest.raises(asyncio.CancelledError):
            await task
        assert wss.limits.held == 0

    run(main)


APP = """
from ws import WebSocketServer
from ws.asgi import ASGIApp
from ws.styles.connections import EventContext, websocket

wss = WebSocketServer(no_server=True, path="/ws", max_connections=1, retry_after=3)
wss.on("connection", lambda sock, request: sock.on("message", lambda event: sock.send(event.data)))
app = ASGIApp(wss)
"""


def test_under_uvicorn_the_refusal_is_a_503_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / "limited_app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "uvicorn", "limited_app:app", "--app-dir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)],
        port, path="/ws",
    )
    try:
        async def main() -> None:
            async with ws_connect(server.url, open_timeout=T) as first:
                refusal = await refused_by_websockets_client(server.url)
                assert refusal.response.status_code == 503 and refusal.response.headers["Retry-After"] == "3"
                await echoes(first, "still here")
            # Its slot is free once it left.
            for _ in range(50):
                try:
                    async with ws_connect(server.url, open_timeout=T) as second:
                        await echoes(second, "next")
                    return
                except InvalidStatus:
                    await asyncio.sleep(0.1)
            raise AssertionError("the slot of the closed connection was not released")

        run(main, timeout=60)
    finally:
        out = server.stop()
    assert "Traceback" not in out, out


# -- behind a real nginx ---------------------------------------------------------------------------


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup-peers installs Debian's nginx-light)")
def test_behind_nginx_each_client_address_is_counted(tmp_path: Path) -> None:
    """docs/security.md's nginx location, in front of trusted_proxies=['127.0.0.1']."""

    async def main() -> None:
        options = {"max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.1"]}
        async with echo_server(**options) as served:
            seen = collect_client_ips(served)
            port = free_port()
            location = with_port(block("limits-nginx-location").code, 8080, served.port)
            with Nginx(tmp_path / "nginx", f"server {{\n    listen 127.0.0.1:{port};\n{location}\n}}", port) as nginx:
                await nginx.ready()
                url = f"ws://127.0.0.1:{port}/ws"
                spoofed = {"X-Forwarded-For": "203.0.113.9"}
                first = await ws_connect(url, open_timeout=T, local_addr=("127.0.0.2", 0))
                await echoes(first, "through nginx")
                await until(lambda: seen, T)
                assert seen == [("127.0.0.2", "127.0.0.1")]
                # The same client again, claiming another address: nginx appends the real one, which is counted.
                refusal = await refused_by_websockets_client(url, local_addr=("127.0.0.2", 0), additional_headers=spoofed)
                assert refusal.response.status_code == 429 and refusal.response.headers["Retry-After"] == "5"
                # Its own Forwarded header: nginx passes it on untouched, and it is not read (it used to make
                # client_ip nginx's own address, a second slot and a way past a ban).
                for own in ({"Forwarded": "for=1.1.1.1"}, {"Forwarded": "for=127.0.0.1"}, {"Forwarded": 'for="x'}):
                    refusal = await refused_by_websockets_client(url, local_addr=("127.0.0.2", 0), additional_headers=own)
                    assert refusal.response.status_code == 429, own
                # Another client address has its own slot.
                other = await ws_connect(url, open_timeout=T, local_addr=("127.0.0.3", 0), additional_headers=spoofed)
                await echoes(other, "me too")
                await until(lambda: len(seen) == 2, T)
                assert seen[1] == ("127.0.0.3", "127.0.0.1")
                # Straight to the server, the header is the client's own word: ignored.
                direct = await refused_by_websockets_client(served.url, local_addr=("127.0.0.2", 0), additional_headers=spoofed)
                assert direct.response.status_code == 429
                await first.close()
                await other.close()
                assert "[emerg]" not in nginx.errors(), nginx.errors()

    run(main, timeout=60)
