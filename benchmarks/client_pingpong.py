"""Client instructions (or CPU) per strict ping-pong round trip, for any harness client adapter.

    python benchmarks/client_pingpong.py [--rounds 2000] [--runs 5] [--window 1] [--pin]
        [--callgrind OUT | --strace OUT] --server "SERVER_COMMAND ..." ADAPTER_FILE [ADAPTER_ARGS...]

The harness's ``latency`` scenario, measured in the client: starts
``SERVER_COMMAND --port P`` (a harness server: prints ``READY``, echoes on
``/``), then runs ``ADAPTER_FILE`` (a harness client adapter, e.g.
``/work/shared/bench/impls/client_websocket_client.py`` or
``benchmarks/client_ws.py``; ``PYTHONPATH`` must reach ``_common`` and the
drivers) in a child process that connects, warms up, then does exactly
``--rounds`` round trips of a 32-byte text message with the driver's own
send/recv.  ``--callgrind OUT`` runs that child under callgrind with
instrumentation off and switches it on for exactly the measured round
trips: instructions per round trip, immune to the load of a shared
machine.  Without it, the child's CPU time (all threads) over the rounds,
minimum of ``--runs``.  ``--window N`` (coroutine adapters): the
harness's pipelined ``throughput`` scenario instead (its driver's
``pipeline``, ``--rounds`` messages, ``N`` in flight), per message.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pingpong import callgrind_total, server_cpu, start_server  # noqa: E402

# Run in the child: capture the adapter the file hands to its driver's main(), then ping-pong on command.
CHILD = r"""
import asyncio, inspect, runpy, sys, time
import _async_driver, _sync_driver, _common as c
url, rounds, runs, window, path, *rest = sys.argv[1:]
rounds, runs, window = int(rounds), int(runs), int(window)
captured = []
_async_driver.main = _sync_driver.main = lambda adapter, setup=None: captured.append(adapter)
sys.argv = [path, *rest]
runpy.run_path(path, run_name="__main__")
ad = captured[0]
text = c.text_payload(32)
def step(what):
    print(what, flush=True)
    sys.stdin.readline()
if inspect.iscoroutinefunction(ad.recv):
    async def main():
        conn = await ad.connect(url, False)
        send, recv = ad.send, ad.recv
        for _ in range(2000):
            await send(conn, text)
            await recv(conn)
        for _ in range(runs):
            step("GO?")
            if window > 1:
                await _async_driver.pipeline(ad, conn, text, rounds, window)
            else:
                for _ in range(rounds):
                    await send(conn, text)
                    await recv(conn)
            print("END", flush=True)
        step("DONE")
    loop = "uvloop" if "--loop" in sys.argv and "uvloop" in sys.argv else "asyncio"
    c.run(main, loop)
else:
    conn = ad.connect(url, False)
    send, recv = ad.send, ad.recv
    for _ in range(2000):
        send(conn, text)
        recv(conn)
    for _ in range(runs):
        step("GO?")
        for _ in range(rounds):
            send(conn, text)
            recv(conn)
        print("END", flush=True)
    step("DONE")
"""


def user_system(pid: int) -> tuple[float, float]:
    """Seconds of user and of system time of process ``pid`` (all threads; clock ticks, coarse)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--runs", type=int, default=5, help="CPU runs (the minimum is kept); 1 with --callgrind")
    p.add_argument("--callgrind", metavar="OUT")
    p.add_argument("--strace", metavar="OUT", help="count the client's system calls during the rounds (strace -c)")
    p.add_argument("--window", type=int, default=1,
                   help="coroutine adapters: the harness's pipelined throughput scenario instead, per message")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, the client on CPU 1 (as the harness's --pin split)")
    p.add_argument("--server", required=True, help="server command (the harness's contract)")
    p.add_argument("--python", default=sys.executable, help="python that runs the adapter")
    p.add_argument("adapter", nargs=argparse.REMAINDER)
    a = p.parse_args()
    server, port = start_server(shlex.split(a.server), None, a.pin)
    runs = 1 if a.callgrind else a.runs
    if a.strace:
        runs = 1
    command = [a.python, "-c", CHILD, f"ws://127.0.0.1:{port}/", str(a.rounds), str(runs), str(a.window), *a.adapter]
    if a.callgrind:
        command = ["valgrind", "--tool=callgrind", "-q", "--instr-atstart=no", f"--callgrind-out-file={a.callgrind}",
                   *command]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if a.pin else None)
    assert child.stdin is not None and child.stdout is not None
    control = ["callgrind_control", str(child.pid)]
    try:
        best = float("inf")
        user = system = 0.0
        for _ in range(runs):
            line = child.stdout.readline()
            if not line.startswith("GO?"):
                raise SystemExit(f"client: {line!r}")
            if a.callgrind:
                subprocess.run([*control, "--instr=on"], check=True, capture_output=True)
                subprocess.run([*control, "--zero"], check=True, capture_output=True)
            if a.strace:
                tracer = subprocess.Popen(["strace", "-c", "-f", "-o", a.strace, "-p", str(child.pid)],
                                          stderr=subprocess.DEVNULL)
                time.sleep(1)
            before = server_cpu(child.pid)
            split = user_system(child.pid)
            child.stdin.write("\n")
            child.stdin.flush()
            if child.stdout.readline() != "END\n":
                raise SystemExit("client ended early")
            best = min(best, server_cpu(child.pid) - before)
            user += user_system(child.pid)[0] - split[0]
            system += user_system(child.pid)[1] - split[1]
            if a.strace:
                tracer.send_signal(signal.SIGINT)
                tracer.wait(10)
            if a.callgrind:
                subprocess.run([*control, "--dump=measured"], check=True, capture_output=True)
                subprocess.run([*control, "--instr=off"], check=True, capture_output=True)
                time.sleep(0.5)
        if a.callgrind:
            total = callgrind_total(a.callgrind)
            print(f"client instructions per {'round trip' if a.window == 1 else 'message'}: {total / a.rounds:,.0f}  ({total:,} over {a.rounds:,})")
        else:
            unit = 1e6 / (a.rounds * runs)
            print(f"client CPU per {'round trip' if a.window == 1 else 'message'}: {best / a.rounds * 1e6:.2f} us (min of {runs} runs of {a.rounds:,}; "
                  f"all runs: user {user * unit:.1f} us, system {system * unit:.1f} us, in clock ticks)")
        child.stdout.readline()  # DONE
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
