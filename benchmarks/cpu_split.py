#!/usr/bin/env python3
"""Server CPU per unit split into user and system time, servers measured in turn.

The harness (``scripts/bench``) reports each server's total CPU per unit,
one server after another.  This tool answers two narrower questions it
cannot: how much of a cost is the kernel's (``/proc/PID/stat``: user and
system time apart), and how servers compare when they are all up at once
and take turns under the same load generator, round after round, so that
the machine's drift hits each of them alike.  The handshake floors
(``handshake_floor.py``) and the broadcast bound in docs/performance-log.md
come from it::

    benchmarks/cpu_split.py handshake --servers ws,hsfloor_websockets,hsfloor_h11,hsfloor_asyncio,raw_asyncio,node_ws
    benchmarks/cpu_split.py broadcast --servers ws,raw_asyncio,node_ws --connections 1000 --bc-rounds 500

The servers are the harness' adapters (``server_<name>.py`` here or in
``../shared/bench/impls``, ``server_node_ws.js``); ``raw_*`` servers speak
the harness' raw TCP protocol.  Output: a markdown table.  Figures include
whatever the scenario does besides its unit (a broadcast run's
handshakes), so they suit comparisons within one table, not absolute claims.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("WS_SHARED") or ROOT.parent / "shared")
BENCH = SHARED / "bench"
IMPLS = BENCH / "impls"
PYTHON = os.environ.get("BENCH_PYTHON", "/tmp/bench-venv/bin/python")
LOADGEN = Path(os.environ.get("BENCH_BUILD", "/tmp/bench-build")) / "client_c"
TICK = os.sysconf("SC_CLK_TCK")


def pinned(cpu: int, command: list[str]) -> list[str]:
    """``command`` on one CPU, as the harness runs servers and load generators."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *command]
    return command


def server_command(name: str, port: int) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(IMPLS), os.environ.get("PYTHONPATH")]))}
    if name.startswith("node_"):
        env["NODE_PATH"] = str(BENCH / "node" / "node_modules")
        return [os.environ.get("BENCH_NODE", "node"), str(IMPLS / f"server_{name}.js"), "--port", str(port)], env
    extra = [Path(d) for d in os.environ.get("BENCH_IMPLS", "").split(":") if d]
    for folder in (*extra, ROOT / "benchmarks", IMPLS):
        path = folder / f"server_{name}.py"
        if path.exists():
            return [PYTHON, str(path), "--port", str(port)], env
    raise SystemExit(f"no server adapter named {name!r}")


def start(name: str, port: int) -> subprocess.Popen:
    command, env = server_command(name, port)
    proc = subprocess.Popen(pinned(0, command), cwd=IMPLS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "READY" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"{name} did not start (no READY within 30 s)")


def cpu_ticks(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime (fields 14 and 15 of the file)


def measure(name: str, proc: subprocess.Popen, port: int, path: str, load: list[str], timeout: float) -> dict:
    scheme = "tcp" if name.startswith("raw_") else "ws"
    u0, s0 = cpu_ticks(proc.pid)
    out = subprocess.run(pinned(1, [str(LOADGEN), "--url", f"{scheme}://127.0.0.1:{port}{path}", *load]),
                         capture_output=True, text=True, timeout=timeout)
    u1, s1 = cpu_ticks(proc.pid)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result.get("ok"):
        return {"error": result.get("error", "failed")}
    count = result["count"]
    return {
        "rate": count / result["elapsed"],
        "user": (u1 - u0) / TICK / count * 1e6,
        "sys": (s1 - s0) / TICK / count * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=["handshake", "broadcast"])
    ap.add_argument("--servers", default="ws,raw_asyncio,node_ws")
    ap.add_argument("--rounds", type=int, default=2, help="times every server takes its turn (default 2)")
    ap.add_argument("--parallel", default="1,10", help="handshake: connections in flight (default 1,10)")
    ap.add_argument("--duration", type=float, default=2.0, help="handshake: seconds per turn")
    ap.add_argument("--connections", type=int, default=1000, help="broadcast: clients")
    ap.add_argument("--bc-rounds", type=int, default=500, help="broadcast: messages to every client")
    args = ap.parse_args()
    if not LOADGEN.exists():
        raise SystemExit(f"load generator not built at {LOADGEN}: run ../shared/bench/setup.sh")

    names = [n for n in args.servers.split(",") if n]
    if args.scenario == "handshake":
        cases = [(f"par{p}", "/", ["--scenario", "handshake", "--duration", str(args.duration),
                                   "--warmup", "0.2", "--parallel", p]) for p in args.parallel.split(",")]
        unit, units = "connection", "connections"
    else:
        cases = [(f"{args.connections} clients", "/broadcast",
                  ["--scenario", "broadcast", "--connections", str(args.connections),
                   "--rounds", str(args.bc_rounds)])]
        unit, units = "delivery", "deliveries"

    base = 19800 + os.getpid() % 100
    procs = {name: (start(name, base + i), base + i) for i, name in enumerate(names)}
    rows = []
    try:
        time.sleep(1.0)
        for rnd in range(1, args.rounds + 1):
            for case, path, load in cases:
                for name in names:
                    proc, port = procs[name]
                    rows.append((name, case, rnd, measure(name, proc, port, path, load, timeout=600)))
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"{args.scenario}: server CPU per {unit}, us (user + system), servers in turn, {args.rounds} rounds\n")
    print(f"| server | case | round | {units}/s | user | system | total |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, case, rnd, r in sorted(rows, key=lambda row: (row[1], names.index(row[0]), row[2])):
        if "error" in r:
            print(f"| {name} | {case} | {rnd} | failed: {r['error']} | | | |")
        else:
            print(f"| {name} | {case} | {rnd} | {r['rate']:,.0f} | {r['user']:.2f} | {r['sys']:.2f} | "
                  f"{r['user'] + r['sys']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
