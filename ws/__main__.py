"""``python -m ws`` and the ``ws`` / ``ws-js`` console scripts: the command-line client and server
(see ``ws.cli``).

The name check runs first and the CLI is imported after it, so that a warning about another
distribution's ``ws`` is printed even when that one's files broke this package.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ._install import warn_about_clashes

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Warn when another installed distribution claims the name ``ws``, then run the CLI."""
    warn_about_clashes(sys.stderr, str(sys.modules[__package__ or "ws"].__file__))
    from .cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
