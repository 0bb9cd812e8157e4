"""The distribution people install: built, checked, installed into a fresh venv and run from there.

``python -m build`` makes the sdist and, from it, the wheel (as a release would: an sdist missing a
file fails here). ``twine check --strict`` reads their metadata as PyPI would. The wheel is installed
into a new venv (its dependencies resolved by pip from the configured index, as ``pip install ws-js``
would; no ``--system-site-packages``, so nothing of the development venv leaks in) and the demo runs
from a temporary directory with no source tree on the path. Last, fake distributions that claim the
name ``ws`` (a ``ws`` command; a top-level ``ws`` package, as PyPI's unrelated ``ws`` ships) are
installed beside it, and the command line must name them.

The builds need setuptools from the index (pip's isolated build environment), as the suite's own
``pip install -e`` does. ``WS_SKIP_PACKAGING=<why>`` skips this module and shows the reason (say, a
machine with no index); nothing else does. About 30 s on a quiet machine.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import urllib.request
import zipfile
from pathlib import Path
from queue import Empty, Queue
from typing import Iterator, NamedTuple

import pytest

import ws
from ws._version import DISTRIBUTION

from .conftest import ROOT

EXAMPLES = ROOT / "scripts" / "examples"
BUILD_TIMEOUT = 120.0  # a cold pip cache downloads setuptools into the build environment
STEP_TIMEOUT = 60.0
WAIT = 20.0  # a server's first line, a client's run, a process's exit

_why_skip = os.environ.get("WS_SKIP_PACKAGING", "").strip()
pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bool(_why_skip), reason=f"WS_SKIP_PACKAGING={_why_skip!r}"),
    pytest.mark.skipif(os.name != "posix", reason="the venv layout (bin/) and signals assume POSIX"),
]


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = STEP_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited with {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def _build_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _build(source: Path, out: Path, *what: str) -> list[Path]:
    """``python -m build`` (isolated: setuptools as the build-system table asks); the files it made."""
    out.mkdir(exist_ok=True)
    _run([sys.executable, "-m", "build", *what, "--outdir", out, source], cwd=out, env=_build_env(),
         timeout=BUILD_TIMEOUT)
    return sorted(out.iterdir())


class Dist(NamedTuple):
    sdist: Path
    wheel: Path


class Venv(NamedTuple):
    root: Path
    package: Path  # where the wheel put ws/

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a person who installed ws-js: no PYTHONPATH, the venv's bin/ first."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "WS_NO_SIGNALS")}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def pip_install(self, *args: str | Path) -> None:
        _run([self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
             cwd=self.root, env=self.env())


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    files = _build(ROOT, tmp_path_factory.mktemp("dist"))
    sdists = [f for f in files if f.name.endswith(".tar.gz")]
    wheels = [f for f in files if f.suffix == ".whl"]
    assert len(sdists) == 1 and len(wheels) == 1, files
    return Dist(sdists[0], wheels[0])


@pytest.fixture(scope="module")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", root], cwd=root.parent)
    venv = Venv(root, root)
    venv.pip_install(dist.wheel)  # the wheel file itself; its dependencies from the index
    _run([venv.python, "-m", "pip", "check"], cwd=root, env=venv.env())
    where = _run([venv.python, "-c", "import ws; print(ws.__file__)"], cwd=root, env=venv.env())
    return Venv(root, Path(where.stdout.strip()).parent)


def _version_line(venv: Venv) -> str:
    # A plain install (no speed extra): asyncio's loop and h11.
    return f"{DISTRIBUTION} {ws.__version__} (the ws package in {venv.package}; loop: asyncio, http: h11)"


# -- the archives -----------------------------------------------------------------------------------


def test_twine_check_passes(dist: Dist) -> None:
    done = _run([sys.executable, "-m", "twine", "check", "--strict", dist.sdist, dist.wheel], cwd=dist.wheel.parent)
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_names_and_version_come_from_one_place(dist: Dist) -> None:
    version = ws.__version__
    assert dist.wheel.name == f"ws_js-{version}-py3-none-any.whl"
    assert dist.sdist.name == f"ws_js-{version}.tar.gz"
    with zipfile.ZipFile(dist.wheel) as wheel:
        meta = email.parser.Parser().parsestr(wheel.read(f"ws_js-{version}.dist-info/METADATA").decode())
    assert meta["Name"] == DISTRIBUTION and meta["Version"] == version
    assert meta["License-Expression"] == "MIT"
    requires = meta.get_all("Requires-Dist") or []
    for needed in ("pyee", "websockets", "h11"):
        assert any(r.startswith(needed) and "extra ==" not in r for r in requires), (needed, requires)
    assert {"test", "speed", "redis"} <= set(meta.get_all("Provides-Extra") or [])


def test_wheel_holds_the_package_and_nothing_else(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
        info = f"ws_js-{ws.__version__}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"ws", info}, tops  # no tests/, docs/, scripts/, benchmarks/
    assert "ws/py.typed" in names
    assert f"{info}/licenses/LICENSE" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".so"))]
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ws").rglob("*.py")}
    assert source == {n for n in names if n.endswith(".py")}, "every module of ws/, and only those"
    scripts = dict(re.findall(r"^(\S+) = (\S+)$", entry_points.split("[console_scripts]")[1], re.M))
    assert scripts == {"ws": "ws.__main__:main", DISTRIBUTION: "ws.__main__:main"}


def test_sdist_builds_the_wheel_and_leaves_the_tests_out(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"README.md", "CHANGELOG.md", "LICENSE", "setup.cfg", "pyproject.toml", "ws/py.typed", "ws/_version.py"} <= names
    assert not [n for n in names if n.split("/")[0] in ("tests", "docs", "scripts", "benchmarks", ".ci")]


# -- installed: no source tree in sight -------------------------------------------------------------


def test_installed_package_is_the_venvs(venv: Venv, tmp_path: Path) -> None:
    done = _run([venv.python, "-c", "import sys, ws; print(ws.__file__); print(ws.__version__); print(sys.path)"],
                cwd=tmp_path, env=venv.env())
    where, version, path = done.stdout.splitlines()
    assert Path(where).is_relative_to(venv.root), where
    assert version == ws.__version__
    assert str(ROOT) not in path, path
    for command in ([venv.bin("ws")], [venv.bin(DISTRIBUTION)], [venv.python, "-m", "ws"]):
        done = _run([*command, "--version"], cwd=tmp_path, env=venv.env())
        assert done.stdout.strip() == _version_line(venv), command
        assert done.stderr == "", command  # no other distribution claims 'ws' here


class _Lines:
    """A process's stdout lines, read by a thread so that every wait for one is bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._queue: Queue[str] = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except Empty:
                raise AssertionError(f"{self.proc.args}: no line matching {pattern!r} in {timeout} s; seen {self.seen}") from None
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


def _started(args: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _stopped(proc: subprocess.Popen[str], signum: int) -> int:
    """Send ``signum``; the exit status (killed, and the test failed, if it does not exit in time)."""
    proc.send_signal(signum)
    try:
        return proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(WAIT)
        raise AssertionError(f"{proc.args} did not exit within {WAIT} s of signal {signum}") from None


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """scripts/demo's server, client and page, copied out of the source tree."""
    demo = tmp_path / "demo"
    shutil.copytree(EXAMPLES / "static", demo / "static")
    for name in ("demo_server.py", "demo_client.py"):
        shutil.copy(EXAMPLES / name, demo / name)
    return demo


def test_demo_runs_on_the_installed_wheel(venv: Venv, demo_dir: Path) -> None:
    """scripts/demo's two programs (they live in scripts/examples/, not in the package: the package is
    what they import) on the venv's python, from a copy in a temporary directory."""
    server = _started([venv.python, "demo_server.py", "0"], demo_dir, venv.env())
    try:
        url = _Lines(server).expect(r"demo chat on (http://[0-9.]+:\d+)/").group(1)
        with urllib.request.urlopen(url + "/", timeout=WAIT) as page:
            assert b"<html" in page.read().lower()
        client = _run([venv.python, "demo_client.py", url.replace("http:", "ws:") + "/chat"], cwd=demo_dir,
                      env=venv.env(), timeout=WAIT)
        assert client.stdout.splitlines() == [
            f"connected to {url.replace('http:', 'ws:')}/chat",
            "  < hello from Python",
            "  < this is ws.on('message') in a plain script",
            "  < bye",
            "closed 1000 demo done",
        ], client.stdout + client.stderr
        assert client.stderr == ""
    finally:
        if server.poll() is None:
            _stopped(server, signal.SIGTERM)


def test_console_scripts_serve_and_connect(venv: Venv, demo_dir: Path) -> None:
    """The installed commands without the demo's scripts: ``ws-js serve`` the page, ``ws connect`` to it."""
    server = _started([venv.bin(DISTRIBUTION), "serve", "--port", "0", "--path", "/chat", "--broadcast",
                       "--static", demo_dir / "static"], demo_dir, venv.env())
    try:
        url = _Lines(server).expect(r"Listening on (ws://[0-9.]+:\d+/chat)").group(1)
        client = _run([venv.bin("ws"), "connect", url, "-x", "hello from the wheel", "-w", "1"], cwd=demo_dir,
                      env=venv.env(), timeout=WAIT)
        assert client.stdout.splitlines() == ["< hello from the wheel"], client.stdout + client.stderr
    finally:
        if server.poll() is None:
            assert _stopped(server, signal.SIGINT) == 0


# -- another distribution claims 'ws' ----------------------------------------------------------------


def _fake_distribution(where: Path, name: str, files: dict[str, str], setuptools: str) -> Path:
    """A one-file setuptools project, built to a wheel (isolated build, like ours)."""
    source = where / name
    for path, text in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(text)
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n{setuptools}'
    )
    (wheel,) = _build(source, where / f"{name}-dist", "--wheel")
    return wheel


def test_another_distributions_ws_is_named(venv: Venv, tmp_path: Path) -> None:
    """Mutates the module's venv: this test must stay the last of the module."""
    command = _fake_distribution(
        tmp_path, "fake-ws-tool", {"fake_ws_tool.py": "def main():\n    print('the other ws')\n"},
        '[project.scripts]\nws = "fake_ws_tool:main"\n[tool.setuptools]\npy-modules = ["fake_ws_tool"]\n',
    )
    venv.pip_install("--no-index", "--no-deps", command)
    # pip said nothing and took the command over: the reason for the warning and for 'ws-js'.
    assert _run([venv.bin("ws")], cwd=tmp_path, env=venv.env()).stdout == "the other ws\n"
    for spelling in ([venv.bin(DISTRIBUTION)], [venv.python, "-m", "ws"]):
        done = _run([*spelling, "--version"], cwd=tmp_path, env=venv.env())
        assert done.stdout.strip() == _version_line(venv)
        assert f"  {DISTRIBUTION} {ws.__version__}: this program" in done.stderr
        assert "fake-ws-tool 1.0: a 'ws' command (fake_ws_tool:main)" in done.stderr
        assert f"'python -m ws' or '{DISTRIBUTION}' always runs" in done.stderr

    # import ws finds a source tree first (PYTHONPATH): the installed ws-js is not what runs.
    done = _run([venv.bin(DISTRIBUTION), "--version"], cwd=tmp_path, env=venv.env(PYTHONPATH=str(ROOT)))
    assert f"'import ws' loads {ROOT / 'ws' / '__init__.py'}, not the package {DISTRIBUTION}" in done.stderr
    assert str(venv.package / "__init__.py") in done.stderr

    # A distribution with a top-level ws package, as PyPI's 'ws' (a web crawler) has: its empty
    # ws/__init__.py replaces ours, and the warning still comes before anything of ours is needed.
    package = _fake_distribution(
        tmp_path, "fake-ws-crawler", {"ws/__init__.py": "", "ws/crawler.py": "def crawl():\n    pass\n"},
        '[tool.setuptools]\npackages = ["ws"]\n',
    )
    venv.pip_install("--no-index", "--no-deps", package)
    done = _run([venv.python, "-m", "ws", "--version"], cwd=tmp_path, env=venv.env(), check=False)
    assert "fake-ws-crawler 1.0: a top-level 'ws' package" in done.stderr, done.stderr
    assert f"pip install --force-reinstall {DISTRIBUTION}" in done.stderr
