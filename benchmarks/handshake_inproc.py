"""The server's cost of a handshake, of its decision alone, and the memory of an idle connection.

    python benchmarks/handshake_inproc.py [--count 2000] [--parallel 1] [--loop asyncio] [--profile FILE]
        [--memory 1000] [--decide 20000]

A ``ws.http.Server`` with a ``WebSocketServer`` (default options) on
loopback, and plain-socket clients in another process.  ``--count N``: N
handshakes one after the other, each connecting, sending the upgrade
request, reading the 101, sending a Close frame and waiting for the
server's, as the harness' ``handshake`` scenario does; it prints the wall
time per handshake, and ``--profile`` writes a cProfile of the server.
Under ``valgrind --tool=callgrind`` (which follows only this process) the
instructions counted are the server's, immune to the machine's load: the
difference between two counts divided by the difference of N is the cost
of one handshake.  ``--parallel K``: K client threads at a time (the
harness' ``handshake_par10`` is 10).  ``--loop uvloop`` serves on uvloop
(``WS_HTTP`` picks the parser as usual).  ``--memory N`` opens N connections and leaves them idle,
and prints the bytes that the server allocated per connection
(tracemalloc).  ``--decide N`` runs only the decision,
``ws.protocol.handshake.accept``, for a browser's request, N times,
without sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ws import WebSocketServer, http  # noqa: E402

_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (zero key) Close 1000


def _request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def _handshake(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request(port))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(_CLOSE)
    await reader.readexactly(4)
    writer.close()
    await writer.wait_closed()


async def _main(args: argparse.Namespace) -> None:
    server = http.Server(address="127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/")
    wss.on("connection", lambda sock, req: sock.on("message", lambda event: None))
    await server.serve_async()
    port = server.port
    assert port is not None
    for _ in range(20):  # warm up
        await _handshake(port)
    if args.memory:
        # The clients live in another process: only the server's allocations are traced.
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        clients = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENTS, str(port), str(args.memory), "1",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert clients.stdout is not None and clients.stdin is not None
        line = await asyncio.wait_for(clients.stdout.readline(), 120)
        assert line.strip() == b"ready", line
        await asyncio.sleep(0.2)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"{(after - before) / args.memory:.0f} bytes traced per idle server connection")
        clients.stdin.close()
        await asyncio.wait_for(clients.wait(), 60)
        await asyncio.sleep(0.2)
    else:
        # The clients run in another process (a plain socket each, one after the other): under
        # callgrind, the instructions counted are the server's.
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        clients = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENTS, str(port), str(args.count), str(args.parallel), "close",
            stdout=asyncio.subprocess.PIPE,
        )
        assert clients.stdout is not None
        line = await asyncio.wait_for(clients.stdout.readline(), 600)
        await asyncio.wait_for(clients.wait(), 60)
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        print(f"{float(line) / args.count * 1e6:.1f} us per handshake (wall time, client and server)")
    wss.close()
    server.close()


_CLIENTS = """
import base64, os, socket, sys, threading, time
port, count, parallel, close = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] == ["close"]
held = []
left = [count]
lock = threading.Lock()

def one():
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                  f"Sec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n").encode())
    head = b""
    while not head.endswith(b"\\r\\n\\r\\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    if close:
        sock.sendall(b"\\x88\\x82\\x00\\x00\\x00\\x00\\x03\\xe8")  # masked (zero key) Close 1000
        answer = b""
        while len(answer) < 4:
            answer += sock.recv(4 - len(answer))
        sock.close()
    else:
        held.append(sock)

def slot():
    while True:
        with lock:
            if left[0] <= 0:
                return
            left[0] -= 1
        one()

start = time.perf_counter()
threads = [threading.Thread(target=slot) for _ in range(parallel)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if close:
    print(time.perf_counter() - start, flush=True)
else:
    print("ready", flush=True)
    sys.stdin.read()
"""


def _decide(count: int) -> None:
    from ws.protocol.handshake import Policy, accept
    from ws.request import Request

    headers = [
        ("Host", "127.0.0.1:8080"), ("Connection", "Upgrade"), ("Pragma", "no-cache"), ("Upgrade", "websocket"),
        ("Origin", "http://127.0.0.1:8080"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ]
    request = Request("GET", "/", headers, peername=("127.0.0.1", 5000))
    policy = Policy()
    start = time.perf_counter()
    for _ in range(count):
        accept(request, policy, date="Mon, 07 Dec 2026 22:00:00 GMT")
    print(f"{(time.perf_counter() - start) / count * 1e6:.2f} us per accept()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--profile", default="")
    parser.add_argument("--memory", type=int, default=0)
    parser.add_argument("--decide", type=int, default=0)
    args = parser.parse_args()
    if args.decide:
        _decide(args.decide)
        return
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_main(args))
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
