"""ws.cli: ``python -m ws connect`` / ``serve`` end to end, in a pseudo-terminal (pexpect)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pexpect
import pytest
from websockets.asyncio.server import serve as ws_serve

from ws import WebSocket
from ws.cli import format_message
from ws.events import BINARY, TEXT, MessageEvent

from .conftest import ROOT
from .fixtures.tls import TestPKI
from .test_origins import knock

TIMEOUT = 20


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "WS_DEBUG", "WS_HISTORY")}
    env.update(extra)
    return env


def spawn(*args: str, **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable, ["-m", "ws", *args], cwd=str(ROOT), env=cli_env(**env), timeout=TIMEOUT, encoding="utf-8"
    )
    child.delaybeforesend = 0.05
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)


class ServeProcess:
    """``ws serve`` in a pty; ``url`` once it printed its address."""

    def __init__(self, *args: str) -> None:
        self.child = spawn("serve", "--port", "0", *args)
        self.child.expect(r"Listening on (wss?)://([0-9.]+):(\d+)(\S*)")
        scheme, host, port, path = self.child.match.groups()
        self.port = int(port)
        self.url = f"{scheme}://{host}:{port}{path}"

    def stop(self) -> int:
        if self.child.isalive():
            self.child.kill(2)  # SIGINT
        return finish(self.child)


@pytest.fixture
def echo_server() -> Iterator[ServeProcess]:
    server = ServeProcess("--path", "/ws", "--subprotocol", "chat")
    yield server
    server.stop()


def pick_chat(conn: Any, offered: list[str]) -> str | None:
    return "chat" if "chat" in offered else None


class PeerServer:
    """A ``websockets`` server in a thread with scripted answers (binary, JSON, headers, close)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),), daemon=True)
        self.stopping: asyncio.Future | None = None
        self.thread.start()
        assert self.ready.wait(10)

    async def handler(self, conn: Any) -> None:
        request = conn.request
        async for message in conn:
            if message == "bin?":
                await conn.send(b"\x00\x01\xff")
            elif message == "json?":
                await conn.send('{"k": [1, "x"]}')
            elif message == "hdr?":
                await conn.send(f"{request.headers.get('X-Test')}|{request.headers.get('Origin')}|{conn.subprotocol}")
            elif message == "close?":
                await conn.close(4001, "nope")
            else:
                await conn.send(message)

    async def main(self) -> None:
        self.stopping = asyncio.get_running_loop().create_future()
        async with ws_serve(self.handler, "127.0.0.1", 0, select_subprotocol=pick_chat, ping_interval=1) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            self.ready.set()
            await self.stopping

    def stop(self) -> None:
        assert self.stopping is not None
        self.loop.call_soon_threadsafe(self.stopping.set_result, None)
        self.thread.join(10)


@pytest.fixture
def peer() -> Iterator[PeerServer]:
    server = PeerServer()
    yield server
    server.stop()


# -- ws connect -------------------------------------------------------------------------


def test_interactive_session_with_colour_ctrl_d(echo_server: ServeProcess) -> None:
    child = spawn("connect", echo_server.url)
    child.expect("Connected")
    child.sendline("hello there")
    child.expect(re.escape("\x1b[32m< hello there\x1b[0m"))
    child.sendline("second")
    child.expect("< second")
    child.sendeof()  # Ctrl-D
    assert finish(child) == 0
    echo_server.child.expect(r"closed 1000 after \d+\.\d\ds")


def test_ctrl_c_exits_cleanly_and_no_colour_with_no_color(echo_server: ServeProcess) -> None:
    child = spawn("connect", echo_server.url, NO_COLOR="1")
    child.expect("Connected")
    child.sendline("plain")
    child.expect("< plain")
    # No colour (SGR) codes; the line editor still moves the cursor (NO_COLOR is about colours).
    assert not re.search(r"\x1b\[[0-9;]*m", (child.before or "") + (child.after or ""))
    child.sendcontrol("c")
    assert finish(child) == 0
    assert "Traceback" not in (child.before or "")
    echo_server.child.expect(r"closed 1000")


def test_binary_json_ping_headers_subprotocol_origin(peer: PeerServer) -> None:
    child = spawn(
        "connect", peer.url, "--json", "--ping", "-H", "X-Test: yes", "-s", "chat", "--origin", "http://example.test"
    )
    child.expect(re.escape("Connected (subprotocol: chat;"))
    child.sendline("bin?")
    child.expect(re.escape("< <binary 3 bytes> 00 01 ff"))
    child.sendline("json?")
    child.expect(r'< \{\s+"k": \[\s+1,\s+"x"\s+\]\s+\}')
    child.sendline("hdr?")
    child.expect(re.escape("< yes|http://example.test|chat"))
    child.sendline("/ping hey")
    child.expect("< pong hey")
    child.expect("< ping", timeout=10)  # the server pings every second
    child.sendeof()
    assert finish(child) == 0


def test_execute_and_wait_without_a_terminal(echo_server: ServeProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ws", "connect", echo_server.url, "-x", "one", "-x", "two", "-w", "1.5"],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["< one", "< two"]
    assert result.stderr == ""


def test_piped_stdin_lines_are_sent(echo_server: ServeProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ws", "connect", echo_server.url, "-w", "1.5"],
        input="alpha\nbeta\n", cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["< alpha", "< beta"]


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["ws://127.0.0.1:{closed}/"], r"^error: connect ECONNREFUSED 127\.0\.0\.1:\d+ \(Connection refused\)$"),
        (["{server}/nope"], r"^error: Unexpected server response: 404 Not Found$"),
    ],
)
def test_failures_exit_1_with_one_line(echo_server: ServeProcess, args: list[str], pattern: str) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    base = echo_server.url.rsplit("/", 1)[0]
    argv = [a.format(closed=closed, server=base) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "ws", "connect", *argv], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 1
    assert re.match(pattern, result.stderr.strip()), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_abnormal_close_by_the_server_exits_1(peer: PeerServer) -> None:
    child = spawn("connect", peer.url, NO_COLOR="1")
    child.expect("Connected")
    child.sendline("close?")
    child.expect(re.escape("error: connection closed with code 4001 (nope)"))
    assert finish(child) == 1


def test_bad_arguments_exit_2() -> None:
    for argv in (
        ["connect", "ftp://x/"], ["connect", "ws://127.0.0.1:1/", "-H", "no-colon"], ["serve", "--path", "ws"],
        ["serve", "--allowed-origin", "app.example.com"], ["serve", "--allowed-origin", "https://app.example.com/"],
        ["serve", "--allowed-origin", "*"], ["serve", "--any-origin", "--allowed-origin", "https://app.example.com"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ws", *argv], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT
        )
        assert result.returncode == 2, argv
        assert result.stderr.startswith(f"ws {argv[0]}: error:"), result.stderr


def test_format_message() -> None:
    assert format_message(MessageEvent(BINARY, b"\x00\xab")) == "<binary 2 bytes> 00 ab"
    assert format_message(MessageEvent(BINARY, b"")) == "<binary 0 bytes>"
    assert format_message(MessageEvent(TEXT, '{"a":1}'), pretty_json=True) == '{\n  "a": 1\n}'
    assert format_message(MessageEvent(TEXT, "not json"), pretty_json=True) == "not json"


# -- ws serve ---------------------------------------------------------------------------


def test_broadcast_static_and_connection_log(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>static ok</h1>")
    server = ServeProcess("--broadcast", "--static", str(tmp_path), "--path", "/chat")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/index.html", timeout=TIMEOUT) as response:
            assert response.read() == b"<h1>static ok</h1>"
        a = spawn("connect", server.url, NO_COLOR="1")
        a.expect("Connected")
        server.child.expect(r"127\.0\.0\.1:\d+ connected /chat \(1 open\)")
        b = spawn("connect", server.url, NO_COLOR="1")
        b.expect("Connected")
        server.child.expect(r"connected /chat \(2 open\)")
        a.sendline("to everyone")
        b.expect("< to everyone")
        a.expect("< to everyone")
        a.sendeof()
        assert finish(a) == 0
        server.child.expect(r"closed 1000 after \d+\.\d\ds")
        b.sendcontrol("c")
        assert finish(b) == 0
    finally:
        assert server.stop() == 0
    assert "Stopped" in (server.child.before or "")


def test_serve_tls_with_ca_and_insecure(tmp_path: Path) -> None:
    pki = TestPKI()
    cert = pki.ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca_file = pki.ca_file(tmp_path / "ca.pem")
    server = ServeProcess("--tls-cert", str(cert_file), "--tls-key", str(key_file))
    try:
        assert server.url.startswith("wss://")
        runs = {
            "ca": ["--ca", ca_file],
            "insecure": ["--insecure"],
            "untrusted": [],
        }
        results = {
            name: subprocess.run(
                [sys.executable, "-m", "ws", "connect", server.url, "-x", "secret", "-w", "1", *extra],
                cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
            )
            for name, extra in runs.items()
        }
        assert results["ca"].returncode == 0 and results["ca"].stdout == "< secret\n", results["ca"].stderr
        assert results["insecure"].returncode == 0 and results["insecure"].stdout == "< secret\n"
        assert results["untrusted"].returncode == 1
        assert "certificate verification failed" in results["untrusted"].stderr
    finally:
        server.stop()


def test_serve_reports_a_taken_port() -> None:
    server = ServeProcess()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ws", "serve", "--port", str(server.port)],
            cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
        )
        assert result.returncode == 1
        assert re.match(r"^error: cannot listen on 127\.0\.0\.1:\d+: ", result.stderr), result.stderr
    finally:
        server.stop()


def test_our_client_against_ws_serve_subprotocol(echo_server: ServeProcess) -> None:
    async def main() -> None:
        async with WebSocket(echo_server.url, ["other", "chat"]) as sock:
            assert sock.protocol == "chat"
            await sock.send_async("via library")
            assert (await sock.recv_async(timeout=10)).data == "via library"

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    echo_server.child.expect(r"connected /ws subprotocol=chat")


class _RecordingRaw(io.RawIOBase):
    """A raw stream that keeps each write call apart (what reaches the pipe, syscall by syscall)."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.calls.append(bytes(data))
        return len(data)


def test_a_log_line_is_one_write_even_unbuffered(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ws serve --workers N``: the workers share stdout; a line written in two pieces could interleave."""
    from ws import cli

    raw = _RecordingRaw()
    # What PYTHONUNBUFFERED gives a script: a text layer that writes through at every call.
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    cli._log_line("[worker 1/2] Stopped")
    assert len(raw.calls) == 1, raw.calls
    assert re.fullmatch(rb"\d\d:\d\d:\d\d \[worker 1/2\] Stopped\n", raw.calls[0])


# -- ws serve and the Origin check (allowed_origins) ----------------------------------------------


def knocks(url: str, *origins: str | None) -> list[tuple[int, Any]]:
    """``knock`` (tests/test_origins.py) once per origin, in one loop."""

    async def main() -> list[tuple[int, Any]]:
        return [await knock(url, origin) for origin in origins]

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_serve_lets_in_its_own_pages_and_clients_without_origin_only() -> None:
    server = ServeProcess("--path", "/ws")
    try:
        server.child.expect(
            rf"Pages allowed to connect: http://127\.0\.0\.1:{server.port}, http://localhost:{server.port} "
            r"\(and clients that send no Origin\)"
        )
        own, other_name, none, foreign, other_port = knocks(
            server.url, f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}", None,
            "https://evil.example", f"http://127.0.0.1:{server.port + 1}",
        )
        assert own == other_name == none == (101, "ping?")
        assert foreign == (403, b"Forbidden: origin 'https://evil.example' is not allowed\n")
        assert other_port[0] == 403
        server.child.expect(r"connected /ws \(1 open\)")
    finally:
        assert server.stop() == 0


def test_serve_allowed_origin_replaces_the_default_and_any_origin_turns_it_off() -> None:
    server = ServeProcess("--allowed-origin", "https://app.example.com", "--allowed-origin", "https://*.example.org")
    try:
        server.child.expect(r"Pages allowed to connect: https://app\.example\.com, https://\*\.example\.org ")
        results = knocks(server.url, "https://app.example.com", "https://chat.example.org", None,
                         f"http://127.0.0.1:{server.port}", "https://example.org")
        assert [status for status, _ in results] == [101, 101, 101, 403, 403]
    finally:
        assert server.stop() == 0
    server = ServeProcess("--any-origin")
    try:
        server.child.expect(r"Pages of any site may connect \(--any-origin\)")
        assert knocks(server.url, "https://evil.example") == [(101, "ping?")]
    finally:
        assert server.stop() == 0


def test_serve_metrics() -> None:
    pytest.importorskip("prometheus_client", reason="pip install 'ws-js[metrics]'")
    from prometheus_client.parser import text_string_to_metric_families

    server = ServeProcess("--path", "/ws", "--metrics", "/metrics")
    try:
        echo = subprocess.run(
            [sys.executable, "-m", "ws", "connect", server.url, "-x", "hello", "-w", "1"],
            cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
        )
        assert echo.stdout == "< hello\n", echo.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=TIMEOUT) as response:
            text = response.read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples
        }
        assert samples[("ws_messages_received_total", (("path", "/ws"),))] == 1
        assert samples[("ws_received_bytes_total", (("path", "/ws"),))] == 5
        assert samples[("ws_connections_closed_total", (("code", "1000"), ("path", "/ws")))] == 1
    finally:
        assert server.stop() == 0
