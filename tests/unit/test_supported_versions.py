"""What setup.cfg declares agrees with what the code checks and what scripts/test tests.

The ranges themselves are tested at both ends by scripts/test (the lowest
releases on the oldest Python, the newest on the newest); these tests keep the
declarations from drifting apart: a range widened in one place and not the other
would make a claim no run checks.
"""

from __future__ import annotations

import configparser
import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType

import websockets

from ws.protocol import _websockets

from ..conftest import ROOT


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _script(name: str) -> ModuleType:
    """A Python script of scripts/ (no .py suffix) as a module."""
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(ROOT / "scripts" / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _requirements() -> dict[str, str]:
    lines = _setup_cfg()["options"]["install_requires"].strip().splitlines()
    return {line.split()[0]: line.split(None, 1)[1] for line in map(str.strip, lines) if line}


def test_the_websockets_range_is_the_one_the_code_checks() -> None:
    low, high = _websockets.SUPPORTED
    assert _requirements()["websockets"] == f">= {low}, < {high}"
    assert low <= int(websockets.__version__.split(".")[0]) < high


def test_the_claimed_pythons_start_at_python_requires_and_include_this_one() -> None:
    config = _setup_cfg()
    claimed = re.findall(r"Programming Language :: Python :: (3\.\d+)\s*$", config["metadata"]["classifiers"], re.M)
    assert claimed == sorted(claimed, key=lambda v: int(v.split(".")[1]))
    assert config["options"]["python_requires"].strip() == f">={claimed[0]}"
    assert "%d.%d" % sys.version_info[:2] in claimed
    # scripts/test runs every claimed Python; its profiles name only claimed ones.
    matrix = _script("test-pythons")
    assert matrix.claimed() == claimed
    assert set(matrix.PROFILES) <= set(claimed)


def test_the_lowest_constraints_pin_every_runtime_dependency_at_its_lower_bound() -> None:
    pins = _script("constraints-lowest").lowest(ROOT / "setup.cfg")
    expected = [f"{name}=={spec.split(',')[0].removeprefix('>=').strip()}" for name, spec in _requirements().items()]
    assert pins == expected and len(pins) == 3


def test_the_tests_run_with_and_without_the_speed_extra() -> None:
    """The test extra has the speed extra's accelerators; one subset of scripts/test turns them off."""
    extras = _setup_cfg()["options.extras_require"]

    def requirements(extra: str) -> set[str]:
        return {line.strip() for line in extras[extra].splitlines() if line.strip() and not line.strip().startswith("#")}

    speed = requirements("speed")
    assert {line.split()[0] for line in speed} == {"uvloop", "httptools"}
    assert speed <= requirements("test")
    matrix = _script("test-pythons")
    assert matrix.PLAIN == {"WS_LOOP": "asyncio", "WS_HTTP": "h11"}
    assert [version for version, (_, _, env) in matrix.PROFILES.items() if env == matrix.PLAIN] == ["3.10"]
