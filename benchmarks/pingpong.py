"""Server CPU (or instructions) per strict ping-pong round trip of one small message.

    python benchmarks/pingpong.py [--rounds 20000] [--runs 5] [--size 32] [--conns 1]
        [--window 1] [--raw] [--pin] [--callgrind OUT] -- SERVER_COMMAND...

Starts ``SERVER_COMMAND --port PORT`` (a server of the shared harness's
contract: prints ``READY``, echoes on ``/``), connects ``--conns`` clients
and has each exchange one message at a time (``--window N``: N messages
sent at once, then their N replies awaited: pipelined small messages, per
message).  The clients are a few lines
of blocking sockets in this process that send pre-masked frames, so that
the server is all that is measured: its CPU time (``/proc/PID/task/*/schedstat``,
in ns) over ``--rounds`` round trips, the minimum of ``--runs`` runs.

``--raw`` speaks the raw ceilings' protocol (a 4-byte length, then the
payload) instead of WebSocket frames: the floor, what asyncio costs alone.
``--callgrind OUT`` runs the server under ``valgrind --tool=callgrind``
with instrumentation off, switches it on for exactly the measured round
trips (``callgrind_control``), and prints instructions per round trip
(immune to the load of a shared machine); ``callgrind_annotate OUT`` shows
where they go.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def server_cpu(pid: int) -> float:
    """Seconds on a CPU of all the server's threads (the scheduler's own count, in ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect(port: int, raw: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not raw:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("handshake refused")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def message(size: int, raw: bool) -> tuple[bytes, int]:
    """The bytes one round trip sends, and how many come back."""
    payload = (b"abcdefghijklmnopqrstuvwxyz012345" * (size // 32 + 1))[:size]
    if raw:
        return len(payload).to_bytes(4, "big") + payload, 4 + size
    assert size < 126
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | size)) + key + masked, 2 + size


def exchange(socks: list[socket.socket], frame: bytes, reply: int, rounds: int) -> None:
    """``rounds`` round trips on each socket, each socket one message at a time (fan-in with several)."""
    if len(socks) == 1:
        (sock,) = socks
        for _ in range(rounds):
            sock.sendall(frame)
            got = 0
            while got < reply:
                got += len(sock.recv(65536))
        return
    left = {s: rounds for s in socks}
    owed = {s: 0 for s in socks}
    for s in socks:
        s.sendall(frame)
        owed[s] = reply
    poller = select.epoll()
    fds = {s.fileno(): s for s in socks}
    for fd in fds:
        poller.register(fd, select.EPOLLIN)
    while fds:
        for fd, _ in poller.poll():
            s = fds[fd]
            owed[s] -= len(s.recv(65536))
            if owed[s] <= 0:
                left[s] -= 1
                if left[s]:
                    s.sendall(frame)
                    owed[s] = reply
                else:
                    poller.unregister(fd)
                    del fds[fd]
    poller.close()


def callgrind_total(out: str) -> int:
    """The instructions of the largest dump written under the ``--callgrind-out-file`` prefix ``out``."""
    folder = os.path.dirname(os.path.abspath(out))
    total = 0
    for name in os.listdir(folder):
        if name.startswith(os.path.basename(out)):
            with open(os.path.join(folder, name)) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        total = max(total, int(line.split()[1]))
    return total


def start_server(server: list[str], callgrind: str | None, pin: bool) -> tuple[subprocess.Popen[str], int]:
    """Start ``server --port P`` (under callgrind, instrumentation off, if asked; on CPU 0 with ``pin``,
    this process then on CPU 1) and wait for its READY line; ``(process, P)``."""
    port = free_port()
    command = [*server, "--port", str(port)]
    if callgrind:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={callgrind}", *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None)
    if pin:
        os.sched_setaffinity(0, {1})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return proc, port
    proc.wait(10)
    raise SystemExit("server ended before READY")


def callgrind_instructions(pid: int, out: str, work: Callable[[], T]) -> tuple[int, T]:
    """Instructions the callgrind-run server ``pid`` spent during ``work()``, and what ``work`` returned."""
    control = ["callgrind_control", str(pid)]
    subprocess.run([*control, "--instr=on"], check=True, capture_output=True)
    subprocess.run([*control, "--zero"], check=True, capture_output=True)
    result = work()
    subprocess.run([*control, "--dump=measured"], check=True, capture_output=True)
    subprocess.run([*control, "--instr=off"], check=True, capture_output=True)
    time.sleep(0.5)
    return callgrind_total(out), result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=20000, help="round trips per connection measured per run")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--window", type=int, default=1, help="messages sent at once per round trip (pipelined: per message)")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--callgrind", metavar="OUT")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, clients on CPU 1 (as the harness's --pin split)")
    p.add_argument("server", nargs="+")
    a = p.parse_args()
    server, port = start_server(a.server, a.callgrind, a.pin)
    try:
        socks = [connect(port, a.raw) for _ in range(a.conns)]
        frame, reply = message(a.size, a.raw)
        frame, reply = frame * a.window, reply * a.window
        exchange(socks, frame, reply, 2000 if not a.callgrind else 200)  # warm-up
        unit = a.rounds * a.conns * a.window
        if a.callgrind:
            total, _ = callgrind_instructions(server.pid, a.callgrind, lambda: exchange(socks, frame, reply, a.rounds))
            what = "round trip" if a.window == 1 else "message"
            print(f"instructions per {what}: {total / unit:,.0f}  ({total:,} over {unit:,})")
        else:
            best = float("inf")
            for _ in range(a.runs):
                before = server_cpu(server.pid)
                exchange(socks, frame, reply, a.rounds)
                best = min(best, server_cpu(server.pid) - before)
            what = "round trip" if a.window == 1 else "message"
            print(f"server CPU per {what}: {best / unit * 1e6:.2f} us (min of {a.runs} runs of {unit:,})")
        for s in socks:
            s.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
