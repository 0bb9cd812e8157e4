"""The ``ws`` server adapter on the ``ws-js[speed]`` extra: uvloop and httptools.

The same user code as ``server_ws.py`` (the plain install); only what runs
underneath differs, so the two rows of a run compare the installs.
"""
import runpy
import sys
from pathlib import Path

sys.argv.append("--speed")
runpy.run_path(str(Path(__file__).with_name("server_ws.py")), run_name="__main__")
