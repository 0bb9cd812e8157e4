#!/usr/bin/env python3
"""ws on two processes + Redis against Socket.IO (redis-adapter) and python-socketio (AsyncRedisManager), in one run.

    scripts/bench --cluster-peers [options]          # sets up its venv and node_modules, then runs this
    python benchmarks/cluster_peers/run.py [options] # in that venv (or, with --impls ws, the project's)

It starts one ``redis-server`` on a free port (never 6379) and, for each
implementation, two server processes on ports of their own sharing it:

* ``ws``: ``ws_server.py`` (``http.Server(backplane=RedisBackplane(...))``,
  ``WebSocketServer.broadcast``, ``ws.styles.rooms`` on the backplane);
  ``ws+recovery``: the same with ``recovery=ws.Recovery()`` on the
  broadcast path and on the rooms, when this ``ws`` has the option;
* ``socketio``: ``socketio/server.js``, Socket.IO with ``@socket.io/redis-adapter``;
* ``python-socketio``: ``psio_server.py`` on uvicorn (``python-socketio-aiohttp``: on aiohttp).

Every implementation is driven by the same client (``load.py``, this
process, on uvloop when installed), its subscribers spread evenly over the
two processes.  Scenarios, each in turn for every implementation (the order
rotates), repetition after repetition, so that the shared machine's drift
hits them alike:

* ``broadcast``: ``--clients`` subscribers; ``--rounds`` broadcasts, at
  most ``--window`` in flight (deliveries/s, server CPU per delivery summed
  over both processes, Redis CPU per published message), then ``--paced``
  broadcasts at ``--rate`` per second (end-to-end latency p50/p99);
* ``rooms``: ``--rooms`` rooms of ``--members`` (a third of the rooms on
  each node alone, a third split over both), ``--room-rounds`` rounds of one
  message to every room, published from each node in turn;
* ``rooms_one``: the same rooms with every member on node 1 and every
  message published there: what node 2, with no member, pays per message.

CPU is read from ``/proc`` (each server's threads' ``schedstat``, in ns;
Redis' the same, less the rate it idles at, measured for ``--idle`` s just
before; the load's and the rest of the machine's in ticks); Redis' command
time from ``INFO commandstats``, which leaves the I/O around the commands
out and so varies less.  Each
server is pinned to a core of its own when there are enough; the load and
Redis float.  Before each measurement it waits (``--quiet-wait``) for the
rest of the machine to go quiet, and a measurement during which the rest
used more than ``--noise-limit`` cores is run again (``--noise-retries``).
The table gives medians; loss, duplicates and misdeliveries are summed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import load  # noqa: E402
from cluster import TICK, Processes, describe_machine, free_port, machine_busy, ticks, wait_ready  # noqa: E402

ROOT = HERE.parent.parent
SOCKETIO_DIR = HERE / "socketio"
IMPLS = ("ws", "ws+recovery", "socketio", "python-socketio", "python-socketio-aiohttp")
DEFAULT_IMPLS = "ws,ws+recovery,socketio,python-socketio"
SCENARIOS = ("broadcast", "rooms", "rooms_one")
TITLES = {"ws": "ws", "ws+recovery": "ws + recovery", "socketio": "Socket.IO",
          "python-socketio": "python-socketio (uvicorn)", "python-socketio-aiohttp": "python-socketio (aiohttp)"}


def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of ``pid``, in ns (``schedstat``: finer than the 10 ms ticks of ``stat``)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return total


def command_usec(port: int) -> float:
    """Microseconds Redis has spent executing commands (``INFO commandstats``), its own ``INFO`` and ``CONFIG`` left out.

    Only the commands' own time, none of the reading and writing around
    them: a steadier figure than the process' CPU, and the same for
    every implementation.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"INFO commandstats\r\n")
        data = b""
        while b"\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n")
        size = int(head[1:])
        while len(body) < size:
            body += conn.recv(65536)
    total = 0.0
    for line in body[:size].decode().splitlines():
        if line.startswith("cmdstat_") and not line.startswith(("cmdstat_info", "cmdstat_config")):
            fields = dict(field.split("=", 1) for field in line.split(":", 1)[1].split(","))
            total += float(fields["usec"])
    return total


class Impl:
    """One implementation: how to start a node, what it speaks, and its two processes once started."""

    def __init__(self, name: str, protocol: str, command: Callable[[int, str], list[str]], env: dict[str, str] | None = None) -> None:
        self.name, self.protocol, self.command, self.env = name, protocol, command, env or {}
        self.ports: list[int] = []
        self.pids: list[int] = []
        self.unavailable: str | None = None

    def start(self, processes: Processes, redis_url: str, nodes: int, ws_root: Path) -> None:
        for slot in range(nodes):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if k not in ("WS_BACKPLANE", "WS_DEBUG", "WS_LOOP")}
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ws_root), env.get("PYTHONPATH")) if p)
            env.update(self.env)
            process = subprocess.Popen(
                self.command(port, redis_url), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=str(HERE), preexec_fn=processes.pinned(processes.slot(slot)),
            )
            processes.started.append(process)
            wait_ready(process, f"{self.name} node {slot + 1} on port {port}", timeout=30)
            self.ports.append(port)
            self.pids.append(process.pid)


def make_impls(options: argparse.Namespace) -> dict[str, Impl]:
    py = sys.executable
    loop = ["--loop", options.python_loop]

    def ws_node(prefix: str, extra: list[str]) -> Callable[[int, str], list[str]]:
        return lambda port, url: [py, str(HERE / "ws_server.py"), "--port", str(port), "--redis", url, "--prefix", prefix, *loop, *extra]

    def psio_node(channel: str, host: str) -> Callable[[int, str], list[str]]:
        return lambda port, url: [py, str(HERE / "psio_server.py"), "--port", str(port), "--redis", url,
                                  "--channel", channel, "--host", host, *loop]

    impls = {
        "ws": Impl("ws", "ws", ws_node("ws:", [])),
        "ws+recovery": Impl("ws+recovery", "ws", ws_node("wsr:", ["--recovery"])),
        "socketio": Impl("socketio", "sio", lambda port, url: [options.node, str(SOCKETIO_DIR / "server.js"), str(port), url]),
        "python-socketio": Impl("python-socketio", "sio", psio_node("psio-uvicorn", "uvicorn")),
        "python-socketio-aiohttp": Impl("python-socketio-aiohttp", "sio", psio_node("psio-aiohttp", "aiohttp")),
    }
    return {name: impls[name] for name in options.impls}


def availability(impl: Impl, options: argparse.Namespace) -> str | None:
    """Why ``impl`` cannot run here (a missing install, an option this ws lacks), or None."""
    if impl.name == "ws+recovery":
        check = subprocess.run([sys.executable, str(HERE / "ws_server.py"), "--check-recovery"],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(options.ws_root)})
        return None if check.returncode == 0 else (check.stderr.strip().splitlines() or ["recovery= unavailable"])[-1]
    if impl.name == "socketio":
        if shutil.which(options.node) is None:
            return f"{options.node} not found"
        if not (SOCKETIO_DIR / "node_modules" / "socket.io").is_dir():
            return f"npm ci has not been run in {SOCKETIO_DIR.relative_to(ROOT)} (scripts/bench --cluster-peers does it)"
    if impl.name.startswith("python-socketio"):
        modules = "socketio, uvicorn" if impl.name == "python-socketio" else "socketio, aiohttp"
        check = subprocess.run([sys.executable, "-c", f"import {modules}"], capture_output=True, text=True)
        if check.returncode != 0:
            return f"{modules} not importable in {sys.executable} (scripts/bench --cluster-peers installs them in its venv)"
    return None


class Meter:
    """CPU counters of one implementation's servers, Redis, the load and the machine, at named moments."""

    def __init__(self, impl: Impl, redis_pid: int, redis_port: int) -> None:
        self.impl, self.redis_pid, self.redis_port = impl, redis_pid, redis_port
        self.marks: dict[str, dict[str, float]] = {}

    def snapshot(self) -> dict[str, float]:
        nodes = [cpu_ns(pid) for pid in self.impl.pids]
        counts: dict[str, float] = {f"node{i + 1}_ns": ns for i, ns in enumerate(nodes)}
        counts.update(servers_ns=sum(nodes), redis_ns=cpu_ns(self.redis_pid), load_ticks=ticks("self"),
                      servers_ticks=sum(ticks(pid) for pid in self.impl.pids), redis_ticks=ticks(self.redis_pid),
                      machine_ticks=machine_busy(), wall=time.monotonic())
        return counts

    def mark(self, when: str) -> None:
        self.marks[when] = self.snapshot()
        self.marks[when]["redis_cmd_us"] = command_usec(self.redis_port)

    def used(self, start: str, end: str) -> dict[str, float]:
        a, b = self.marks[start], self.marks[end]
        return {k: b[k] - a[k] for k in a if k in b}

    def other_cores(self, used: dict[str, float]) -> float:
        """Cores the rest of the machine used meanwhile (its busy ticks less ours)."""
        ours = used["servers_ticks"] + used["redis_ticks"] + used["load_ticks"]
        return max(0.0, used["machine_ticks"] - ours) / TICK / used["wall"]

    async def settle(self, limit: float, wait: float) -> None:
        """Wait (up to ``wait`` s) until Redis spends under ``limit`` cores, twice in a row (0.25 s each)."""
        deadline, calm = time.monotonic() + wait, 0
        while calm < 2 and time.monotonic() < deadline:
            before, started = cpu_ns(self.redis_pid), time.monotonic()
            await asyncio.sleep(0.25)
            rate = (cpu_ns(self.redis_pid) - before) / 1e9 / (time.monotonic() - started)
            calm = calm + 1 if rate < limit else 0

    def quiet(self, limit: float, wait: float) -> float:
        deadline, other = time.monotonic() + wait, 0.0
        while True:
            self.marks["q0"] = self.snapshot()
            time.sleep(0.5)
            self.marks["q1"] = self.snapshot()
            other = self.other_cores(self.used("q0", "q1"))
            if other < limit or time.monotonic() > deadline:
                return other


def run_loop(name: str) -> Callable[..., Any]:
    if name == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def measure(impl: Impl, scenario: str, redis_pid: int, redis_port: int, options: argparse.Namespace) -> dict[str, float]:
    meter = Meter(impl, redis_pid, redis_port)
    meter.quiet(options.quiet_limit, options.quiet_wait)
    result = run_loop(options.load_loop)(load.scenario(
        impl.protocol, "127.0.0.1", impl.ports, scenario, options, meter.mark,
        lambda: meter.settle(options.redis_settle, 10.0),
    ))
    used = meter.used("start", "end")
    seconds = used["wall"]
    result["server_us_per_delivery"] = used["servers_ns"] / 1e3 / result["deliveries"]
    idle = meter.used("idle_start", "idle_end")
    redis_idle_ns_per_s = idle["redis_ns"] / idle["wall"]
    result["redis_idle_cores"] = redis_idle_ns_per_s / 1e9
    result["redis_raw_us_per_message"] = used["redis_ns"] / 1e3 / result["messages"]
    # Net of what Redis spends anyway in that time (a few ms per second), which would otherwise favour the fastest.
    result["redis_us_per_message"] = max(0.0, used["redis_ns"] - redis_idle_ns_per_s * seconds) / 1e3 / result["messages"]
    result["redis_cmd_us_per_message"] = used["redis_cmd_us"] / result["messages"]
    result["load_us_per_delivery"] = used["load_ticks"] / TICK * 1e6 / result["deliveries"]
    for i in range(len(impl.pids)):
        result[f"node{i + 1}_us_per_message"] = used[f"node{i + 1}_ns"] / 1e3 / result["messages"]
    result["servers_cores"] = used["servers_ns"] / 1e9 / seconds
    result["redis_cores"] = used["redis_ns"] / 1e9 / seconds
    result["load_cores"] = used["load_ticks"] / TICK / seconds
    result["other_cores"] = meter.other_cores(used)
    result["servers_ticks_us_per_delivery"] = used["servers_ticks"] / TICK * 1e6 / result["deliveries"]  # a cross-check
    if "paced_start" in meter.marks:
        paced = meter.used("paced_start", "paced_end")
        result["paced_server_us_per_delivery"] = paced["servers_ns"] / 1e3 / result["paced_deliveries"]
        result["paced_redis_us_per_message"] = max(0.0, paced["redis_ns"] - redis_idle_ns_per_s * paced["wall"]) / 1e3 / result["paced_messages"]
    return result


# -- the table ----------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str, str]] = [
    # scenario, metric title, key(s), format
    ("broadcast", "deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("broadcast", "server CPU per delivery (us, both processes)", "server_us_per_delivery", "{:.2f}"),
    ("broadcast", "Redis CPU per published message (us, less its idle rate)", "redis_us_per_message", "{:.1f}"),
    ("broadcast", "Redis command time per published message (us, INFO commandstats)", "redis_cmd_us_per_message", "{:.1f}"),
    ("broadcast", "latency saturated p50 / p99 (ms)", "loaded_p50_ms,loaded_p99_ms", "{:.1f} / {:.1f}"),
    ("broadcast", "cores: servers / Redis / load / rest", "servers_cores,redis_cores,load_cores,other_cores",
     "{:.2f} / {:.2f} / {:.2f} / {:.2f}"),
    ("broadcast", "lost / duplicated / misdelivered (sum)", "lost,duplicated,misdelivered", "sum"),
    ("latency", "p50 / p99 end to end (ms)", "paced_p50_ms,paced_p99_ms", "{:.2f} / {:.2f}"),
    ("latency", "server CPU per delivery (us)", "paced_server_us_per_delivery", "{:.2f}"),
    ("latency", "lost / duplicated / misdelivered (sum)", "paced_lost,paced_duplicated,paced_misdelivered", "sum"),
    ("rooms", "deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("rooms", "server CPU per delivery (us, both processes)", "server_us_per_delivery", "{:.2f}"),
    ("rooms", "Redis CPU per published message (us, less its idle rate)", "redis_us_per_message", "{:.1f}"),
    ("rooms", "Redis command time per published message (us, INFO commandstats)", "redis_cmd_us_per_message", "{:.1f}"),
    ("rooms", "cores: servers / Redis / load / rest", "servers_cores,redis_cores,load_cores,other_cores",
     "{:.2f} / {:.2f} / {:.2f} / {:.2f}"),
    ("rooms", "lost / duplicated / misdelivered (sum)", "lost,duplicated,misdelivered", "sum"),
    ("rooms_one", "CPU of the node with no member, per message (us)", "node2_us_per_message", "{:.2f}"),
    ("rooms_one", "server CPU per delivery (us, both processes)", "server_us_per_delivery", "{:.2f}"),
    ("rooms_one", "lost / duplicated / misdelivered (sum)", "lost,duplicated,misdelivered", "sum"),
]
SCENARIO_OF_ROW = {"latency": "broadcast"}  # the paced phase runs on the broadcast scenario's connections


def cell(rows: list[dict[str, float]], keys: str, fmt: str) -> str:
    names = keys.split(",")
    if not rows or any(name not in row for row in rows for name in names):
        return "—"
    if fmt == "sum":
        return " / ".join(f"{sum(row[name] for row in rows):,.0f}" for name in names)
    return fmt.format(*(statistics.median(row[name] for row in rows) for name in names))


def scenario_title(name: str, options: argparse.Namespace) -> str:
    return {
        "broadcast": f"broadcast to {options.clients:,}",
        "latency": f"latency at {options.rate:g} broadcasts/s",
        "rooms": f"{options.rooms} rooms x {options.members}",
        "rooms_one": f"{options.rooms} rooms x {options.members}, all on node 1",
    }[name]


def table(results: dict[str, dict[str, list[dict[str, float]]]], errors: dict[str, dict[str, str]],
          impls: dict[str, Impl], options: argparse.Namespace) -> str:
    lines = ["| scenario | metric | " + " | ".join(TITLES[name] for name in impls) + " |",
             "|---|---|" + "---|" * len(impls)]
    for scenario, title, keys, fmt in ROWS:
        source = SCENARIO_OF_ROW.get(scenario, scenario)
        if source not in options.scenarios:
            continue
        cells = []
        for name, impl in impls.items():
            if impl.unavailable:
                cells.append("n/a")
            elif source in errors.get(name, {}):
                cells.append("failed")
            else:
                cells.append(cell(results.get(name, {}).get(source, []), keys, fmt))
        lines.append(f"| {scenario_title(scenario, options)} | {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, list[dict[str, float]]]], impls: dict[str, Impl]) -> str:
    """The issue's targets as ratios of medians in this run (ws / peer; at most 1 meets the target)."""
    def med(name: str, scenario: str, key: str) -> float | None:
        rows = results.get(name, {}).get(scenario, [])
        return statistics.median(row[key] for row in rows) if rows and all(key in row for row in rows) else None

    checks = [
        ("broadcast: server CPU per delivery", "broadcast", "server_us_per_delivery", "socketio", 1.0),
        ("broadcast: server CPU per delivery", "broadcast", "server_us_per_delivery", "python-socketio", 0.25),
        ("rooms: server CPU per delivery", "rooms", "server_us_per_delivery", "socketio", 1.0),
        ("rooms: server CPU per delivery", "rooms", "server_us_per_delivery", "python-socketio", 0.25),
        ("broadcast: Redis CPU per published message", "broadcast", "redis_us_per_message", "socketio", 1.0),
        ("rooms: Redis CPU per published message", "rooms", "redis_us_per_message", "socketio", 1.0),
        ("broadcast: Redis command time per published message", "broadcast", "redis_cmd_us_per_message", "socketio", 1.0),
        ("rooms: Redis command time per published message", "rooms", "redis_cmd_us_per_message", "socketio", 1.0),
        ("latency p99 at the fixed rate", "broadcast", "paced_p99_ms", "socketio", 1.0),
    ]
    lines = ["| target | ws / peer | at most | met |", "|---|---|---|---|"]
    for title, scenario, key, peer, limit in checks:
        ours, theirs = med("ws", scenario, key), med(peer, scenario, key)
        if ours is None or theirs is None or peer not in impls:
            continue
        ratio = ours / theirs
        lines.append(f"| {title}, ws / {TITLES[peer]} | {ratio:.2f} | {limit:g} | {'yes' if ratio <= limit else 'no'} |")
    return "\n".join(lines)


def recovery_cost(results: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    """What recording costs: ws + recovery against ws, ratios of the medians."""
    def med(name: str, scenario: str, key: str) -> float | None:
        rows = results.get(name, {}).get(scenario, [])
        return statistics.median(row[key] for row in rows) if rows and all(key in row for row in rows) else None

    lines = ["| scenario | metric | ws + recovery / ws |", "|---|---|---|"]
    for scenario in ("broadcast", "rooms"):
        for title, key in (("deliveries/s", "deliveries_per_s"), ("server CPU per delivery", "server_us_per_delivery"),
                           ("Redis CPU per published message", "redis_us_per_message"),
                           ("Redis command time per published message", "redis_cmd_us_per_message")):
            plain, recorded = med("ws", scenario, key), med("ws+recovery", scenario, key)
            if plain and recorded:
                lines.append(f"| {scenario} | {title} | {recorded / plain:.2f} |")
    return "\n".join(lines)


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impls", default=DEFAULT_IMPLS, help=f"comma-separated, of {', '.join(IMPLS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--nodes", type=int, default=2, help="server processes per implementation")
    parser.add_argument("--clients", type=int, default=1000, help="broadcast subscribers")
    parser.add_argument("--rounds", type=int, default=300, help="broadcasts in the saturated phase")
    parser.add_argument("--window", type=int, default=8, help="rounds in flight at most in the saturated phases")
    parser.add_argument("--paced", type=int, default=100, help="broadcasts at --rate for the latency (0: none)")
    parser.add_argument("--rate", type=float, default=20.0, help="broadcasts per second in the latency phase")
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--room-rounds", type=int, default=100, help="rounds of one message to every room")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds with nothing published before each measured phase, for Redis' idle rate")
    parser.add_argument("--redis-settle", type=float, default=0.004,
                        help="cores Redis may use before the warm-up (up to 10 s are waited for it)")
    parser.add_argument("--stall", type=float, default=10.0, help="seconds without progress before deliveries count as lost")
    parser.add_argument("--python-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the event loop of every Python server (ws and python-socketio alike)")
    parser.add_argument("--load-loop", choices=("uvloop", "asyncio"), default="uvloop" if has_uvloop() else "asyncio")
    parser.add_argument("--node", default="node", help="the Node.js binary")
    parser.add_argument("--ws-root", type=Path, default=ROOT,
                        help="the directory whose ws/ the ws servers import (default: this checkout; e.g. another commit's)")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--quiet-limit", type=float, default=0.15)
    parser.add_argument("--noise-limit", type=float, default=0.1)
    parser.add_argument("--noise-retries", type=int, default=3)
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--markdown", help="write the report here (default: benchmarks/results/cluster-peers-STAMP.md)")
    options = parser.parse_args()
    options.impls = [name.strip() for name in options.impls.split(",") if name.strip()]
    options.scenarios = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    for name in options.impls:
        if name not in IMPLS:
            parser.error(f"unknown implementation {name!r} (of {', '.join(IMPLS)})")
    for name in options.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (of {', '.join(SCENARIOS)})")
    stopping: list[str] = []

    def interrupted(signum: int, frame: Any) -> None:
        stopping.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(stopping[0])  # the servers are stopped below (a loop callback may swallow it: see below)

    # Ours rather than asyncio.Runner's (which only cancels the scenario's task on the first SIGINT).
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    header = f"# ws cluster against Socket.IO and python-socketio: {describe_machine()}"
    print(header, flush=True)
    impls = make_impls(options)
    processes = Processes()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    errors: dict[str, dict[str, str]] = {}
    versions = ""
    try:
        redis_port, redis = processes.redis(len(processes.cores) + 1)  # floats over every core
        url = f"redis://127.0.0.1:{redis_port}/0"
        for impl in impls.values():
            impl.unavailable = availability(impl, options)
            if impl.unavailable:
                print(f"{impl.name}: not measured: {impl.unavailable}", file=sys.stderr, flush=True)
                continue
            impl.start(processes, url, options.nodes, options.ws_root)
        versions = describe_versions(impls, options)
        running = [impl for impl in impls.values() if not impl.unavailable]
        for rep in range(options.reps):
            for index, scenario in enumerate(options.scenarios):
                shift = (rep + index) % max(1, len(running))
                for impl in running[shift:] + running[:shift]:
                    if scenario in errors.get(impl.name, {}):
                        continue
                    for attempt in range(options.noise_retries + 1):
                        try:
                            row = measure(impl, scenario, redis.pid, redis_port, options)
                        except Exception as exc:  # a peer that fails is reported, and the others go on
                            if stopping:
                                raise KeyboardInterrupt(stopping[0]) from exc
                            errors.setdefault(impl.name, {})[scenario] = f"{type(exc).__name__}: {exc}"
                            print(f"rep {rep + 1} {scenario} {impl.name}: FAILED {exc!r}", file=sys.stderr, flush=True)
                            break
                        if stopping:
                            raise KeyboardInterrupt(stopping[0])
                        if row["other_cores"] <= options.noise_limit:
                            break
                        print(f"rep {rep + 1} {scenario} {impl.name}: rest of the machine used {row['other_cores']:.2f} cores, again",
                              file=sys.stderr, flush=True)
                    if scenario in errors.get(impl.name, {}):
                        continue
                    results.setdefault(impl.name, {}).setdefault(scenario, []).append(row)
                    print(f"rep {rep + 1} {scenario} {impl.name}: {row['deliveries_per_s']:,.0f} deliveries/s, "
                          f"{row['server_us_per_delivery']:.2f} us/delivery (servers), {row['redis_us_per_message']:.1f} us/message (Redis), "
                          f"lost {row['lost']:.0f}" + (f", paced p50/p99 {row['paced_p50_ms']:.2f}/{row['paced_p99_ms']:.2f} ms"
                                                      if "paced_p99_ms" in row else "")
                          + f", rest {row['other_cores']:.2f} cores", file=sys.stderr, flush=True)
    finally:
        processes.stop()

    report = render(header, versions, results, errors, impls, options)
    print("\n" + report)
    target = Path(options.markdown) if options.markdown else ROOT / "benchmarks" / "results" / f"cluster-peers-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report + "\n")
    print(f"\nwrote {target}", file=sys.stderr)
    if options.json:
        Path(options.json).write_text(json.dumps({"options": vars(options), "results": results, "errors": errors}, indent=1, default=str))
    return 1 if errors else 0


def describe_versions(impls: dict[str, Impl], options: argparse.Namespace) -> str:
    parts = []
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    parts.append(next((w.split("=", 1)[1] for w in redis if w.startswith("v=")), "?").join(("Redis ", "")))
    if "socketio" in impls and not impls["socketio"].unavailable:
        script = ("const v = n => require(n + '/package.json').version; console.log(['socket.io', '@socket.io/redis-adapter', 'redis']"
                  ".map(n => n + ' ' + v(n)).join(', ') + ', Node ' + process.versions.node)")
        node = subprocess.run([options.node, "-e", script], cwd=str(SOCKETIO_DIR), capture_output=True, text=True)
        parts.append(node.stdout.strip() or "socket.io ?")
    if any(name.startswith("python-socketio") and not impl.unavailable for name, impl in impls.items()):
        from importlib.metadata import version

        names = ["python-socketio", "python-engineio", "uvicorn", "aiohttp", "redis"]
        parts.append(", ".join(f"{n} {version(n)}" for n in names))
    parts.append(f"Python servers on {options.python_loop}, the load on {options.load_loop}")
    return "; ".join(parts)


def render(header: str, versions: str, results: dict[str, dict[str, list[dict[str, float]]]], errors: dict[str, dict[str, str]],
           impls: dict[str, Impl], options: argparse.Namespace) -> str:
    lines = [header.lstrip("# "), "", versions + ".", "",
             f"{options.nodes} server processes per implementation sharing one redis-server; "
             f"medians of {options.reps} repetitions (loss summed); broadcasts and room messages of 32 bytes; "
             f"{options.rounds} broadcasts to {options.clients:,} clients and {options.room_rounds} rounds of "
             f"{options.rooms} room messages, at most {options.window} rounds in flight; the latency from "
             f"{options.paced} broadcasts at {options.rate:g}/s.", "",
             table(results, errors, impls, options), ""]
    targets = ratios(results, impls)
    if targets.count("\n") > 1:
        lines += ["Targets of issue 19 (ratios of the medians above):", "", targets, ""]
    cost = recovery_cost(results)
    if cost.count("\n") > 1:
        lines += ["What recovery costs (ratios of the medians above):", "", cost, ""]
    for name, impl in impls.items():
        if impl.unavailable:
            lines.append(f"* {TITLES[name]}: not measured: {impl.unavailable}.")
        for scenario, error in errors.get(name, {}).items():
            lines.append(f"* {TITLES[name]}, {scenario}: failed: {error}")
    return "\n".join(lines).rstrip()


if __name__ == "__main__":
    sys.exit(main())
