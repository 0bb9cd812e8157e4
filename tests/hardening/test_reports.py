"""Issue 17, logs and diagnostics: what a hostile peer can make us write, read or inflate.

* a listener that raises on every message logs one traceback, then one line
  per interval with a count (``ws._runtime.log.ReportLimiter``);
* our client stops reading a refused handshake at once and says why
  (``'unexpected-response'`` with the status, an error with the cause);
* non-ASCII bytes in a handshake header: 400 in the WebSocket headers,
  accepted (as RFC 9110 says) in the others;
* with permessage-deflate, a message may inflate to at most 1 MiB unless
  ``max_payload`` says otherwise (a deflate bomb is refused with 1009, cheaply).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
import struct
import time
import zlib
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from ws import WebSocket
from ws._runtime.emitter import EventEmitter

from ..conftest import Recorder, run, serving
from ..frames import frame
from .hostile import MiB, LatencyProbe, TargetProcess, upgrade

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


# -- 9. repeated reports --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_reports_a_cause_once_per_interval_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    from ws._runtime.log import ReportLimiter, report_error

    clock = Clock()
    limiter = ReportLimiter(10.0, clock=clock)
    log = logging.getLogger("ws.test.reports")

    def fail(n: int) -> None:
        try:
            raise ValueError(f"bad input {n}")
        except ValueError as exc:
            report_error(log, "listener raised on %s", f"message {n}", error=exc, limiter=limiter)

    with caplog.at_level(logging.ERROR, logger="ws.test.reports"):
        for n in range(5000):
            fail(n)
            clock.now += 0.001  # 5 s of repeats
        assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None  # the first, in full
        clock.now += 6.0
        fail(5000)  # the interval ended: its count first; a cause still repeating stays quiet
        assert [r.getMessage() for r in caplog.records[1:]] == [
            "4,999 more like 'listener raised on message 0' (ValueError) in the last 11.0 s"
        ]
        assert caplog.records[1].exc_info is None
        clock.now += 10.5
        limiter.flush()  # the timer's job, on a loop
        assert caplog.records[-1].getMessage().startswith("1 more like 'listener raised on message 0'")
        clock.now += 10.5
        limiter.flush()  # a quiet interval: the cause is forgotten ...
        fail(5001)  # ... so its next occurrence is reported in full again
        assert len(caplog.records) == 4 and "bad input 5001" in caplog.text
        try:
            raise KeyError("another place, another cause")
        except KeyError as exc:
            report_error(log, "listener raised on %s", "x", error=exc, limiter=limiter)
        assert len(caplog.records) == 5 and caplog.records[-1].exc_info is not None


def test_error_listeners_get_every_error_while_the_log_gets_one(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from ws._runtime.log import reports

    clock = Clock()
    monkeypatch.setattr(reports, "clock", clock)
    reports.reset()
    emitter = EventEmitter()
    got: list[Exception] = []
    emitter.on("error", got.append)
    emitter.on("message", lambda data: int(data))
    with caplog.at_level(logging.ERROR, logger="ws"):
        for n in range(1000):
            emitter.emit("message", f"not a number {n}")
    assert len(got) == 1000 and all(isinstance(e, ValueError) for e in got)
    assert caplog.text.count("Traceback") == 1 and len(caplog.records) == 1
    clock.now += 11
    reports.flush()
    assert caplog.records[-1].getMessage() == "999 more like 'listener of EventEmitter raised' (ValueError) in the last 11.0 s"
    reports.reset()


def test_listener_raising_on_every_message_logs_one_traceback_and_a_count() -> None:
    """Invalid JSON at full speed into a ``json.loads`` listener: 17 MB of stderr in 3 s before."""
    with TargetProcess(env={"WS_LOG_INTERVAL": "1"}) as target:
        with LatencyProbe(target.port) as probe:
            sock = upgrade(target.port, "/json")
            sock.settimeout(0.2)
            burst = b"".join(frame(0x1, b"{not json") for _ in range(2000))
            sent = 0
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                try:
                    sock.sendall(burst)
                    sent += 2000
                except socket.timeout:
                    pass
            time.sleep(1.5)  # the last interval's count
            sock.close()
        size, text = target.stderr_size(), target.stderr_text()
        assert sent >= 20_000, f"only {sent} messages sent"
        assert size < 100_000, f"{size:,} bytes of stderr for {sent:,} failing messages"
        assert text.count("Traceback") == 1, text[:3000]  # the first, in full
        assert "json.decoder.JSONDecodeError" in text
        counts = [line for line in text.splitlines() if "more like 'listener of WebSocket raised' (JSONDecodeError)" in line]
        assert counts, text[-2000:]
        assert sum(int(line.split()[1].replace(",", "")) for line in counts) >= 10_000
        probe.assert_served(worst=1.0, connect=2.0)
        assert target.alive()


def test_protocol_errors_of_many_connections_log_one_line_and_a_count() -> None:
    """300 connections each breaking the protocol (no 'error' listener): one line each before."""
    with TargetProcess(env={"WS_LOG_INTERVAL": "1"}) as target:
        for _ in range(300):
            sock = upgrade(target.port)
            sock.sendall(frame(0x1, b"x", mask=False))  # a client must mask: 1002
            try:
                sock.recv(100)
            except OSError:
                pass
            sock.close()
        time.sleep(1.5)  # the last interval's count
        text = target.stderr_text()
        assert target.stderr_size() < 2_000, text[:2000]
        lines = text.splitlines()
        assert lines.count("ws: unhandled 'error' event on WebSocket: incorrect masking") == 1, text  # the first, in full
        counts = [line for line in lines if "more like \"unhandled 'error' event on WebSocket" in line]
        assert sum(int(line.split()[1].replace(",", "")) for line in counts) == 299, text
