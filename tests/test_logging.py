"""ws._runtime.log: a quiet library by default, a frame-level debug mode on demand."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any, Iterator

import pytest

import ws
from ws import WebSocket, WebSocketServer
from ws import http
from ws._runtime.log import protocol_cause, refusal_cause, reports

from .conftest import ROOT, Recorder, run, serving
from .test_limits import TEXT, RawPeer, frame

# An echo round trip, then a refused connection: its 'error' is handled by a
# listener (LISTEN_ERRORS=1) or not, and then reported at ERROR (an
# application bug, which ws also prints when nothing configured logging).
SCRIPT = textwrap.dedent(
    """
    import os, socket
    from ws import WebSocket, WebSocketServer
    from ws import http

    server = http.Server(address="127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/")
    wss.on("connection", lambda s, r: s.on("message", lambda e: s.send(e.data)))
    server.serve()
    sock = WebSocket(f"ws://127.0.0.1:{server.port}/")
    sock.wait_open(timeout=10)
    sock.send("hello frames")
    print("echo:", sock.recv(timeout=10).data, flush=True)
    sock.close()
    sock.wait_closed(timeout=10)
    probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
    bad = WebSocket(f"ws://127.0.0.1:{port}/")
    if os.environ.get("LISTEN_ERRORS"):
        bad.on("error", lambda exc: print("handled:", exc, flush=True))
    try:
        bad.wait_closed(timeout=10)
    except Exception:
        pass
    import time; time.sleep(0.5)  # the unclaimed 'error' is reported within 0.25 s
    server.close()
    """
)


def run_script(env_extra: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WS_DEBUG"}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", prelude + SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_quiet_by_default() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("ws").handlers)
    result = run_script({"LISTEN_ERRORS": "1"})
    assert result.returncode == 0, result.stderr
    assert "echo: hello frames" in result.stdout
    assert "handled: connect ECONNREFUSED" in result.stdout
    assert result.stderr == ""  # connections, frames, closes: nothing logged by default


def test_application_logging_config_sees_the_ws_hierarchy() -> None:
    prelude = "import logging; logging.basicConfig(format='%(name)s:%(levelname)s:%(message)s')\n"
    configured = run_script({}, prelude)
    assert configured.returncode == 1, configured.stderr  # it ends with an unhandled 'error': status 1, as Node
    assert "ws.websocket:ERROR:unhandled 'error' event" in configured.stderr
    assert "ECONNREFUSED" in configured.stderr
    assert "TEXT" not in configured.stderr  # frames only in debug mode


def test_ws_debug_env_logs_frames_both_ways() -> None:
    result = run_script({"WS_DEBUG": "1"})
    assert result.returncode == 1, result.stderr  # the refused connection's 'error' is unhandled
    err = result.stderr
    assert "ws.client.protocol DEBUG > TEXT 'hello frames'" in err
    assert "ws.server.protocol DEBUG < TEXT 'hello frames'" in err
    assert "ws.server.protocol DEBUG > TEXT 'hello frames'" in err
    assert "ws.client.protocol DEBUG < CLOSE" in err or "ws.client.protocol DEBUG > CLOSE" in err


def test_enable_and_disable_debug_in_process() -> None:
    stream = io.StringIO()
    handler = ws.enable_debug(stream=stream)
    try:
        assert logging.getLogger("ws").level == logging.DEBUG
        assert ws.enable_debug(stream=stream) is not handler  # replaced, not stacked
        assert sum(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.NullHandler) for h in logging.getLogger("ws").handlers) == 1

        async def main() -> None:
            server = http.Server(address="127.0.0.1:0")
            wss = WebSocketServer(server=server, path="/")
            wss.on("connection", lambda s, r: s.on("message", lambda e: s.send(e.data)))
            await server.serve_async()
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/")
            rec = Recorder(sock, "open", "message", "close")
            await rec.wait("open")
            sock.send(b"\x01\x02")
            await rec.wait("message")
            sock.close()
            await rec.wait("close")
            await server.close_async()

        run(main)
    finally:
        ws.disable_debug()
    text = stream.getvalue()
    assert "> BINARY 01 02 [2 bytes]" in text
    assert "ws.server.protocol" in text
    assert logging.getLogger("ws").level == logging.NOTSET
    before = stream.getvalue()
    logging.getLogger("ws.websocket").debug("after disable")
    assert stream.getvalue() == before


# -- refusals and protocol errors: one structured line per cause and interval ------------------


@contextlib.contextmanager
def report_interval(seconds: float) -> Iterator[None]:
    """The limiter of reports with a short interval, from a clean slate."""
    saved = reports.interval
    reports.reset()
    reports.interval = seconds
    try:
        yield
    finally:
        reports.interval = saved
        reports.reset()


def events(records: list[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    return [record for record in records if getattr(record, "ws_event", None) == event]


def check_bounded(records: list[logging.LogRecord], cause: str, total: int, seconds: float, interval: float) -> None:
    """Every occurrence is in a line once (in full, or counted in a summary); at most ~one summary per interval."""
    assert records, "nothing was logged"
    assert {record.cause for record in records} == {cause}  # type: ignore[attr-defined]
    first = records[0]
    assert first.count == 1 and not getattr(first, "summary", False)  # type: ignore[attr-defined]
    assert sum(record.count for record in records) == total  # type: ignore[attr-defined]
    summaries = [record for record in records if getattr(record, "summary", False)]
    assert summaries and all(record.interval > 0 for record in summaries)  # type: ignore[attr-defined]
    assert len(records) <= 2 * (seconds / interval + 2), (len(records), seconds)


def test_a_burst_of_bad_handshakes_is_one_line_and_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ws")
    interval = 0.5

    async def main() -> float:
        async with serving("/chat") as served:
            loop = asyncio.get_running_loop()
            start = loop.time()
            room = asyncio.Semaphore(50)

            async def bad_handshake() -> None:  # no Sec-WebSocket-Key, no version: 400
                async with room:
                    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                    writer.write(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    answer = await asyncio.wait_for(reader.read(), 10)
                    assert answer.startswith(b"HTTP/1.1 400 "), answer
                    writer.close()

            await asyncio.gather(*(bad_handshake() for _ in range(1000)))
            reports.flush(force=True)  # the last interval's count, without waiting for its end
            return loop.time() - start

    with report_interval(interval):
        seconds = run(main, timeout=60)
    records = events(caplog.records, "handshake_refused")
    check_bounded(records, "400 bad handshake", 1000, seconds, interval)
    first = records[0]
    assert first.status == 400 and first.peer == "127.0.0.1" and first.path == "/chat"  # type: ignore[attr-defined]
    assert first.name == "ws.server" and first.levelno == logging.INFO
    assert "400 bad handshake" in first.getMessage() and "Sec-WebSocket-Key" in first.getMessage()
    assert records[-1].getMessage().startswith(f"handshake refused (400 bad handshake): {records[-1].count:,} more in the last ")  # type: ignore[attr-defined]


def test_protocol_errors_are_one_line_and_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ws")
    interval = 0.3

    async def main() -> float:
        async with serving("/ws", ping_interval=None) as served:
            loop = asyncio.get_running_loop()
            start = loop.time()

            async def unmasked() -> None:  # a client's frames must be masked: 1002
                peer = await RawPeer.open(served.port, "/ws")
                peer.send(frame(TEXT, b"hi", mask=False))
                assert await peer.read_close() == 1002
                peer.abort()

            await asyncio.gather(*(unmasked() for _ in range(100)))
            reports.flush(force=True)
            return loop.time() - start

    with report_interval(interval):
        seconds = run(main, timeout=60)
    records = events(caplog.records, "protocol_error")
    check_bounded(records, "1002 protocol error", 100, seconds, interval)
    assert records[0].code == 1002 and records[0].path == "/ws"  # type: ignore[attr-defined]


FORWARDED_HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
)


async def forwarded_peer(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A handshake as a proxy on 127.0.0.1 forwards it for 203.0.113.7; ``(reader, writer, response head)``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(FORWARDED_HANDSHAKE.format(path=path).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


def test_the_logged_peer_is_the_client_behind_a_proxy(caplog: pytest.LogCaptureFixture) -> None:
    """A protocol error and an unmatched path's 404 log ``request.client_ip`` (as refusals do), not the proxy's address."""
    caplog.set_level(logging.INFO, logger="ws")

    async def main() -> None:
        async with serving("/ws", ping_interval=None, trusted_proxies=["127.0.0.1"]) as served:
            def behind_the_proxy(ctx: Any) -> None:  # an HTTP application resolves it itself: 'request' runs before routing
                ctx.request.resolve_client_ip(["127.0.0.1"])

            served.server.on("request", behind_the_proxy)
            reader, writer, head = await forwarded_peer(served.port, "/nowhere")
            assert head.startswith(b"HTTP/1.1 404 "), head
            writer.close()
            reader, writer, head = await forwarded_peer(served.port, "/ws")
            assert head.startswith(b"HTTP/1.1 101 "), head
            writer.write(frame(TEXT, b"hi", mask=False))  # a client's frames must be masked: 1002
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
            _, rec = await served.socket(0)
            await rec.wait("close")

    with report_interval(10):
        run(main, timeout=30)
    refused = events(caplog.records, "handshake_refused")
    failed = events(caplog.records, "protocol_error")
    assert [(r.status, r.peer) for r in refused] == [(404, "203.0.113.7")]  # type: ignore[attr-defined]
    assert [(r.code, r.peer) for r in failed] == [(1002, "203.0.113.7")]  # type: ignore[attr-defined]


def test_refusal_and_protocol_causes() -> None:
    assert refusal_cause(403, "Forbidden: origin not allowed") == "403 origin not allowed"
    assert refusal_cause(403, "Forbidden") == "403 forbidden"
    assert refusal_cause(503, "WebSocket server is closed") == "503 server closed"
    assert refusal_cause(429, "Too Many Requests: too many connections from your address") == "429 too many requests"
    assert refusal_cause(503, "Service Unavailable: the server has too many connections, retry later") == "503 too many connections"
    assert refusal_cause(418, "") == "418 i'm a teapot"
    assert protocol_cause(1009) == "1009 message too big"
