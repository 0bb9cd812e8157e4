"""Whether this ``ws`` is the only one installed: the command line's check for name clashes.

The name ``ws`` is short and popular. PyPI's ``ws`` is an unrelated project (a web crawler) that
ships a top-level ``ws`` package, and any project may declare a ``ws`` console script. pip installs
them beside this one without a word: the last one installed owns ``bin/ws`` and, for a package,
overwrites the files of ``ws/`` the two share. Nothing here can prevent that, so ``python -m ws`` and
``ws-js`` say it, naming the other distribution and the spellings that always run this one.

Only the standard library and ``ws._version`` are imported, so that the warning is printed even when
another distribution has overwritten ``ws/__init__.py``.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Iterable, NamedTuple, TextIO

from ._version import DISTRIBUTION, __version__

__all__ = ["Claim", "claims", "shadowing", "clash_warning", "warn_about_clashes"]

#: The console-script targets of this project, whatever name it was installed under: an install made
#: before the rename (then called ``ws``, say a checkout's stale ``ws.egg-info``) runs this code too.
OUR_TARGETS = frozenset({"ws.__main__:main", "ws.cli:main"})

#: A RECORD line of a file in a top-level ``ws`` package or module.
_WS_IN_RECORD = re.compile(r"^(ws/|ws\.py,)", re.MULTILINE)
#: An entry point named ``ws`` in ``entry_points.txt`` (its group is checked once parsed).
_WS_ENTRY_POINT = re.compile(r"^\s*ws\s*=", re.MULTILINE)


class Claim(NamedTuple):
    """Another distribution's claim on the name: a ``ws`` command or a top-level ``ws`` package."""

    distribution: str  # "name version"
    what: str


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_ours(dist: metadata.Distribution) -> bool:
    if _canonical(dist.metadata["Name"] or "") == DISTRIBUTION:
        return True
    return any(ep.group == "console_scripts" and ep.value in OUR_TARGETS for ep in dist.entry_points)


def _ships_ws_package(dist: metadata.Distribution) -> bool:
    """From ``top_level.txt`` where the build wrote one (setuptools), else from the RECORD's text."""
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return "ws" in top_level.split()
    return bool(_WS_IN_RECORD.search(dist.read_text("RECORD") or ""))


def claims(dists: Iterable[metadata.Distribution] | None = None) -> list[Claim]:
    """Every installed distribution other than this one that declares a ``ws`` console script or
    installs a top-level ``ws`` package, in name order."""
    found: set[Claim] = set()
    for dist in metadata.distributions() if dists is None else dists:
        # Cheap text searches first: parsing every distribution's METADATA would cost each command
        # tens of milliseconds.
        commands = _WS_ENTRY_POINT.search(dist.read_text("entry_points.txt") or "")
        package = _ships_ws_package(dist)
        if not (commands or package) or _is_ours(dist):
            continue
        label = f"{dist.metadata['Name']} {dist.version}"
        for ep in dist.entry_points:
            if ep.group == "console_scripts" and ep.name == "ws":
                found.add(Claim(label, f"a 'ws' command ({ep.value})"))
        if package:
            found.add(Claim(label, "a top-level 'ws' package (it shares the directory ws/ with this one)"))
    return sorted(found)


def shadowing(package_file: str) -> str | None:
    """Where this distribution installed ``ws`` when ``import ws`` went elsewhere (say a directory on
    ``PYTHONPATH``), else None.

    Only installs with a record of their files count: an editable install records no package file,
    and a source tree's ``*.egg-info`` is a build's note, not an install.
    """
    installed: list[Path] = []
    for ours in metadata.distributions(name=DISTRIBUTION):
        if ours.read_text("RECORD") is None:
            continue
        installed += [Path(str(ours.locate_file(path))).resolve() for path in ours.files or () if path.as_posix() == "ws/__init__.py"]
    if not installed or Path(package_file).resolve() in installed:
        return None
    return str(installed[0])


def clash_warning(package_file: str, found: list[Claim] | None = None) -> str | None:
    """The warning for the clashes found (None without any), naming both sides and the way out."""
    found = claims() if found is None else found
    installed = shadowing(package_file)
    if not found and installed is None:
        return None
    us = f"{DISTRIBUTION} {__version__}"
    lines = []
    if found:
        lines.append("ws: warning: another installed distribution claims the name 'ws' too:")
        lines.append(f"  {us}: this program (the JavaScript WebSocket API, 'import ws')")
        lines += [f"  {claim.distribution}: {claim.what}" for claim in found]
        if any(claim.what.startswith("a 'ws' command") for claim in found):
            lines.append(f"  The last one installed owns the 'ws' command; 'python -m ws' or '{DISTRIBUTION}' always runs {us}.")
        if any("package" in claim.what for claim in found):
            lines.append(f"  Two packages in one ws/ directory break each other: keep one (pip uninstall the other, then"
                         f" pip install --force-reinstall {DISTRIBUTION}).")
    if installed is not None:
        lines.append(f"ws: warning: 'import ws' loads {package_file}, not the package {us} installed ({installed}).")
    return "\n".join(lines)


def warn_about_clashes(stream: TextIO, package_file: str) -> None:
    """Print ``clash_warning()`` on ``stream`` when there is something to say."""
    text = clash_warning(package_file)
    if text:
        print(text, file=stream, flush=True)
