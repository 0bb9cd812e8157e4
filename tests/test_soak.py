"""scripts/soak, short: 100 clients for 5 s with churn, uncompressed and with
permessage-deflate; nothing lost, no descriptor leak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.parametrize("deflate", [False, True], ids=["uncompressed", "deflate"])
def test_short_soak_loses_nothing_and_leaks_nothing(tmp_path: Path, deflate: bool) -> None:
    summary_file = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak"), "--clients", "100", "--duration", "5",
         "--json", str(summary_file)] + (["--deflate"] if deflate else []),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "soak: OK" in proc.stdout
    summary = json.loads(summary_file.read_text())
    assert summary["problems"] == [] and summary["deflate"] is deflate
    assert summary["lost"] == 0 and summary["mismatched"] == 0
    assert summary["sent"] > 500 and summary["echoed"] > 500
    assert summary["sent"] == summary["echoed"] + summary["abandoned"]
    assert summary["aborts"] > 0 and summary["clean_closes"] > 0  # both ways of leaving were exercised
    assert summary["connections"] > 100  # clients reconnected
    assert summary["server_fds_after"] <= summary["server_fds_before"]
    assert summary["server_fds_peak"] >= summary["server_fds_before"] + 50  # the clients really were connected
