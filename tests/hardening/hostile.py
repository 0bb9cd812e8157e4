"""Tools for attack tests: a server in its own process, measured from outside, and a probe client.

``TargetProcess`` runs ``target.py`` (or any script printing ``port N``) and
reads the kernel's figures for it: resident memory (now and peak), open file
descriptors, CPU seconds and how much it wrote to stderr.  ``LatencyProbe``
is a well-behaved client echoing in a thread during the attack, so that a
test can assert that the other users were still served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(__file__).with_name("target.py")
MiB = 1 << 20
_TICK = os.sysconf("SC_CLK_TCK")


class TargetProcess:
    """A server process under test; ``with TargetProcess(ws={...}, http={...}) as t: t.port``."""

    def __init__(self, script: Path | str = TARGET, *, env: dict[str, str] | None = None, **options: Any) -> None:
        self._stderr = tempfile.TemporaryFile()
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "WS_NO_SIGNALS": "1",
            "WS_TARGET": json.dumps(options),
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=self._stderr, env=environment
        )
        self.port = self._read_port(timeout=30)

    def _read_port(self, timeout: float) -> int:
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result or not result[0].startswith(b"port "):
            self.close()
            raise RuntimeError(f"target did not start: {result!r}\n{self.stderr_text()[-4000:]}")
        return int(result[0].split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        """The highest resident memory so far (the kernel's high-water mark), in bytes."""
        return self._status("VmHWM")

    def fds(self) -> int:
        """Open file descriptors."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu(self) -> float:
        """User plus system CPU seconds used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def stderr_size(self) -> int:
        """Bytes written to stderr so far (the log volume)."""
        return os.fstat(self._stderr.fileno()).st_size

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "TargetProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._stderr.close()


def upgrade(
    port: int, path: str = "/echo", *, timeout: float = 5.0, extra: str = "", rcvbuf: int | None = None
) -> socket.socket:
    """A raw TCP connection that completed the WebSocket handshake (the 101 is consumed).

    ``rcvbuf`` shrinks the receive buffer before connecting, so that a peer that never reads stalls early.
    """
    if rcvbuf is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        small_receive_buffer(sock, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head[:200]!r}")
    return sock


def switching_protocols(head: bytes) -> bytes:
    """The 101 a hostile server writes by hand for the upgrade request ``head``."""
    key = next(
        line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def small_receive_buffer(sock: socket.socket, size: int = 4096) -> None:
    """Shrink a socket's receive buffer (set it before connecting for full effect) so a non-reader stalls early."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class LatencyProbe:
    """A normal client echoing one message at a time in a thread; ``worst`` is its slowest round trip.

    ``connect_worst`` is the slowest of the fresh connections it opens every
    ``reconnect_every`` round trips, so a stalled accept path shows too.
    ``errors`` lists what went wrong (a probe that fails is a finding too).
    """

    def __init__(self, port: int, path: str = "/echo", *, interval: float = 0.02, reconnect_every: int = 20, timeout: float = 10.0) -> None:
        self.url = f"ws://127.0.0.1:{port}{path}"
        self.interval = interval
        self.reconnect_every = reconnect_every
        self.timeout = timeout
        self.round_trips: list[float] = []
        self.connects: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                started = time.monotonic()
                with ws_connect(self.url, open_timeout=self.timeout, close_timeout=1, compression=None) as conn:
                    self.connects.append(time.monotonic() - started)
                    for i in range(self.reconnect_every):
                        if self._stop.is_set():
                            return
                        sent = time.monotonic()
                        conn.send(f"probe {i}")
                        reply = conn.recv(timeout=self.timeout)
                        if reply != f"probe {i}":
                            self.errors.append(f"wrong echo: {reply!r}")
                        self.round_trips.append(time.monotonic() - sent)
                        self._stop.wait(self.interval)
            except Exception as exc:  # recorded, asserted on by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.2)

    @property
    def worst(self) -> float:
        return max(self.round_trips, default=float("inf"))

    @property
    def connect_worst(self) -> float:
        return max(self.connects, default=float("inf"))

    def __enter__(self) -> "LatencyProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def assert_served(self, *, worst: float = 0.5, connect: float = 1.0) -> None:
        """The probe kept working during the attack: no errors, round trips and connects within bounds."""
        assert not self.errors, self.errors[:5]
        assert len(self.round_trips) >= 3, f"only {len(self.round_trips)} round trips"
        assert self.worst < worst, f"slowest echo {self.worst:.3f} s (bound {worst} s)"
        assert self.connect_worst < connect, f"slowest connect {self.connect_worst:.3f} s (bound {connect} s)"
