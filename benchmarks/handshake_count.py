"""Server CPU (or instructions) per handshake of the harness' ``handshake`` scenario, any server.

    python benchmarks/handshake_count.py [--count 2000] [--parallel 1] [--runs 5]
        [--callgrind OUT] -- SERVER_COMMAND...

Starts ``SERVER_COMMAND --port PORT`` (a server of the shared harness'
contract: prints ``READY``, speaks WebSocket on ``/``) and plays the
harness' ``handshake`` scenario against it from this process: each of
``--parallel`` client threads connects, sends the upgrade request, reads
the 101, sends a masked Close, reads the server's Close and waits for the
server to close TCP, then starts over, until ``--count`` handshakes are
done.  Without ``--callgrind``: the server's CPU time per handshake
(``/proc/PID/task/*/schedstat``), the minimum of ``--runs`` runs.  With
``--callgrind OUT``: the server runs under ``valgrind --tool=callgrind``
with instrumentation off, switched on (``callgrind_control``) for exactly
the measured handshakes: instructions per handshake, the same from run
to run whatever the machine's load; ``callgrind_annotate OUT.*`` shows
where they go.  Any harness server works (``benchmarks/server_ws.py``,
``server_ws_speed.py``, ``../shared/bench/impls/server_aiohttp.py``), so
peers are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import threading

from pingpong import callgrind_instructions, server_cpu, start_server

_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)  # (the harness' client sends these headers, with the port in Host)
_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (zero key) Close 1000


def user_system(pid: int) -> tuple[float, float]:
    """Seconds of user and system time of the server process (``/proc/PID/stat``, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def handshake(port: int) -> None:
    """One open and close, as the harness' client does it; raises on anything unexpected."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_REQUEST)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {data!r}")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"not a 101: {head!r}")
        sock.sendall(_CLOSE)
        while True:  # the server's Close, then its end of TCP
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"\x88"):
            raise ConnectionError(f"no Close frame: {data!r}")
    finally:
        sock.close()


def run(port: int, count: int, parallel: int) -> None:
    """``count`` handshakes, ``parallel`` at a time."""
    if parallel == 1:
        for _ in range(count):
            handshake(port)
        return
    left = [count]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def slot() -> None:
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                handshake(port)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=slot) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors:
        raise errors[0]


def run_loadgen(loadgen: str, port: int, parallel: int, seconds: float, pin: bool) -> int:
    """The harness' own load generator for ``seconds`` (after its warm-up): how many handshakes it made."""
    out = subprocess.run(
        [loadgen, "--url", f"ws://127.0.0.1:{port}/", "--scenario", "handshake", "--parallel", str(parallel),
         "--duration", str(seconds), "--warmup", "0"],
        check=True, capture_output=True, text=True, timeout=600,
        preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if pin else None,
    )
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return int(json.loads(line)["count"])
    raise SystemExit(f"no result from the load generator: {out.stdout!r} {out.stderr!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=2000, help="handshakes measured per run")
    p.add_argument("--parallel", type=int, default=1, help="clients at a time (the harness: 1 and 10)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--callgrind", metavar="OUT")
    p.add_argument("--loadgen", metavar="CLIENT_C", help="the harness' C client plays the clients instead (for --seconds)")
    p.add_argument("--seconds", type=float, default=2.0, help="with --loadgen: the measured time of a run")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, clients on CPU 1 (as the harness pins)")
    p.add_argument("server", nargs="+")
    a = p.parse_args()
    server, port = start_server(a.server, a.callgrind, a.pin)

    def measured() -> int:
        """One measured run; how many handshakes it made."""
        if a.loadgen:
            return run_loadgen(a.loadgen, port, a.parallel, a.seconds, a.pin)
        run(port, a.count, a.parallel)
        return a.count

    try:
        run(port, a.warmup, min(a.parallel, 10))
        if a.callgrind:
            total, count = callgrind_instructions(server.pid, a.callgrind, measured)
            print(f"instructions per handshake: {total / count:,.0f}  ({total:,} over {count:,}, parallel {a.parallel})")
        else:
            best = float("inf")
            user = system = 0.0
            total = 0
            for _ in range(a.runs):
                before, (user0, system0) = server_cpu(server.pid), user_system(server.pid)
                count = measured()
                cpu, (user1, system1) = server_cpu(server.pid) - before, user_system(server.pid)
                user, system = user + user1 - user0, system + system1 - system0
                best = min(best, cpu / count)
                total += count
            print(
                f"server CPU per handshake: {best * 1e6:.1f} us (min of {a.runs} runs of {count:,}, "
                f"parallel {a.parallel}); of all runs, user {user / total * 1e6:.0f} us, system {system / total * 1e6:.0f} us"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
