"""Prometheus metrics of ws's servers: connections, handshakes, messages, close codes, the backplane.

    import ws.metrics
    ws.metrics.enable()                    # before the servers accept (and before serve(workers=N))
    server.metrics('/metrics')             # a ws.http.Server route (it calls enable() itself)

or, in an application that serves its own ``/metrics`` (``prometheus_client.make_asgi_app()``...),
``ws.metrics.enable(registry)`` with its registry (``prometheus_client.REGISTRY`` by default).

Off (the default), nothing is counted and the message path is unchanged; on,
a message costs two additions to plain ints, which reach Prometheus when
scraped (one process) or every second (``PROMETHEUS_MULTIPROC_DIR``, which
``serve(workers=N)`` sets for its workers when you have not).  The metric
names and the multiprocess setup are in docs/deploying.md#metrics; needs
``pip install 'ws-js[metrics]'`` (``prometheus_client``).
"""

from __future__ import annotations

from ._runtime.metrics import UNMATCHED, disable, enable, enabled, exposition, fold, multiprocess_dir

__all__ = ["UNMATCHED", "disable", "enable", "enabled", "exposition", "fold", "multiprocess_dir"]
