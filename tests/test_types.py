"""``mypy --strict ws`` runs in the suite: the type hints are part of what the tests check.

The settings are setup.cfg's ``[mypy]`` (strict, Python 3.10, ``files = ws``); the
incremental cache under ``.mypy_cache`` keeps a second run to a few seconds.  A
second run targets the running interpreter's version: scripts/test runs this
file on every claimed Python, against the dependencies installed there.
"""

from __future__ import annotations

import sys

import pytest

from .conftest import ROOT

from mypy import api as mypy_api  # noqa: E402  (a test dependency)


RUNNING = "%d.%d" % sys.version_info[:2]


@pytest.mark.parametrize("target", sorted({"setup.cfg", RUNNING}))
def test_mypy_strict_passes_on_ws(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    monkeypatch.chdir(ROOT)
    version = [] if target == "setup.cfg" else ["--python-version", target]
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(ROOT / "setup.cfg"), "--strict", "--cache-dir", str(ROOT / ".mypy_cache"), *version, "ws"]
    )
    assert status == 0, f"mypy --strict ws ({target}) failed:\n{stdout}{stderr}"
