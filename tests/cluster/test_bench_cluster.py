"""``benchmarks/cluster.py`` (``scripts/bench --cluster``) runs end to end, on a small scale, and reports both setups."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ..conftest import ROOT


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_the_cluster_benchmark_measures_one_process_and_two_through_redis() -> None:
    args = ["--clients", "20", "--reps", "1", "--rounds", "20", "--paced", "3", "--rate", "50"]
    args += ["--quiet-wait", "0", "--noise-retries", "0"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cluster.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert {"1 process", "2 processes + Redis"} <= set(rows), done.stdout
    for name in ("1 process", "2 processes + Redis"):
        assert "nan" not in rows[name], rows[name]  # every delivery was timed
