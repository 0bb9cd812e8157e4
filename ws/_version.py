"""The release, in one place: ``setup.cfg`` reads it (``version = attr:``), ``ws.__version__`` and
``ws --version`` show it.

The distribution is not called ``ws`` on PyPI: that name belongs to an unrelated project (a web
crawler that also ships a top-level ``ws`` package), so this one is installed as ``ws-js`` and
imported as ``ws``.
"""

__version__ = "0.1.0"

#: The name to ``pip install`` (and of the unambiguous console script); the import name stays ``ws``.
DISTRIBUTION = "ws-js"
