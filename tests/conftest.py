"""Shared test helpers: real sockets on loopback, every wait bounded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest

# In-process tests must not replace pytest's own SIGINT handling; the
# end-to-end tests run scripts in subprocesses, where signals are tested.
os.environ.setdefault("WS_NO_SIGNALS", "1")

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


async def until(predicate: Any, timeout: float = 5.0, step: float = 0.01, what: str = "condition not reached in time") -> None:
    """Wait (bounded) until ``predicate()`` is true, polling every ``step`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(step)


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
