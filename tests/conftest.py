"""Shared test helpers: real sockets on loopback, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import pytest

from ws import WebSocket, WebSocketServer
from ws import http

# In-process tests must not replace pytest's own SIGINT handling; the
# end-to-end tests run scripts in subprocesses, where signals are tested.
os.environ.setdefault("WS_NO_SIGNALS", "1")
# Nor its exit status: a script ending with an unhandled 'error' exits with 1 (tests/test_js_habits.py
# runs scripts for that); the suite's process, home to many tests' reactor sockets, is not one.
from ws._runtime import loop as _reactor_loop  # noqa: E402

_reactor_loop.reactor.sets_exit_status = False

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def shared_tools() -> Path:
    """``../shared`` beside the repository (Autobahn, the benchmark harness); CI has it there too."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    base = Path(top.stdout.strip()) if top.returncode == 0 else ROOT
    return base.parent / "shared"


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
    """Run one test coroutine on a fresh loop with a hard timeout."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


class _Deadline:
    """The one polling rule of the suite: ``predicate()`` is read until truthy, or the test fails at the deadline."""

    def __init__(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        self.predicate, self.timeout, self.what = predicate, timeout, what
        self.end = time.monotonic() + timeout

    def poll(self) -> tuple[bool, Any]:
        value = self.predicate()
        if value:
            return True, value
        if time.monotonic() > self.end:
            raise AssertionError(f"{self.what} (not within {self.timeout} s)")
        return False, None


async def until(predicate: Callable[[], Any], timeout: float = 5.0, step: float = 0.01, what: str = "condition not reached in time") -> Any:
    """Wait on the running loop (bounded) until ``predicate()`` is truthy; returns its value."""
    deadline = _Deadline(predicate, timeout, what)
    while True:
        done, value = deadline.poll()
        if done:
            return value
        await asyncio.sleep(step)


def until_sync(predicate: Callable[[], Any], timeout: float = 5.0, step: float = 0.01, what: str = "condition not reached in time") -> Any:
    """``until`` for a thread with no running loop (the reactor thread serves): blocks; returns the value."""
    deadline = _Deadline(predicate, timeout, what)
    while True:
        done, value = deadline.poll()
        if done:
            return value
        time.sleep(step)


class Recorder:
    """Collects events of an emitter; ``await rec.wait('close')`` with a timeout."""

    def __init__(self, emitter: Any, *events: str) -> None:
        self.log: list[tuple[str, tuple]] = []
        self._waiters: list[tuple[str, int, asyncio.Future]] = []
        for event in events:
            emitter.on(event, self._make(event))

    def _make(self, event: str) -> Callable[..., None]:
        def listener(*args: Any) -> None:
            self.log.append((event, args))
            for name, count, fut in list(self._waiters):
                if name == event and self.count(event) >= count and not fut.done():
                    fut.set_result(None)

        return listener

    def count(self, event: str) -> int:
        return sum(1 for name, _ in self.log if name == event)

    def args(self, event: str) -> list[tuple]:
        return [args for name, args in self.log if name == event]

    def names(self) -> list[str]:
        return [name for name, _ in self.log]

    async def wait(self, event: str, count: int = 1, timeout: float = 5) -> list[tuple]:
        if self.count(event) < count:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((event, count, fut))
            await asyncio.wait_for(fut, timeout)
        return self.args(event)


@dataclass
class Served:
    """A running ``http.Server``, with a ``WebSocketServer`` on ``path`` unless ``serving(None)``.

    ``server, wss = served`` unpacks it; ``accepted`` holds each server-side socket with a recorder of its
    ``'error'`` and ``'close'`` events, in the order they connected.
    """

    server: http.Server
    wss: WebSocketServer | None
    path: str = "/ws"
    accepted: list[tuple[WebSocket, Recorder]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.server, self.wss))

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    async def socket(self, index: int = -1, timeout: float = 5.0) -> tuple[WebSocket, Recorder]:
        """The server side of the ``index``-th accepted connection (waits for it)."""
        await until(lambda: len(self.accepted) > (index if index >= 0 else 0), timeout, what="no connection accepted")
        return self.accepted[index]


@contextlib.asynccontextmanager
async def serving(
    path: str | None = "/ws", *, http_options: dict[str, Any] | None = None, echo: bool = False, **ws_options: Any
) -> AsyncIterator[Served]:
    """An ``http.Server`` on 127.0.0.1 (any port) on the running loop, closed afterwards.

    With a ``path``, a ``WebSocketServer`` (``ws_options``) serves it; ``echo=True`` makes it send every
    message back. Whatever reaches the loop's exception handler fails the test: nothing in the handshake
    or connection paths may raise into the event loop.
    """
    loop = asyncio.get_running_loop()
    leaked: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: leaked.append(context))
    server = http.Server("127.0.0.1:0", **(http_options or {}))
    wss = WebSocketServer(server=server, path=path, **ws_options) if path is not None else None
    served = Served(server, wss, path or "/")
    if wss is not None:

        def on_connection(sock: WebSocket, request: Any) -> None:
            served.accepted.append((sock, Recorder(sock, "error", "close")))
            if echo:
                sock.on("message", lambda event: sock.send(event.data))

        wss.on("connection", on_connection)
    await server.serve_async()
    try:
        yield served
    finally:
        if wss is not None:
            wss.close()
            await asyncio.wait_for(wss.wait_closed_async(), 15)
        await asyncio.wait_for(server.close_async(), 15)
        loop.set_exception_handler(None)
    assert leaked == [], leaked


def echo_server(path: str = "/ws", **options: Any) -> contextlib.AbstractAsyncContextManager[Served]:
    """``serving`` whose WebSocketServer echoes every message."""
    return serving(path, echo=True, **options)


async def connect(port: int, path: str = "/", protocols: Any = None, **options: Any) -> tuple[WebSocket, Recorder]:
    """A client ``WebSocket`` to 127.0.0.1, with a recorder of all its events."""
    sock = WebSocket(f"ws://127.0.0.1:{port}{path}", protocols, **options)
    rec = Recorder(sock, "open", "message", "ping", "pong", "close", "error", "unexpected-response")
    return sock, rec


@pytest.fixture(params=["h11", "httptools"])
def http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per request parser of ``ws.http`` (``WS_HTTP``, read as each connection opens).

    httptools is in the ``test`` extra: missing, the test fails rather than skips.
    """
    from ws.http import parsing

    name: str = request.param
    if name == "httptools":
        import httptools  # noqa: F401  (an ImportError here fails the test)
    monkeypatch.setenv("WS_HTTP", name)
    assert parsing.parser_name() == name
    return name


@pytest.fixture
def python() -> str:
    return sys.executable


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Never let a test that leaked a server keep the process alive.

    The reactor thread is not a daemon (that is what keeps a serving script
    alive); at the end of the session it is stopped whatever still holds it.
    """
    from ws._runtime import loop as _loop

    loop = _loop.reactor.loop
    thread = _loop.reactor.thread
    if loop is None or thread is None or not thread.is_alive():
        return
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:
        return
    thread.join(5)
