"""ws.connection.keepalive: pings find half-open peers, on the server and on the client.

A frozen process (SIGSTOP) keeps its TCP connection: its kernel still
acknowledges our bytes, so only a missing pong can tell it is gone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from ws import WebSocket
from ws.connection.keepalive import Heartbeat
from ws.server import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT

from .conftest import ROOT, Recorder, echo_server, run, until
from .test_limits import PING, T

INTERVAL, TIMEOUT = 0.2, 0.3
SLACK = 3.0  # a loaded machine may be late; detection must still come

CLIENT_SCRIPT = """
import sys
from ws import WebSocket
sock = WebSocket(sys.argv[1], per_message_deflate=False)
sock.on('open', lambda: print('open', flush=True))
sock.on('close', lambda code, reason: print('close', code, flush=True))
"""


def test_server_closes_a_frozen_client_with_1011() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=INTERVAL, ping_timeout=TIMEOUT) as served:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "WS_NO_SIGNALS": "1"}
            child = subprocess.Popen(
                [sys.executable, "-c", CLIENT_SCRIPT, served.url],
                stdout=subprocess.PIPE,
                env=env,
            )
            try:
                loop = asyncio.get_running_loop()
                line = await asyncio.wait_for(loop.run_in_executor(None, child.stdout.readline), 20)  # type: ignore[union-attr]
                assert line.strip() == b"open"
                sock, rec = await served.socket()
                pongs = Recorder(sock, "pong")
                await pongs.wait("pong", 2, timeout=T)  # alive: it answers pings
                assert sock.ready_state == WebSocket.OPEN
                child.send_signal(signal.SIGSTOP)
                frozen_at = loop.time()
                ((code, reason),) = await rec.wait("close", timeout=INTERVAL + TIMEOUT + SLACK)
                elapsed = loop.time() - frozen_at
                assert code == 1011 and "ping" in reason
                assert elapsed < INTERVAL + TIMEOUT + SLACK, elapsed
                assert rec.count("close") == 1
                assert sock not in served.wss.clients
            finally:
                child.send_signal(signal.SIGCONT)
                child.kill()
                child.wait(10)
                child.stdout.close()  # type: ignore[union-attr]

    run(main, 60)


def test_a_live_peer_keeps_answering_and_stays_open() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=INTERVAL, ping_timeout=TIMEOUT) as served:
            client = WebSocket(served.url)
            crec = Recorder(client, "open", "ping", "close")
            await crec.wait("open", timeout=T)
            sock, rec = await served.socket()
            pongs = Recorder(sock, "pong")
            await pongs.wait("pong", 4, timeout=T)
            assert crec.count("ping") >= 4
            assert sock.ready_state == WebSocket.OPEN and rec.count("close") == 0
            client.close()
            ((code, _),) = await crec.wait("close", timeout=T)
            assert code == 1000

    run(main)


async def mute_server(port_box: list[int], pinged: asyncio.Event) -> asyncio.AbstractServer:
    """Accepts one WebSocket handshake, then reads everything and answers nothing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        try:
            while data := await reader.read(65536):
                if data[0] & 0x0F == PING:
                    pinged.set()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_box.append(server.sockets[0].getsockname()[1])
    return server


def test_client_keepalive_closes_a_silent_server_with_1011() -> None:
    async def main() -> None:
        pinged = asyncio.Event()
        port: list[int] = []
        server = await mute_server(port, pinged)
        async with server:
            client = WebSocket(f"ws://127.0.0.1:{port[0]}/", ping_interval=INTERVAL, ping_timeout=TIMEOUT)
            rec = Recorder(client, "open", "close", "error")
            await rec.wait("open", timeout=T)
            loop = asyncio.get_running_loop()
            opened = loop.time()
            ((code, reason),) = await rec.wait("close", timeout=INTERVAL + TIMEOUT + SLACK)
            assert code == 1011 and "ping" in reason
            assert loop.time() - opened < INTERVAL + TIMEOUT + SLACK
            assert pinged.is_set()
            assert rec.count("close") == 1

    run(main)


def test_client_keepalive_is_off_by_default() -> None:
    async def main() -> None:
        pinged = asyncio.Event()
        port: list[int] = []
        server = await mute_server(port, pinged)
        async with server:
            client = WebSocket(f"ws://127.0.0.1:{port[0]}/")
            rec = Recorder(client, "open", "close")
            await rec.wait("open", timeout=T)
            # negative check: a ping that is never scheduled has no event to await
            await asyncio.sleep(0.5)
            assert not pinged.is_set() and client.ready_state == WebSocket.OPEN
            client.terminate()
            await rec.wait("close", timeout=T)

    run(main)


def test_server_keepalive_defaults_and_opt_out() -> None:
    async def main() -> None:
        async with echo_server() as served:
            heartbeat = served.wss._heartbeat
            assert heartbeat is not None
            assert (heartbeat.interval, heartbeat.timeout) == (DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT) == (20.0, 20.0)
        async with echo_server(pingInterval=None) as served:
            heartbeat = served.wss._heartbeat  # it still sweeps for message_timeout, without pings
            assert heartbeat is not None and heartbeat.interval is None and heartbeat.message_timeout == 60.0
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "ping", "close")
            await rec.wait("open", timeout=T)
            # negative check: a ping that is never scheduled has no event to await
            await asyncio.sleep(0.3)
            assert rec.count("ping") == 0
            client.close()
            await rec.wait("close", timeout=T)
        async with echo_server(pingInterval=None, messageTimeout=None) as served:
            assert served.wss._heartbeat is None

    run(main)


@pytest.mark.parametrize(
    "interval, timeout",
    [(0, 1), (-1, 1), (1, 0), (1, -2)],
)
def test_heartbeat_rejects_non_positive_values(interval: float, timeout: float) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="must be positive"):
            Heartbeat(loop, interval, timeout)
    finally:
        loop.close()


def test_one_heartbeat_timer_for_many_sockets_and_none_when_idle() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=INTERVAL, ping_timeout=TIMEOUT) as served:
            heartbeat = served.wss._heartbeat
            clients = [WebSocket(served.url) for _ in range(5)]
            recs = [Recorder(c, "open", "close") for c in clients]
            for rec in recs:
                await rec.wait("open", timeout=T)
            await until(lambda: len(heartbeat.sockets) >= 5, timeout=T)
            assert heartbeat._timer is not None
            # Off asyncio's heap: while a timer is pending there, every loop turn (every read) pays for it.
            scheduled = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
            assert not [h for h in scheduled if not h.cancelled() and h._callback == heartbeat._tick]
            for client in clients:
                client.close()
            for rec in recs:
                await rec.wait("close", timeout=T)
            await until(lambda: not heartbeat.sockets and heartbeat._timer is None, timeout=T, what="heartbeat still armed")

    run(main)
