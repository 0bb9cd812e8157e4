"""``mypy --strict ws`` runs in the suite: the type hints are part of what the tests check.

The settings are setup.cfg's ``[mypy]`` (strict, Python 3.10, ``files = ws``); the
incremental cache under ``.mypy_cache`` keeps a second run to a few seconds.
"""

from __future__ import annotations

import pytest

from .conftest import ROOT

from mypy import api as mypy_api  # noqa: E402  (a test dependency)


def test_mypy_strict_passes_on_ws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(ROOT / "setup.cfg"), "--strict", "--cache-dir", str(ROOT / ".mypy_cache"), "ws"]
    )
    assert status == 0, f"mypy --strict ws failed:\n{stdout}{stderr}"
