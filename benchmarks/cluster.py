#!/usr/bin/env python3
"""Broadcast to 1,000 clients from one process, and from two processes through Redis, in the same run.

    .venv/bin/python benchmarks/cluster.py [--clients 1000] [--reps 3] [--rounds 200] [--window 8]
    scripts/bench --cluster [the same options]

It starts its own ``redis-server`` on a free port (in a temporary
directory), one ``benchmarks/cluster_server.py`` without a backplane (the
single-process figure) and two with ``--backplane`` (the cluster: two nodes
on ports of their own, as two machines, or ``workers=2`` with an exact
split, would be).  The load (``cluster_load.py``) then runs against each
setup in turn, repetition after repetition, so that the machine's drift
hits both alike.  Per repetition: fresh connections, a warm-up, a saturated
phase (``--rounds`` broadcasts, at most ``--window`` of them not yet
delivered to every client: deliveries per second, and latency under that
load), then a paced phase (``--paced`` broadcasts at ``--rate`` per second:
latency without queueing).  The table gives medians.

Before each repetition it waits (``--quiet-wait``) until the rest of the
machine uses less than ``--quiet-limit`` cores; a repetition during which
the rest used more than ``--noise-limit`` cores is run again (up to
``--noise-retries`` times), and what the rest used is reported anyway.  Each server gets a core of its own (``sched_setaffinity``, as ``taskset``
does); the load and Redis get the next free cores, and float over all of
them when there are none left, as on a 2-core machine, where the cluster
has four busy processes on two cores.  The CPU each process used during the
saturated phase is measured (``/proc``), and so is the rest of the
machine's ("other": a shared machine is never idle).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster_load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ticks(pid: int | str) -> int:
    """User + system CPU ticks of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_busy() -> int:
    """CPU ticks the whole machine spent not idle (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # minus idle and iowait


def wait_ready(process: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else b""
    if not line.startswith(b"READY"):
        process.kill()
        raise RuntimeError(f"{what} did not start: {line!r} {process.stderr.read().decode()[-2000:] if process.stderr else ''}")


class Processes:
    """Redis and the servers, pinned, stopped at the end whatever happens."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.cores = sorted(os.sched_getaffinity(0))
        self.directory = tempfile.mkdtemp(prefix="ws-cluster-bench-")

    def slot(self, index: int) -> set[int]:
        """Core number ``index`` if the machine has it, else every core."""
        return {self.cores[index]} if index < len(self.cores) else set(self.cores)

    @staticmethod
    def pinned(cores: set[int]) -> Callable[[], None]:
        """Set in the child before it runs anything: every thread it starts inherits the cores."""
        return lambda: os.sched_setaffinity(0, cores)

    def redis(self, slot: int) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (scripts/setup-peers installs Debian's)")
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.directory, "--logfile", os.path.join(self.directory, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=self.pinned(self.slot(slot)),
        )
        self.started.append(process)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return port, process
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.05)

    def server(self, backplane: str | None, slot: int) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("WS_BACKPLANE", "WS_DEBUG")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        args = [sys.executable, str(ROOT / "benchmarks" / "cluster_server.py"), "--port", str(port)]
        process = subprocess.Popen(
            args + (["--backplane", backplane] if backplane else []),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            preexec_fn=self.pinned(self.slot(slot)),
        )
        self.started.append(process)
        wait_ready(process, f"cluster_server.py on port {port}")
        return port, process

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


class Setup:
    """One configuration under test: its servers' ports and pids, and where the load runs."""

    def __init__(self, name: str, ports: list[int], servers: list[int], load_cores: set[int], redis: int | None) -> None:
        self.name, self.ports, self.servers, self.load_cores, self.redis = name, ports, servers, load_cores, redis
        self.marks: dict[str, dict[str, int]] = {}

    def snapshot(self) -> dict[str, int]:
        counts = {"servers": sum(ticks(pid) for pid in self.servers), "load": ticks("self"), "machine": machine_busy()}
        counts["redis"] = ticks(self.redis) if self.redis else 0
        return counts

    def mark(self, when: str) -> None:
        self.marks[when] = self.snapshot()

    def quiet(self, limit: float, wait: float) -> float:
        """Wait (up to ``wait`` s) until the rest of the machine uses under ``limit`` cores; what it used last."""
        deadline, other = time.monotonic() + wait, 0.0
        while True:
            before, started = self.snapshot(), time.monotonic()
            time.sleep(0.5)
            after, seconds = self.snapshot(), time.monotonic() - started
            ours = sum(after[k] - before[k] for k in ("servers", "load", "redis"))
            other = max(0, after["machine"] - before["machine"] - ours) / TICK / seconds
            if other < limit or time.monotonic() > deadline:
                return other

    def run(self, options: argparse.Namespace) -> dict[str, float]:
        self.quiet(options.quiet_limit, options.quiet_wait)
        os.sched_setaffinity(0, self.load_cores)
        result = run_load(options.load_loop)(cluster_load.measure(
            "127.0.0.1", self.ports, options.clients, options.rounds, options.window, options.paced, options.rate, self.mark,
        ))
        used = {k: (self.marks["end"][k] - self.marks["start"][k]) / TICK for k in self.marks["end"]}
        seconds = result["elapsed"]
        result["server_us_per_delivery"] = used["servers"] * 1e6 / result["deliveries"]
        for key in ("servers", "redis", "load"):
            result[f"{key}_cores"] = used[key] / seconds
        ours = used["servers"] + used["load"] + (used["redis"] if self.redis else 0)
        result["other_cores"] = max(0.0, used["machine"] - ours) / seconds
        return result


def run_load(loop: str) -> Callable[..., dict[str, float]]:
    """``asyncio.run``, or uvloop's: the load is plain Python, and uvloop halves what it costs per delivery."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


COLUMNS = [
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("latency under load p50 / p99 (ms)", ("loaded_p50_ms", "loaded_p99_ms"), "{:.1f} / {:.1f}"),
    ("latency at {rate:g} broadcasts/s p50 / p99 (ms)", ("paced_p50_ms", "paced_p99_ms"), "{:.2f} / {:.2f}"),
    ("server CPU per delivery (us, all servers)", "server_us_per_delivery", "{:.2f}"),
    ("cores used: servers / Redis / load / other", ("servers_cores", "redis_cores", "load_cores", "other_cores"),
     "{:.2f} / {:.2f} / {:.2f} / {:.2f}"),
]


def table(results: dict[str, list[dict[str, float]]], options: argparse.Namespace) -> str:
    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    lines = ["| setup | " + " | ".join(title.format(rate=options.rate) for title, _, _ in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for name, rows in results.items():
        cells = []
        for _, keys, fmt in COLUMNS:
            keys = (keys,) if isinstance(keys, str) else keys
            cells.append(fmt.format(*(median(rows, key) for key in keys)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit or '?'}, "
            f"{os.cpu_count()} x {model}, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f} at start")


def setups(processes: Processes) -> Iterator[Setup]:
    """The single-process setup and the two-node cluster, their processes started and pinned."""
    redis_port, redis = processes.redis(3)
    port, single = processes.server(None, 0)
    yield Setup("1 process", [port], [single.pid], processes.slot(1), None)
    url = f"redis://127.0.0.1:{redis_port}/0"
    nodes = [processes.server(url, slot) for slot in range(2)]
    load_cores = processes.slot(2)
    yield Setup("2 processes + Redis", [p for p, _ in nodes], [proc.pid for _, proc in nodes], load_cores, redis.pid)


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200, help="broadcasts in the saturated phase")
    parser.add_argument("--window", type=int, default=8, help="broadcasts in flight at most in the saturated phase")
    parser.add_argument("--paced", type=int, default=40, help="broadcasts in the paced phase")
    parser.add_argument("--rate", type=float, default=20.0, help="broadcasts per second in the paced phase")
    parser.add_argument("--load-loop", choices=("uvloop", "asyncio"), default="uvloop" if has_uvloop() else "asyncio",
                        help="the load's event loop (the servers always run the default asyncio loop)")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait, before each repetition, for the rest of the machine to go quiet")
    parser.add_argument("--quiet-limit", type=float, default=0.15, help="cores the rest of the machine may use then")
    parser.add_argument("--noise-limit", type=float, default=0.1,
                        help="cores the rest of the machine may use during a repetition before it is run again")
    parser.add_argument("--noise-retries", type=int, default=3, help="how many times a repetition may be run again")
    parser.add_argument("--json", help="write every repetition here")
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    print(f"# Broadcast to {options.clients:,} clients: {describe_machine()}", flush=True)
    processes = Processes()
    results: dict[str, list[dict[str, float]]] = {}
    try:
        configured = list(setups(processes))
        for rep in range(1, options.reps + 1):
            for setup in configured:
                for attempt in range(options.noise_retries + 1):  # a repetition the rest of the machine disturbed is run again
                    row = setup.run(options)
                    if row["other_cores"] <= options.noise_limit:
                        break
                    print(f"rep {rep} {setup.name}: other load {row['other_cores']:.2f} cores, again", file=sys.stderr)
                results.setdefault(setup.name, []).append(row)
                print(f"rep {rep} {setup.name}: {row['deliveries_per_s']:,.0f} deliveries/s, p50/p99 "
                      f"{row['loaded_p50_ms']:.1f}/{row['loaded_p99_ms']:.1f} ms loaded, "
                      f"{row['paced_p50_ms']:.2f}/{row['paced_p99_ms']:.2f} ms paced, "
                      f"other load {row['other_cores']:.2f} cores", file=sys.stderr, flush=True)
    finally:
        processes.stop()
    print(f"\nMedians of {options.reps} repetitions; {options.rounds} broadcasts of 32 B per repetition, "
          f"at most {options.window} in flight; {options.paced} more at {options.rate:g}/s for the paced latency; "
          f"the load on {options.load_loop}.\n")
    print(table(results, options))
    if options.json:
        Path(options.json).write_text(json.dumps({"options": vars(options), "results": results}, indent=1))


if __name__ == "__main__":
    main()
