"""Handshake floor, level ``websockets`` (see handshake_floor.py): for the handshake scenarios only."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from handshake_floor import main  # noqa: E402

main("websockets")
