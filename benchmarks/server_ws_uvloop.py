"""The ``ws`` server adapter on uvloop (what the ``ws-js[speed]`` extra installs).

The same user code as ``server_ws.py``; only the event loop differs, so the
two rows of a run compare the loops and nothing else.
"""
import runpy
import sys
from pathlib import Path

sys.argv += ["--loop", "uvloop"]
runpy.run_path(str(Path(__file__).with_name("server_ws.py")), run_name="__main__")
