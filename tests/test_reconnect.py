"""ws.reconnect: backoff, queueing and refusals, against servers that die and come back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from websockets.asyncio.server import serve

from ws.exceptions import NotOpenError
from ws.reconnect import QueueFullError, ReconnectError, ReconnectingWebSocket, backoff_delay

from .conftest import ROOT, Recorder, run, until
from .fixtures.processes import free_port


async def echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)



def test_backoff_is_exponential_capped_and_jittered() -> None:
    delays = [backoff_delay(n, 0.1, 1.0, 2.0, 0.0) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_delay(3, 0.1, 1.0, 2.0, 0.5, rng=lambda: 1.0) == pytest.approx(0.2)
    assert backoff_delay(3, 0.1, 1.0, 2.0, 0.5, rng=lambda: 0.0) == pytest.approx(0.4)
    spread = {round(backoff_delay(2, 1.0, 10.0, 2.0, 0.5), 6) for _ in range(50)}
    assert len(spread) > 1 and all(1.0 <= d <= 2.0 for d in spread)


def test_camel_case_options_and_aliases() -> None:
    async def main() -> None:
        rws = ReconnectingWebSocket("ws://127.0.0.1:1/", maxRetries=0, maxQueued=7, initialDelay=0.01, maxDelay=0.01, handshakeTimeout=5)
        assert (rws.max_retries, rws.max_queued, rws.initial_delay) == (0, 7, 0.01)
        assert rws.readyState == rws.ready_state == ReconnectingWebSocket.CONNECTING
        rws.on("error", lambda exc: None)
        rws.close()

    run(main)


def test_bad_options() -> None:
    with pytest.raises(ValueError):
        ReconnectingWebSocket("ftp://x/")
    for bad in ({"factor": 0.5}, {"jitter": 2}, {"max_retries": -1}, {"max_queued": -1}, {"initial_delay": 5, "max_delay": 1}):
        with pytest.raises(ValueError):
            ReconnectingWebSocket("ws://127.0.0.1:1/", **bad)  # type: ignore[arg-type]


def test_server_restart_queue_and_reconnect_events() -> None:
    port = free_port()

    async def main() -> None:
        server = await serve(echo, "127.0.0.1", port)
        rws = ReconnectingWebSocket(f"ws://127.0.0.1:{port}/", initial_delay=0.05, max_delay=0.2, max_queued=3)
        rec = Recorder(rws, "open", "message", "close", "reconnect", "error")
        await rec.wait("open", timeout=10)
        first_socket = rws.socket
        rws.send("before")
        await rec.wait("message", 1, timeout=10)

        server.close()  # the server goes away (its connections get 1001)
        await server.wait_closed()
        await rec.wait("close", timeout=10)
        assert rws.ready_state == ReconnectingWebSocket.CONNECTING
        for item in ("q1", b"q2", "q3"):
            rws.send(item)
        rws.send("q4")  # beyond max_queued: refused, not lost silently
        await rec.wait("error", timeout=10)
        assert isinstance(rec.args("error")[0][0], QueueFullError)
        await rec.wait("reconnect", 3, timeout=10)  # attempts fail while nobody listens
        attempts = [args[0] for args in rec.args("reconnect")]
        assert attempts[:3] == [1, 2, 3]
        assert all(0 < args[1] <= 0.2 for args in rec.args("reconnect"))

        server = await serve(echo, "127.0.0.1", port)  # back on the same port
        await rec.wait("open", 2, timeout=10)
        assert rws.socket is not first_socket
        messages = await rec.wait("message", 4, timeout=10)
        assert [m[0].data for m in messages] == ["before", "q1", b"q2", "q3"]
        assert rws.queued == 0
        rws.send("after")
        await rec.wait("message", 5, timeout=10)

        reconnects, closes = rec.count("reconnect"), rec.count("close")
        rws.close()
        await rec.wait("close", closes + 1, timeout=10)
        # negative check: a wrongly scheduled reconnect is a timer, nothing ordered after it can be awaited
        await asyncio.sleep(0.3)
        assert rws.ready_state == ReconnectingWebSocket.CLOSED
        assert rec.count("reconnect") == reconnects  # no reconnect after close()
        assert rec.args("close")[-1] == (1000, "")
        rws.send("closed")
        await rec.wait("error", 2, timeout=10)
        assert isinstance(rec.args("error")[-1][0], NotOpenError)
        server.close()
        await server.wait_closed()

    run(main, timeout=60)


def test_gives_up_after_max_retries_and_max_queued_zero_refuses() -> None:
    port = free_port()

    async def main() -> None:
        rws = ReconnectingWebSocket(f"ws://127.0.0.1:{port}/", initial_delay=0.01, max_delay=0.02, max_retries=2, max_queued=0)
        rec = Recorder(rws, "reconnect", "error", "close")
        rws.send("nobody home")
        await until(lambda: rws.ready_state == ReconnectingWebSocket.CLOSED, 5, what="never gave up")
        assert rws.ready_state == ReconnectingWebSocket.CLOSED
        assert [a[0] for a in rec.args("reconnect")] == [1, 2]
        errors = [a[0] for a in rec.args("error")]
        assert isinstance(errors[0], NotOpenError)  # max_queued=0: refused at once
        assert isinstance(errors[-1], ReconnectError)
        assert rec.count("close") == 3  # the first try and two retries

    run(main, timeout=30)


class ServeProcess:
    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ws", "serve", "--port", str(port)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert "Listening on" in line, line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_example_client_survives_a_killed_server() -> None:
    """scripts/examples/reconnect_client.py against `ws serve`, killed (SIGKILL) and restarted."""
    port = free_port()
    server = ServeProcess(port)
    client = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "examples" / "reconnect_client.py"), f"ws://127.0.0.1:{port}/", "6"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert client.stdout is not None
        lines = []
        while not any(line.startswith("echo") for line in lines):
            lines.append(client.stdout.readline().rstrip("\n"))
            assert lines[-1] or client.poll() is None, lines
        server.kill()
        while not any(line.startswith("reconnect") for line in lines):
            lines.append(client.stdout.readline().rstrip("\n"))
            assert lines[-1] or client.poll() is None, lines
        time.sleep(0.3)  # the scenario: the server stays down a while (the client retries in vain)
        server = ServeProcess(port)
        out, _ = client.communicate(timeout=30)
        lines += out.splitlines()
    finally:
        if client.poll() is None:
            client.send_signal(signal.SIGKILL)
        server.kill()
    text = "\n".join(lines)
    assert client.returncode == 0, text
    assert "close 1006" in text
    assert [line for line in lines if line.startswith("echo")] == [f"echo tick {i}" for i in range(6)]
    assert text.count("open") >= 2
