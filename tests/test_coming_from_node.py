"""docs/coming-from-node.md: every Python block, as written there, run as a script against a real peer.

Each block is taken from the page (``block(name)``; only its port is replaced by a free one, and a
heartbeat's 30 s by a fraction of a second) and run with ``python script.py`` in its own process,
signals and exit status as a user has them. Its peer is Node's ``ws`` (tests/fixtures/node) or
``ws``'s own client in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ws import WebSocket

from .conftest import run
from .fixtures.doc_blocks import Script, block, handshake, with_port
from .fixtures.node_peer import NodePeer, pattern, require_node_ws
from .fixtures.processes import free_port

T = 10.0  # every wait on a peer; a loaded machine is slow, a working one answers in milliseconds


def swap(code: str, old: str, new: str) -> str:
    assert old in code, f"{old!r} is no longer in the block"
    return code.replace(old, new)


@contextlib.contextmanager
def serving(name: str, tmp_path: Path, *swaps: tuple[str, str]) -> Iterator[tuple[Script, str]]:
    """The server of block ``name`` running, and its URL; on the way out it gets SIGTERM and must exit with 0."""
    port = free_port()
    code = with_port(block(name).code, 8080, port)
    for old, new in swaps:
        code = swap(code, old, new)
    with Script(code, tmp_path, f"{name.replace('-', '_')}.py") as script:
        script.wait_port(port)
        yield script, f"ws://127.0.0.1:{port}"
        assert script.stop() == 0, script.report()
        assert "Traceback" not in script.stderr, script.report()


def client_script(name: str, tmp_path: Path, port: int) -> Script:
    return Script(with_port(block(name).code, 8080, port), tmp_path, f"{name.replace('-', '_')}.py")


class Inbox:
    """A ``ws`` client that keeps what it receives; ``take()`` waits (bounded) for the next one."""

    def __init__(self, url: str) -> None:
        self.sock = WebSocket(url)
        self.got: list[Any] = []
        self.closed: list[int] = []
        self._changed = threading.Condition()
        self.sock.on("message", lambda data, is_binary: self._add(self.got, data))
        self.sock.on("close", lambda code, reason: self._add(self.closed, code))
        self.sock.wait_open(T)

    def _add(self, into: list[Any], item: Any) -> None:
        with self._changed:
            into.append(item)
            self._changed.notify_all()

    def take(self) -> Any:
        with self._changed:
            assert self._changed.wait_for(lambda: self.got, T), "nothing arrived"
            return self.got.pop(0)

    def wait_closed(self) -> int:
        with self._changed:
            assert self._changed.wait_for(lambda: self.closed, T), "not closed"
            return self.closed[0]


# -- clients against Node's ws ---------------------------------------------------------------------------


def test_the_client_sends_and_prints_what_nodes_echo_server_returns(tmp_path: Path) -> None:
    require_node_ws()
    async def main() -> None:
        async with (await NodePeer.server({"echo": True}))[0] as node:
            port = node.events[0]["port"]
            with client_script("node-client", tmp_path, port) as script:
                assert await asyncio.to_thread(script.expect, "received:") == "received: something"
                assert (await node.wait("message"))["text"] == "something"
                assert script.stop(signal.SIGINT) == 0, script.report()  # Ctrl-C: closed with 1001
                assert (await node.wait("close"))["code"] == 1001
                assert script.stderr == ""

    run(main, timeout=40)


def test_the_browser_style_client_prints_the_echo_and_ends_by_itself(tmp_path: Path) -> None:
    require_node_ws()
    async def main() -> None:
        async with (await NodePeer.server({"echo": True}))[0] as node:
            with client_script("node-browser-client", tmp_path, node.events[0]["port"]) as script:
                assert await asyncio.to_thread(script.wait) == 0, script.report()
                assert (script.stdout, script.stderr) == ("hello\nclosed 1000\n", "")
                assert (await node.wait("close"))["code"] == 1000

    run(main, timeout=40)


# -- servers ----------------------------------------------------------------------------------------------


def test_the_echo_server_echoes_text_and_binary_to_nodes_client(tmp_path: Path) -> None:
    require_node_ws()
    with serving("node-echo-server", tmp_path) as (_, url):

        async def main() -> None:
            async with await NodePeer.client(url + "/") as node:
                await node.wait("open")
                node.command("send", text="hi")
                node.command("sendBig", size=70_000, seed=3)  # binary, and more than one read
                text = await node.wait("message", binary=False)
                big = await node.wait("message", binary=True)
                assert text["text"] == "hi"
                assert big["length"] == 70_000 and big["sha256"] == hashlib.sha256(pattern(70_000, 3)).hexdigest()

        run(main, timeout=40)


def test_the_async_for_echo_server(tmp_path: Path) -> None:
    with serving("node-echo-async", tmp_path) as (_, url):
        inbox = Inbox(url + "/")
        inbox.sock.send("one")
        inbox.sock.send(b"\x00two")
        assert [inbox.take(), inbox.take()] == ["one", b"\x00two"]
        inbox.sock.close()
        assert inbox.wait_closed() == 1000


def broadcast_reaches(url: str, sender_too: bool) -> None:
    a, b, c = Inbox(url), Inbox(url), Inbox(url)
    a.sock.send("from a")
    assert b.take() == c.take() == "from a"
    c.sock.send(b"\x01from c")  # binary stays binary
    assert b.take() == b"\x01from c"
    # The server sends in order: a's own message, if it got one, comes before c's.
    assert a.take() == ("from a" if sender_too else b"\x01from c")
    if sender_too:
        assert a.take() == c.take() == b"\x01from c"
    else:
        b.sock.send("from b")
        assert a.take() == c.take() == "from b"
    for inbox in (a, b, c):
        inbox.sock.close()


def test_broadcast_to_every_client(tmp_path: Path) -> None:
    with serving("node-broadcast-all", tmp_path) as (_, url):
        broadcast_reaches(url + "/", sender_too=True)


@pytest.mark.parametrize("name", ["node-broadcast-others", "node-broadcast-pythonic"])
def test_broadcast_to_every_other_client(tmp_path: Path, name: str) -> None:
    with serving(name, tmp_path) as (_, url):
        broadcast_reaches(url + "/", sender_too=False)


@pytest.mark.parametrize(
    "name, hello", [("node-verify-sync", "hello"), ("node-verify-callback", "hello alice"), ("node-verify-async", "hello alice")]
)
def test_verify_client_accepts_the_token_and_refuses_the_rest_with_401(tmp_path: Path, name: str, hello: str) -> None:
    with serving(name, tmp_path) as (_, url):
        assert handshake(url + "/") == (401, None)
        assert handshake(url + "/", {"Authorization": "Bearer wrong"}) == (401, None)
        assert handshake(url + "/", {"Authorization": "Bearer secret"}) == (None, hello)


def test_handle_upgrade_on_an_http_server_with_its_own_authentication(tmp_path: Path) -> None:
    with serving("node-upgrade", tmp_path) as (script, url):
        assert handshake(url + "/chat") == (401, None)
        assert handshake(url + "/elsewhere", {"Authorization": "Bearer secret"}) == (None, None)  # socket.close()
        sock = WebSocket(url + "/chat?room=1", {"headers": {"Authorization": "Bearer secret"}})
        sock.wait_open(T)
        sock.send("hi")
        assert script.expect("Received message") == "Received message hi from user alice"
        sock.close()
        sock.wait_closed(T)


# -- heartbeats: a client that stops reading is dropped, one that answers stays ----------------------------


@pytest.mark.parametrize(
    "name, swaps, codes",
    [
        ("node-heartbeat", [("args=(30, stopped)", "args=(0.2, stopped)")], {1006}),
        ("node-heartbeat-pythonic", [("ping_interval=30, ping_timeout=30", "ping_interval=0.2, ping_timeout=0.2")], {1011, 1006}),
    ],
)
def test_heartbeat_drops_a_client_that_stopped_answering(tmp_path: Path, name: str, swaps: list[tuple[str, str]], codes: set[int]) -> None:
    with serving(name, tmp_path, *swaps) as (_, url):
        alive, dead = Inbox(url + "/"), Inbox(url + "/")
        dead.sock.pause()  # reads nothing, so answers no ping: a pulled cable, seen from the server
        time.sleep(1.5)  # several intervals
        dead.sock.resume()
        assert dead.wait_closed() in codes
        assert alive.sock.ready_state == WebSocket.OPEN and not alive.closed
        alive.sock.close()
        assert alive.wait_closed() == 1000
