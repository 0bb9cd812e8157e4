"""ws.http.accept: the open-file limit, the pending cap under it, and accepting when out of descriptors."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import subprocess
import sys
from typing import Iterator

import pytest

from ws import http
from ws.http import accept
from ws.http.accept import Acceptor, pending_cap


def test_the_pending_cap_stays_at_half_the_open_file_limit(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "ws.http"):
        assert pending_cap(100, 1024) == 100 and pending_cap(None, 1024) is None and pending_cap(5000, None) == 5000
        assert not caplog.records
        assert pending_cap(1024, 1024) == 512
    assert "lowered from 1024 to 512" in caplog.text


def test_the_soft_limit_is_raised_to_the_hard_one_once_and_never_lowered() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import resource\n"
        "from ws.http import accept\n"
        "R = resource.RLIMIT_NOFILE\n"
        "hard = resource.getrlimit(R)[1]\n"
        "resource.setrlimit(R, (256, hard))\n"
        "print(accept.raise_open_file_limit() == hard == resource.getrlimit(R)[0])\n"
        "resource.setrlimit(R, (300, hard))\n"
        "print(accept.raise_open_file_limit() == 300)\n"  # once per process
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["True", "True"], out.stderr
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)  # not this process


def test_server_options_are_checked() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        http.Server("127.0.0.1:0", write_timeout=0)
    server = http.Server("127.0.0.1:0")
    assert (server.write_timeout, server.raise_file_limit) == (10.0, True)


class Exhausted(socket.socket):
    """A listening socket whose accept() fails with EMFILE while ``failures`` lasts."""

    failures = 0

    def accept(self) -> tuple[socket.socket, object]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


@pytest.fixture
def listener() -> Iterator[Exhausted]:
    sock = Exhausted(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def test_out_of_descriptors_pauses_accepting_logs_once_and_resumes(
    listener: Exhausted, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accept, "ACCEPT_PAUSE", 0.02)
    loop = asyncio.SelectorEventLoop()
    made: list[asyncio.BaseTransport] = []

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    acceptor = Acceptor(loop, listener, Protocol)
    acceptor.start()
    listener.failures = 20  # twenty pauses, about 0.4 s
    client = socket.create_connection(listener.getsockname())
    try:
        with caplog.at_level(logging.WARNING, "ws.http"):
            loop.run_until_complete(asyncio.sleep(0.2))
            assert not made and 3 < listener.failures < 20  # retried every pause, not spinning
            loop.run_until_complete(asyncio.sleep(0.5))
        assert len(made) == 1 and listener.failures == 0  # accepted once descriptors were back
        assert [r.getMessage().count("cannot accept") for r in caplog.records] == [1]  # one line, no traceback
        assert caplog.records[0].exc_info is None
    finally:
        client.close()
        for transport in made:
            transport.close()
        acceptor.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_a_plain_connection_whose_protocol_cannot_be_made_is_closed_and_the_next_one_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The transport made at accept (no task): a failure there closes that socket, logs, and accepting goes on."""
    loop = asyncio.SelectorEventLoop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    made: list[asyncio.BaseTransport] = []
    calls = 0

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    def factory() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("protocol refused on purpose")
        return Protocol()

    acceptor = Acceptor(loop, listener, factory)
    acceptor.start()
    first = socket.create_connection(listener.getsockname())
    first.settimeout(5)
    try:
        with caplog.at_level(logging.ERROR, "ws.http"):
            loop.run_until_complete(asyncio.sleep(0.1))
        assert first.recv(1) == b""  # closed by the server
        assert any("could not take a connection" in r.getMessage() and r.exc_info for r in caplog.records)
        second = socket.create_connection(listener.getsockname())
        try:
            loop.run_until_complete(asyncio.sleep(0.1))
            assert len(made) == 1 and calls == 2
            assert made[0].get_extra_info("peername") == second.getsockname()
        finally:
            second.close()
    finally:
        first.close()
        for transport in made:
            transport.close()
        acceptor.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        listener.close()
