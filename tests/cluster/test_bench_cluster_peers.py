"""``benchmarks/cluster_peers/run.py`` (``scripts/bench --cluster-peers``) runs end to end on a tiny scale.

The ``ws`` adapter always (and its recovery variant once ``ws`` has
``WebSocketServer(recovery=...)``); the Socket.IO and python-socketio peers
only where ``scripts/bench --cluster-peers`` installed them, since the test
extra does not (their skip says what is missing).  A tiny run proves the
adapters and the load still speak to each other, deliver every message once
and produce every row; the figures themselves mean nothing at this size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT

PEERS = ROOT / "benchmarks" / "cluster_peers"
VENV = Path(os.environ.get("WS_CLUSTER_PEERS_VENV", "/tmp/ws-cluster-peers-venv"))
TINY = ["--clients", "20", "--rooms", "4", "--members", "5", "--rounds", "10", "--room-rounds", "5",
        "--paced", "4", "--rate", "50", "--reps", "1", "--quiet-wait", "0", "--noise-retries", "0", "--stall", "5",
        "--idle", "0.2"]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/setup-peers)")


def run(python: str, impls: str, tmp_path: Path) -> dict[tuple[str, str], list[str]]:
    """Run the harness; the table's cells by (scenario, metric), one per implementation."""
    report = tmp_path / "report.md"
    done = subprocess.run(
        [python, str(PEERS / "run.py"), "--impls", impls, "--markdown", str(report), *TINY],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cells = {}
    for line in report.read_text().splitlines():
        parts = [part.strip() for part in line.strip().strip("|").split("|")]
        if len(parts) >= 3 and parts[0] not in ("scenario", "---", "target") and not parts[0].startswith("---"):
            cells[(parts[0], parts[1])] = parts[2:]
    return cells


def check(cells: dict[tuple[str, str], list[str]], columns: int) -> None:
    """Every implementation measured in every scenario it runs, and no message lost, doubled or misdelivered."""
    scenarios = {scenario for scenario, _ in cells}
    assert {"broadcast to 20", "latency at 50 broadcasts/s", "4 rooms x 5", "4 rooms x 5, all on node 1"} <= scenarios, cells
    rate = cells[("broadcast to 20", "deliveries/s")]
    assert len(rate) == columns
    for value in rate:
        assert float(value.replace(",", "")) > 0, rate
    for (scenario, metric), values in cells.items():
        if metric.startswith("lost / duplicated"):
            for value in values:
                assert value in ("0 / 0 / 0", "—"), (scenario, values)
        else:
            assert not any("nan" in value or value == "failed" for value in values), (scenario, metric, values)
    latency = cells[("latency at 50 broadcasts/s", "p50 / p99 end to end (ms)")]
    assert all(" / " in value for value in latency), latency


def test_the_ws_adapter_runs_every_scenario_with_no_loss(tmp_path: Path) -> None:
    cells = run(sys.executable, "ws,ws+recovery", tmp_path)
    check(cells, 2)
    recovered = cells[("broadcast to 20", "server CPU per delivery (us, both processes)")][1]
    assert recovered not in ("n/a", "—"), cells  # the recovery variant measured, its "<offset>:" messages counted


@pytest.mark.skipif(not (PEERS / "socketio" / "node_modules" / "socket.io").is_dir() or shutil.which("node") is None,
                    reason="Socket.IO is not installed in benchmarks/cluster_peers/socketio (scripts/bench --cluster-peers runs npm ci)")
def test_the_socketio_peer_runs_every_scenario_with_no_loss(tmp_path: Path) -> None:
    check(run(sys.executable, "socketio", tmp_path), 1)


@pytest.mark.skipif(not (VENV / "bin" / "python").exists(),
                    reason=f"no bench venv at {VENV} with python-socketio (scripts/bench --cluster-peers makes it; "
                           "the test extra leaves it out)")
def test_the_python_socketio_peer_runs_every_scenario_with_no_loss(tmp_path: Path) -> None:
    check(run(str(VENV / "bin" / "python"), "python-socketio", tmp_path), 1)
