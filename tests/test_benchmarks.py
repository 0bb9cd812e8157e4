"""benchmarks/: the adapters the harness runs are real, correct WebSocket servers.

A benchmark figure only means something if the server measured does the
whole job: each adapter is started as the harness starts it (its
``_common`` module on the path) and must pass a real ``websockets`` client's
handshake checks (``Sec-WebSocket-Accept`` included), echo, and end with a
clean 1000 closing handshake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest
from websockets.sync.client import connect

from .conftest import ROOT, shared_tools
from .fixtures.processes import ServerProcess, free_port

IMPLS = shared_tools() / "bench" / "impls"
BENCHMARKS = ROOT / "benchmarks"

_needs_harness = pytest.mark.skipif(
    not (IMPLS / "_common.py").exists(),
    reason=f"benchmark harness not found at {IMPLS} (CI has it at ../shared beside the clone)",
)


def start(adapter: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        [sys.executable, str(BENCHMARKS / adapter), "--port", str(port)], port, cwd=IMPLS, pythonpath=IMPLS, name=adapter
    )


@pytest.fixture(
    params=[
        "server_ws.py", "server_ws_speed.py",
        "server_hsfloor_asyncio.py", "server_hsfloor_h11.py", "server_hsfloor_websockets.py",
    ]
)
def adapter(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    server = start(request.param)
    try:
        yield server
    finally:
        server.stop()


@_needs_harness
def test_handshake_echo_and_close(adapter: ServerProcess) -> None:
    with connect(adapter.url, open_timeout=10, close_timeout=5) as client:
        client.send("hello")
        assert client.recv(timeout=5) == "hello"
        client.send(b"\x00\x01\x02")
        assert client.recv(timeout=5) == b"\x00\x01\x02"
    assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1000


@_needs_harness
def test_ws_adapter_broadcasts_on_request() -> None:
    server = start("server_ws.py")
    try:
        url = f"ws://127.0.0.1:{server.port}/broadcast"
        with connect(url, open_timeout=10) as a, connect(url, open_timeout=10) as b:
            a.send("3")  # three rounds to every subscriber
            for client in (a, b):
                assert [client.recv(timeout=5) for _ in range(3)] == ["broadcast-payload-0123456789abcd"] * 3
    finally:
        server.stop()


_PINGPONG_SERVER = """
import asyncio, sys
from ws import WebSocketServer
async def main():
    wss = WebSocketServer(port=int(sys.argv[sys.argv.index('--port') + 1]), host='127.0.0.1')
    wss.on('connection', lambda sock, request: sock.on('message', lambda event: sock.send(event.data)))
    await asyncio.sleep(0.5)
    print('READY', flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.mark.parametrize("window", [1, 50])
def test_pingpong_measures_a_server_it_starts(window: int) -> None:
    """benchmarks/pingpong.py (no harness needed): handshake, echoes one at a time or pipelined, a figure per unit."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "pingpong.py"), "--rounds", "200", "--runs", "2", "--window", str(window),
         "--", sys.executable, "-c", _PINGPONG_SERVER],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    unit = "round trip" if window == 1 else "message"
    assert out.stdout.startswith(f"server CPU per {unit}: ")
    assert f"of {200 * window:,})" in out.stdout


@_needs_harness
@pytest.mark.parametrize("adapter", ["client_ws.py", "client_ws_speed.py"])
def test_client_pingpong_measures_a_client_adapter(adapter: str) -> None:
    """benchmarks/client_pingpong.py: the harness's client adapter in ping-pong with a server it starts."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "client_pingpong.py"), "--rounds", "200", "--runs", "2",
         "--server", f"{sys.executable} {BENCHMARKS / 'server_ws.py'}", str(BENCHMARKS / adapter)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(IMPLS)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("client CPU per round trip: ")
    assert "(min of 2 runs of 200;" in out.stdout
