"""ws._runtime.log: a quiet library by default, a frame-level debug mode on demand."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap

import ws
from ws import WebSocket, WebSocketServer
from ws import http

from .conftest import ROOT, Recorder, run

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
