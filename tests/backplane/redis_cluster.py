"""A real three-master Redis Cluster for the cluster backplane tests: our own processes, on free ports.

Three ``redis-server --cluster-enabled yes`` in temporary directories (no
persistence; each keeps its ``nodes.conf``), joined by ``redis-cli --cluster
create`` with no replicas.  Started once per session (about 2 s) and shared:
each test uses a prefix of its own.  A master can be stopped and started
again on the same port with its ``nodes.conf`` (it comes back with its slots
and no data), or frozen with SIGSTOP.  Skipped, with the reason, when
``redis-server``/``redis-cli`` or the redis package are missing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import free_port, ping

REDIS = shutil.which("redis-server")
CLI = shutil.which("redis-cli")


class Master:
    """One ``redis-server`` in cluster mode; ``stop()``/``start()`` keep its port, bus port and ``nodes.conf``."""

    def __init__(self, directory: Path, port: int, bus_port: int) -> None:
        self.directory, self.port, self.bus_port = directory, port, bus_port
        self.name = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        assert REDIS is not None
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(self.bus_port)]
        args += ["--repl-diskless-sync-delay", "0"]  # a replica (the failover test) syncs at once, not 5 s later
        args += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:] if (self.directory / "redis.log").exists() else ""
                self.stop()
                pytest.fail(f"redis-server (cluster mode) did not answer PING on port {self.port} within {timeout} s:\n{log}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # in case a test froze it
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def call(self, *args: Any) -> Any:
        """One command on this master (a short-lived redis-py connection)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, protocol=2, socket_timeout=5)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def info(self, section: str) -> dict[str, Any]:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, protocol=2, socket_timeout=5)
        try:
            return dict(client.info(section))
        finally:
            client.close()

    def cluster_info(self) -> dict[str, str]:
        text = self.call("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)


class RedisClusterServers:
    """Three masters, all 16384 slots, no replicas."""

    def __init__(self, root: Path) -> None:
        self.masters: list[Master] = []
        ports: set[int] = set()
        while len(ports) < 6:
            ports.add(free_port())
        numbers = sorted(ports)
        for index in range(3):
            directory = root / f"master-{index}"
            directory.mkdir()
            self.masters.append(Master(directory, numbers[index], numbers[index + 3]))
        self.url = "redis+cluster://" + ",".join(m.name for m in self.masters[:2]) + "/"  # one is enough; two, to show the form

    def start(self, timeout: float = 30.0) -> None:
        assert CLI is not None
        for master in self.masters:
            master.start()
        created = subprocess.run(
            [CLI, "--cluster", "create", *(m.name for m in self.masters), "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
        if created.returncode != 0:
            self.stop()
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout[-2000:]}\n{created.stderr[-2000:]}")
        self.wait_ok(timeout)

    def healthy(self) -> bool:
        """Every master answers, sees the cluster ok with all slots, and knows the three."""
        try:
            infos = [master.cluster_info() for master in self.masters]
        except Exception:
            return False
        return all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384" and i.get("cluster_known_nodes") == "3" for i in infos)

    def wait_ok(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise AssertionError(f"the Redis Cluster is not ok after {timeout} s: {[m.cluster_info() for m in self.masters if m.process]}")
            time.sleep(0.05)

    def owner(self, key: str | bytes) -> Master:
        """The master that owns ``key``'s slot, as the cluster says now."""
        from redis.crc import key_slot

        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for start, end, primary, *_ in self.masters[0].call("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(primary[1])
                return next(m for m in self.masters if m.port == port)
        raise AssertionError(f"no master owns slot {slot}")

    def spread(self, name: Any, base: str) -> dict[Master, str]:
        """For each master, a name ``base-N`` such that ``name(base-N)`` (a key) lands on that master."""
        from redis.crc import key_slot

        ranges = [(int(start), int(end), int(primary[1])) for start, end, primary, *_ in self.masters[0].call("CLUSTER", "SLOTS")]
        found: dict[Master, str] = {}
        for number in range(10_000):
            candidate = f"{base}-{number}"
            slot = key_slot(name(candidate).encode())
            port = next(p for start, end, p in ranges if start <= slot <= end)
            master = next(m for m in self.masters if m.port == port)
            found.setdefault(master, candidate)
            if len(found) == len(self.masters):
                return found
        raise AssertionError("no names found for every master")

    def stop(self) -> None:
        for master in self.masters:
            master.stop()


@pytest.fixture(scope="session")
def redis_cluster_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """The session's cluster, started on first use."""
    if REDIS is None or CLI is None:
        pytest.skip("redis-server and redis-cli are needed for the Redis Cluster tests (scripts/setup-peers installs Debian's redis-server)")
    pytest.importorskip("redis", reason="the redis package is not installed: pip install 'ws-js[redis]'")
    servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def redis_cluster(redis_cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The shared cluster, checked healthy (every master up, cluster ok) before the test.

    A master that an earlier test left stopped (it failed before starting it again) is started first.
    """
    for master in redis_cluster_servers.masters:
        if master.process is None or master.process.poll() is not None:
            master.start()
    redis_cluster_servers.wait_ok()
    return redis_cluster_servers
