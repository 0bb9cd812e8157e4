"""System calls and TCP segments per handshake of the harness' ``handshake`` scenario, any server.

    python benchmarks/handshake_syscalls.py [--count 500] [--parallel 1] [--segments]
        [--trace OUT] -- SERVER_COMMAND...

Starts ``SERVER_COMMAND --port PORT`` (a harness server, as
``handshake_count.py`` does), warms it up, then attaches ``strace -f`` to
all its threads for ``--count`` handshakes (``handshake_count.handshake``:
upgrade, a masked Close, the server's Close and its end of TCP) and prints
the system calls per handshake, by name: an ``accept4`` that found nothing
and ``epoll_wait`` with a zero timeout (a loop turn with callbacks ready)
apart, ``epoll_ctl`` by operation.  Wake-ups are the blocking
``epoll_wait``/``epoll_pwait`` calls.  strace slows the server, so with
``--parallel`` more connections share a wake-up than without it.

``--segments`` counts instead, without strace, the TCP segments the server
sends per connection, from the client's ``TCP_INFO`` (``tcpi_segs_in``,
Linux): the same on any machine and load.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socket
import struct
import subprocess
import time

from handshake_count import _CLOSE, _REQUEST, run
from pingpong import start_server

_SEGS_IN = 140  # offset of tcpi_segs_in in struct tcp_info (linux/tcp.h)


def segments(port: int, count: int) -> float:
    """TCP segments the server sent per connection, up to its end of TCP (read at the client)."""
    total = 0
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(_REQUEST)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            sock.sendall(_CLOSE)
            while sock.recv(4096):
                pass
            total += struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160), _SEGS_IN)[0]
    return total / count


def traced(pid: int, port: int, count: int, parallel: int, out: str) -> collections.Counter[str]:
    """System calls of every thread of ``pid`` during ``count`` handshakes, by name."""
    threads = [t for t in os.listdir(f"/proc/{pid}/task")]
    command = ["strace", "-f", "-o", out] + [arg for t in threads for arg in ("-p", t)]
    tracer = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    run(port, count, parallel)
    time.sleep(0.3)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    calls: collections.Counter[str] = collections.Counter()
    with open(out) as f:
        for line in f:
            m = re.match(r"\d+\s+(\w+)\((.*)", line)
            if not m:
                continue
            name, rest = m.groups()
            if name.startswith("epoll_ctl"):
                name += " " + rest.split(",")[1].strip()
            elif name.startswith("epoll_") and re.search(r", 0(, NULL, 8)?\) += ", rest):
                name += " (timeout 0)"
            if "EAGAIN" in rest:
                name += " (EAGAIN)"
            calls[name] += 1
    return calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--segments", action="store_true", help="TCP segments from the server instead (no strace)")
    p.add_argument("--trace", default="/tmp/handshake_syscalls.trace", help="where strace writes")
    p.add_argument("server", nargs="+")
    a = p.parse_args()
    server, port = start_server(a.server, None, False)
    try:
        run(port, 100, min(a.parallel, 10))
        if a.segments:
            print(f"TCP segments from the server per connection: {segments(port, a.count):.2f}")
            return
        calls = traced(server.pid, port, a.count, a.parallel, a.trace)
        print(f"system calls per handshake ({a.count}, parallel {a.parallel}):")
        for name, n in calls.most_common():
            if n / a.count >= 0.01:
                print(f"  {name:32s} {n / a.count:6.2f}")
        print(f"  {'all':32s} {sum(calls.values()) / a.count:6.2f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
