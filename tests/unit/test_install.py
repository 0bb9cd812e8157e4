"""ws._install on metadata written to disk: which distributions claim the name ``ws``.

The distributions here are real ``*.dist-info`` / ``*.egg-info`` directories read by
importlib.metadata, as pip leaves them; tests/test_packaging.py installs real wheels.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ws._install import Claim, claims, clash_warning, shadowing
from ws._version import DISTRIBUTION, __version__


def _dist(site: Path, name: str, *, scripts: dict[str, str] | None = None, top_level: str | None = None,
          record: list[str] | None = None, egg: bool = False) -> metadata.Distribution:
    info = site / (f"{name.replace('-', '_')}.egg-info" if egg else f"{name.replace('-', '_')}-1.0.dist-info")
    info.mkdir(parents=True)
    (info / ("PKG-INFO" if egg else "METADATA")).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if scripts:
        lines = "".join(f"{key} = {value}\n" for key, value in scripts.items())
        (info / "entry_points.txt").write_text(f"[console_scripts]\n{lines}")
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)
    if record is not None:
        (info / "RECORD").write_text("".join(f"{path},,\n" for path in record))
    return metadata.PathDistribution(info)


def test_a_ws_command_and_a_ws_package_of_others_are_claims(tmp_path: Path) -> None:
    dists = [
        _dist(tmp_path, "fake-tool", scripts={"ws": "fake_tool:main", "other": "fake_tool:other"}, top_level="fake_tool\n"),
        # No top_level.txt (not built by setuptools): the RECORD tells.
        _dist(tmp_path, "crawler", record=["ws/__init__.py", "ws/download.py", "crawler-1.0.dist-info/RECORD"]),
        _dist(tmp_path, "wsproto", top_level="wsproto\n", record=["wsproto/__init__.py"]),  # a prefix is not the name
        _dist(tmp_path, "websocket-client", scripts={"wsdump": "websocket._wsdump:main"}, top_level="websocket\n"),
    ]
    assert claims(dists) == [
        Claim("crawler 1.0", "a top-level 'ws' package (it shares the directory ws/ with this one)"),
        Claim("fake-tool 1.0", "a 'ws' command (fake_tool:main)"),
    ]


def test_this_project_under_any_name_is_not_a_claim(tmp_path: Path) -> None:
    dists = [
        _dist(tmp_path / "a", DISTRIBUTION, scripts={"ws": "ws.__main__:main", DISTRIBUTION: "ws.__main__:main"}, top_level="ws\n"),
        _dist(tmp_path / "b", "ws_js", top_level="ws\n"),  # the name as an installer may spell it
        # A checkout's metadata from before the rename (ws.egg-info): its 'ws' runs this code.
        _dist(tmp_path / "c", "ws", scripts={"ws": "ws.__main__:main"}, top_level="ws\n", egg=True),
    ]
    assert claims(dists) == []


def test_the_warning_names_both_sides_and_the_way_out() -> None:
    text = clash_warning(__file__, [Claim("fake-tool 1.0", "a 'ws' command (fake_tool:main)")])
    assert text is not None
    assert f"  {DISTRIBUTION} {__version__}: this program" in text
    assert "  fake-tool 1.0: a 'ws' command (fake_tool:main)" in text
    assert f"'python -m ws' or '{DISTRIBUTION}' always runs" in text
    assert "force-reinstall" not in text  # only a shared package directory needs that
    package = clash_warning(__file__, [Claim("ws 0.3.2", "a top-level 'ws' package (it shares the directory ws/ with this one)")])
    assert package is not None and f"pip install --force-reinstall {DISTRIBUTION}" in package
    assert "owns the 'ws' command" not in package


def test_nothing_to_say_in_the_development_venv() -> None:
    import ws

    # An editable install records no package file, so there is no other place ws should come from.
    assert shadowing(str(ws.__file__)) is None
    assert clash_warning(str(ws.__file__), []) is None
