"""Handshake CPU by request parser: h11, httptools (llhttp), and the lean path in front of either.

    python benchmarks/handshake_parsers.py [--handshakes 2000] [--rounds 5] [--modes h11,httptools,lean,lean-h11]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/handshake_parsers.py --handshakes 300 --rounds 1 --modes lean   # instructions, load-immune

One process, one loop: a ``ws.http.Server`` with a ``WebSocketServer`` on
``/ws``, and a client on the same loop doing sequential handshakes over
loopback, each one a browser-like upgrade request, the 101, a masked close
frame, the server's close frame, then the socket closed.  The CPU time per
handshake covers the client too, which is the same in every mode: the
difference between modes is the server's parsing.  ``--parse-only`` times
the parsers alone on the same head (no sockets).

Modes: ``h11`` and ``httptools`` with the lean path off
(``ws.http.connection.LEAN_UPGRADE``), ``lean`` with it on in front of
httptools (if installed), ``lean-h11`` in front of h11 (a plain install);
the lean path takes the whole request, so the last two should agree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ws import WebSocketServer, http  # noqa: E402
from ws.http import connection as _connection  # noqa: E402
from ws.http import parsing  # noqa: E402

HEAD = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:8080\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"\r\n"
)
CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (with a zero key) close 1000


def set_mode(mode: str) -> None:
    _connection.LEAN_UPGRADE = mode in ("lean", "lean-h11")
    os.environ["WS_HTTP"] = "httptools" if mode in ("httptools", "lean") and _has_httptools() else "h11"


def _has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


async def handshakes(port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, HEAD)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await loop.sock_recv(sock, 4096)
            assert chunk, "closed during the handshake"
            data += chunk
        assert data.startswith(b"HTTP/1.1 101 "), data[:80]
        await loop.sock_sendall(sock, CLOSE)
        while True:  # the server's close frame, then its end of the connection
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                break
        sock.close()


async def measure(modes: list[str], count: int, rounds: int) -> dict[str, list[float]]:
    server = http.Server("127.0.0.1:0")
    await server.serve_async()
    wss = WebSocketServer(server=server, path="/ws")
    wss.on("connection", lambda ws, request: None)
    port = server.port
    assert port is not None
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        for mode in modes:  # warm-up
            set_mode(mode)
            await handshakes(port, 50)
        for _ in range(rounds):
            for mode in modes:  # interleaved, round by round
                set_mode(mode)
                start = time.process_time()
                await handshakes(port, count)
                results[mode].append((time.process_time() - start) / count * 1e6)
    finally:
        wss.close()
        await server.close_async()
    return results


def parse_only(count: int, rounds: int) -> None:
    """µs per head: each full parser to its END event, and the lean parser."""
    from ws.http.lean import upgrade_head

    def full(cls: type) -> None:
        parser = cls(8192)
        parser.receive(HEAD)
        head = parser.next_event()
        parsing.check_head(head)  # type: ignore[arg-type]
        assert parser.next_event() is parsing.END

    cases = {"h11": lambda: full(parsing.H11Parser), "lean": lambda: upgrade_head(HEAD, 8192, 100)}
    if _has_httptools():
        cases["httptools"] = lambda: full(parsing.HttptoolsParser)
    for name, fn in cases.items():
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(count):
                fn()
            times.append((time.perf_counter() - start) / count * 1e6)
        print(f"{name:10s} parse {min(times):7.2f} µs/head (min of {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="h11,httptools,lean,lean-h11")
    parser.add_argument("--parse-only", action="store_true")
    args = parser.parse_args()
    if args.parse_only:
        parse_only(args.handshakes, args.rounds)
        return
    modes = args.modes.split(",")
    results = asyncio.run(measure(modes, args.handshakes, args.rounds))
    for mode in modes:
        print(f"{mode:10s} {statistics.median(results[mode]):7.1f} µs CPU/handshake (median of {args.rounds}; client included)")


if __name__ == "__main__":
    main()
