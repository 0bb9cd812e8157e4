"""The ``ws`` client adapter on the ``ws-js[speed]`` extra: uvloop (the client parses no HTTP request).

The same user code as ``client_ws.py`` (the plain install) on uvloop.
"""
import runpy
import sys
from pathlib import Path

sys.argv.append("--speed")
runpy.run_path(str(Path(__file__).with_name("client_ws.py")), run_name="__main__")
