"""Metrics in the Prometheus format: plain counters where the work is done, folded into Prometheus lazily.

**What it costs.**  Metrics are off until ``enable()`` (``ws.metrics``, or
``ws.http.Server.metrics(path)``).  Off, servers make plain ``WebSocket``s
and nothing on the message path changes.  On, a ``WebSocketServer`` makes
``MeteredWebSocket``s (``ws/connection/metered.py``), which count their
messages in plain ints of their own (a message: two additions), summed
into their path's :class:`Tally` when scraped and when they close; nothing
calls ``prometheus_client`` per message, per handshake or per publish.

**How the numbers reach Prometheus.**

* One process: a scrape runs :class:`Collector` (registered in the
  registry given to ``enable()``, ``prometheus_client.REGISTRY`` by
  default), which sums the tallies there and then: never stale.
* With ``PROMETHEUS_MULTIPROC_DIR`` set (``serve(workers=N)`` sets it for
  its workers when the user has not, see :func:`prepare_workers`), a scrape
  lands on one worker and must show them all: each process folds its
  tallies into ``prometheus_client``'s multiprocess metrics (files in that
  directory) every :data:`FOLD_INTERVAL` seconds, at exit, and just before
  it answers a scrape itself; the scrape reads every worker's files.  The
  other workers' numbers are up to one interval old.

**Tallies.**  One per path and event loop: only that loop's thread writes
it, so plain ``+=`` is exact; a scrape or a fold reads them from any thread
(ints are read whole, dicts are copied in one C call; the message totals
and the set of open connections change together, under the tally's lock).  Tallies are never
dropped: counters do not go down.  The backplane's numbers (publish latency,
errors) are :class:`BackplaneTally`\\s, one per backplane class and loop.
"""

from __future__ import annotations

import atexit
import bisect
import os
import threading
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

__all__ = [
    "BackplaneTally", "Collector", "Counted", "FOLD_INTERVAL", "Tally", "UNMATCHED", "backplane_tally", "disable", "enable",
    "enabled", "exposition", "fold", "multiprocess_dir", "prepare_workers", "tally", "worker_gone",
]

#: Seconds between two folds of a process's tallies in multiprocess mode (``WS_METRICS_INTERVAL``).
FOLD_INTERVAL = 1.0

#: The ``path`` label of an upgrade request no WebSocket path took (the HTTP server's 404).
UNMATCHED = "(unmatched)"

#: Upper bounds (seconds) of the publish latency histogram's buckets; ``+Inf`` follows.
PUBLISH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_MP_VAR = "PROMETHEUS_MULTIPROC_DIR"

#: Whether metrics are on in this process.  Read (as ``metrics.on``) where a server decides how to
#: make a socket, by the backplane link per publish and by the HTTP server per refused upgrade.
on = False

# name (without _total) -> (type, help, label names).  The order is the exposition's.
SPECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ws_connections_open": ("gauge", "Open WebSocket connections", ("path",)),
    "ws_handshakes": ("counter", "WebSocket handshakes by outcome (accepted, refused) and HTTP status", ("path", "outcome", "status")),
    "ws_messages_received": ("counter", "Messages received (a fragmented message counts once)", ("path",)),
    "ws_messages_sent": ("counter", "Messages sent, broadcasts included (one per client reached)", ("path",)),
    "ws_received_bytes": ("counter", "Payload bytes of the messages received (UTF-8 for text)", ("path",)),
    "ws_sent_bytes": ("counter", "Payload bytes of the messages sent", ("path",)),
    "ws_connections_closed": ("counter", "Connections closed, by close code (1006: no closing handshake)", ("path", "code")),
    "ws_send_buffer_drops": ("counter", "Connections dropped because their peer did not read (the limit passed)", ("path", "limit")),
    "ws_rate_limited": ("counter", "Connections closed for exceeding their rate limit", ("path",)),
    "ws_origin_refusals": ("counter", "Handshakes refused because of their Origin", ("path",)),
    "ws_keepalive_timeouts": ("counter", "Connections closed because a keepalive ping got no pong in time", ("path",)),
    "ws_backplane_publish_seconds": ("histogram", "Time from a publish to the backplane's acknowledgement", ("backplane",)),
    "ws_backplane_errors": ("counter", "Failed backplane operations (publish, or a subscription/presence change)", ("backplane", "operation")),
}

Labels = tuple[str, ...]
Values = dict[str, dict[Labels, float]]
Histograms = dict[Labels, tuple[list[int], float]]


class Counted(Protocol):
    """A connection that keeps its own message counts (``MeteredWebSocket``), summed in when scraped or folded."""

    _messages_in: int
    _bytes_in: int
    _messages_out: int
    _bytes_out: int


class Tally:
    """One path's numbers on one event loop: plain ints, written only by that loop's thread.

    The open connections count their own messages (cheaper per message than
    counting here): ``live`` holds them, and a connection's counts join the
    totals when it closes (:meth:`left`), under ``lock``, so that a scrape
    on another thread never counts them twice.
    """

    __slots__ = (
        "path", "live", "lock", "messages_in", "messages_out", "bytes_in", "bytes_out", "handshakes", "closes", "drops",
        "rate_limited", "origin_refusals", "keepalive_timeouts",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.live: set[Counted] = set()
        self.lock = threading.Lock()
        self.messages_in = 0  # (these four: of the connections closed, and the broadcasts)
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.handshakes: dict[int, int] = {}  # HTTP status (101: accepted) -> count
        self.closes: dict[int, int] = {}  # close code -> count
        self.drops: dict[str, int] = {}  # the limit passed (an option name) -> count
        self.rate_limited = 0
        self.origin_refusals = 0
        self.keepalive_timeouts = 0

    def handshake(self, status: int) -> None:
        self.handshakes[status] = self.handshakes.get(status, 0) + 1

    def joined(self, connection: Counted) -> None:
        """``connection`` is open and counts for this path."""
        with self.lock:
            self.live.add(connection)

    def left(self, connection: Counted, code: int) -> None:
        """``connection`` closed with ``code``: its counts join the totals."""
        with self.lock:
            self.live.discard(connection)
            self.messages_in += connection._messages_in
            self.bytes_in += connection._bytes_in
            self.messages_out += connection._messages_out
            self.bytes_out += connection._bytes_out
        self.closes[code] = self.closes.get(code, 0) + 1

    def dropped(self, limit: str) -> None:
        self.drops[limit] = self.drops.get(limit, 0) + 1

    def sent(self, messages: int, size: int) -> None:
        """``messages`` messages of ``size`` payload bytes each (a broadcast: one per client reached)."""
        with self.lock:
            self.messages_out += messages
            self.bytes_out += messages * size

    def add_to(self, values: Values) -> None:
        key = (self.path,)
        # Only the copies under the lock (the loop takes it per broadcast, accept and close): summing
        # 100k open connections here would hold it for ~10 ms.  Exact all the same: a connection that
        # closes meanwhile is in ``live`` and not yet in the totals copied, and its counts stop
        # changing when it closes (a closed socket counts nothing), so it counts once, and no more
        # than the totals will hold for it at the next reading.
        with self.lock:
            live = list(self.live)
            messages_in, bytes_in = self.messages_in, self.bytes_in
            messages_out, bytes_out = self.messages_out, self.bytes_out
        for connection in live:
            messages_in += connection._messages_in
            bytes_in += connection._bytes_in
            messages_out += connection._messages_out
            bytes_out += connection._bytes_out
        _add(values["ws_connections_open"], key, len(live))
        _add(values["ws_messages_received"], key, messages_in)
        _add(values["ws_messages_sent"], key, messages_out)
        _add(values["ws_received_bytes"], key, bytes_in)
        _add(values["ws_sent_bytes"], key, bytes_out)
        _add(values["ws_rate_limited"], key, self.rate_limited)
        _add(values["ws_origin_refusals"], key, self.origin_refusals)
        _add(values["ws_keepalive_timeouts"], key, self.keepalive_timeouts)
        for status, count in self.handshakes.copy().items():
            outcome = "accepted" if status == 101 else "refused"
            _add(values["ws_handshakes"], (self.path, outcome, str(status)), count)
        for code, count in self.closes.copy().items():
            _add(values["ws_connections_closed"], (self.path, str(code)), count)
        for limit, count in self.drops.copy().items():
            _add(values["ws_send_buffer_drops"], (self.path, limit), count)


class BackplaneTally:
    """One backplane class's numbers on one event loop: the publish latency histogram, the errors."""

    __slots__ = ("kind", "buckets", "total", "errors")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.buckets = [0] * (len(PUBLISH_BUCKETS) + 1)  # not cumulative; the last is +Inf
        self.total = 0.0
        self.errors: dict[str, int] = {}  # operation -> count

    def published(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(PUBLISH_BUCKETS, seconds)] += 1
        self.total += seconds

    def failed(self, operation: str) -> None:
        self.errors[operation] = self.errors.get(operation, 0) + 1

    def add_to(self, values: Values, histograms: Histograms) -> None:
        key = (self.kind,)
        buckets, total = histograms.get(key, ([0] * len(self.buckets), 0.0))
        histograms[key] = ([a + b for a, b in zip(buckets, self.buckets)], total + self.total)
        for operation, count in self.errors.copy().items():
            _add(values["ws_backplane_errors"], (self.kind, operation), count)


def _add(into: dict[Labels, float], key: Labels, value: float) -> None:
    into[key] = into.get(key, 0) + value


# -- the tallies of this process ----------------------------------------------------------

_lock = threading.Lock()
_tallies: dict[tuple[str, int], Tally] = {}
_backplanes: dict[tuple[str, int], BackplaneTally] = {}


_T = TypeVar("_T")


def _per_loop(table: dict[tuple[str, int], _T], name: str, loop: object, make: Callable[[str], _T]) -> _T | None:
    """``table``'s entry for ``name`` on ``loop``, made on first use; ``None`` while metrics are off.

    Keyed by the loop's id: a loop that is gone may leave its id to a new
    one, which then shares the old entry, which nobody else writes any more.
    """
    if not on:
        return None
    key = (name, id(loop))
    found = table.get(key)
    if found is None:
        with _lock:
            found = table.setdefault(key, make(name))
    return found


def tally(loop: object, path: str) -> Tally | None:
    """``path``'s tally on ``loop``; ``None`` while metrics are off."""
    return _per_loop(_tallies, path, loop, Tally)


def backplane_tally(backplane: object, loop: object) -> BackplaneTally | None:
    """The tally of ``backplane``'s class on ``loop``; ``None`` while metrics are off."""
    return _per_loop(_backplanes, type(backplane).__name__, loop, BackplaneTally)


def _sums() -> tuple[Values, Histograms]:
    """Every metric of this process, summed over the loops: ``{name: {labels: value}}`` and the histograms."""
    values: Values = {name: {} for name, spec in SPECS.items() if spec[0] != "histogram"}
    histograms: Histograms = {}
    with _lock:
        tallies = list(_tallies.values())
        backplanes = list(_backplanes.values())
    for path_tally in tallies:
        path_tally.add_to(values)
    for backplane in backplanes:
        backplane.add_to(values, histograms)
    return values, histograms


def reset() -> None:
    """Forget every number (tests: a fresh start); what was folded already stays in the files."""
    with _lock:
        _tallies.clear()
        _backplanes.clear()
    if _folder is not None:
        _folder.forget()


# -- one process: a collector that reads the tallies at scrape time -------------------------------


def _cumulative(buckets: list[int]) -> Iterator[tuple[str, float]]:
    """Prometheus' buckets (``le`` as prometheus_client spells it, counts cumulative) from ours."""
    from prometheus_client.utils import floatToGoString

    count = 0
    for bound, n in zip((*PUBLISH_BUCKETS, float("inf")), buckets):
        count += n
        yield floatToGoString(bound), count  # type: ignore[no-untyped-call]


class Collector:
    """The ``prometheus_client`` collector of every ``ws`` metric of this process, read when scraped."""

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        values, histograms = _sums()
        for name, (kind, text, labels) in SPECS.items():
            if kind == "histogram":
                histogram = HistogramMetricFamily(name, text, labels=labels)
                for key, (buckets, total) in sorted(histograms.items()):
                    histogram.add_metric(list(key), list(_cumulative(buckets)), total)
                yield histogram
                continue
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, text, labels=labels)
            for key, value in sorted(values[name].items()):
                family.add_metric(list(key), value)
            yield family


# -- several processes: fold into prometheus_client's multiprocess metrics -----------------------


class _Folder:
    """This process's share of the multiprocess metrics: what was folded so far, and the metric objects."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self._lock = threading.Lock()
        self._metrics: dict[str, Any] = {}
        for name, (kind, text, labels) in SPECS.items():
            if kind == "gauge":  # a live gauge: a dead worker's connections are not counted
                self._metrics[name] = Gauge(name, text, labels, registry=None, multiprocess_mode="livesum")
            elif kind == "counter":
                self._metrics[name] = Counter(name, text, labels, registry=None)
            else:
                self._metrics[name] = Histogram(name, text, labels, registry=None, buckets=PUBLISH_BUCKETS)
        self._folded: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[Labels, tuple[list[int], float]] = {}

    def forget(self) -> None:
        with self._lock:
            self._folded.clear()
            self._histograms.clear()

    def fold(self) -> None:
        """Add what the tallies gained since the last fold to the metrics (the gauge: set it).

        Folds run on the loop (a scrape), on the ``ws-metrics`` thread and at
        exit: the sums are read under the same lock as they are applied, so
        that a fold never applies sums older than the last one did (it would
        set the gauge back, and rewind the histogram, whose increments the
        next fold would then add again).
        """
        with self._lock:
            values, histograms = _sums()
            for name, samples in values.items():
                metric = self._metrics[name]
                gauge = SPECS[name][0] == "gauge"
                for key, value in samples.items():
                    if gauge:
                        metric.labels(*key).set(value)
                        continue
                    delta = value - self._folded.get((name, key), 0)
                    if delta > 0:
                        metric.labels(*key).inc(delta)
                        self._folded[(name, key)] = value
            histogram = self._metrics["ws_backplane_publish_seconds"]
            for key, (buckets, total) in histograms.items():
                before, before_total = self._histograms.get(key, ([0] * len(buckets), 0.0))
                if buckets == before:
                    continue
                # prometheus_client has no public way to add n observations at once: its histogram
                # keeps one value per bucket (not cumulative) and the sum; add to those (tested
                # against the oldest and newest prometheus_client setup.cfg allows).
                child = histogram.labels(*key)
                for value, new, old in zip(child._buckets, buckets, before):
                    if new > old:
                        value.inc(new - old)
                if total > before_total:
                    child._sum.inc(total - before_total)
                # Never below what was folded: a bucket, once added, is not added again.
                self._histograms[key] = ([max(new, old) for new, old in zip(buckets, before)], max(total, before_total))


_folder: _Folder | None = None
_fold_stop: threading.Event | None = None


def multiprocess_dir() -> str | None:
    """The directory of the multiprocess metrics (``PROMETHEUS_MULTIPROC_DIR``), ``None`` in one-process mode."""
    return os.environ.get(_MP_VAR) or None


def fold() -> None:
    """Fold this process's tallies into the multiprocess metrics now (nothing in one-process mode)."""
    if _folder is not None:
        _folder.fold()


def _folding(stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            fold()
        except Exception:  # pragma: no cover - a bug of ours: metrics must not stop the process
            from .log import ROOT

            ROOT.exception("folding the metrics failed")


def _interval() -> float:
    try:
        value = float(os.environ.get("WS_METRICS_INTERVAL", "") or FOLD_INTERVAL)
    except ValueError:
        return FOLD_INTERVAL
    return value if value > 0 else FOLD_INTERVAL


# -- turning metrics on and off -----------------------------------------------------------------

_collector: Collector | None = None
_registries: list[Any] = []


def enabled() -> bool:
    """Whether metrics are on in this process."""
    return on


def enable(registry: Any = None) -> None:
    """Turn metrics on in this process; ``registry`` is where they show (``prometheus_client.REGISTRY``).

    In one process, ws's collector is registered in ``registry`` (once per
    registry: calling again with another one adds it there too).  In
    multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) nothing is registered:
    the numbers are folded into that directory, where a
    ``MultiProcessCollector`` reads them.  Connections accepted before
    this call are not counted.
    """
    global on, _collector, _folder, _fold_stop
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError("ws metrics need prometheus_client: pip install 'ws-js[metrics]'") from exc
    new_registry = None
    with _lock:
        if multiprocess_dir() is not None:
            if _folder is None:  # kept for the process's life: it knows what the files have already
                _folder = _Folder()
            if _fold_stop is None:
                _fold_stop = threading.Event()
                threading.Thread(target=_folding, args=(_fold_stop, _interval()), name="ws-metrics", daemon=True).start()
                atexit.register(fold)
        else:
            if registry is None:
                registry = prometheus_client.REGISTRY
            if _collector is None:
                _collector = Collector()
            if not any(known is registry for known in _registries):
                new_registry = registry
                _registries.append(registry)
        on = True
    if new_registry is not None:  # (outside the lock: a registry may collect at once, which takes it)
        new_registry.register(_collector)


def disable() -> None:
    """Turn metrics off: new connections are plain again, the collector leaves its registries.

    The tallies stay (a later ``enable()`` goes on counting from them); in
    multiprocess mode what was counted so far is folded first.
    """
    global on, _fold_stop
    with _lock:
        on = False
        for registry in _registries:
            try:
                registry.unregister(_collector)
            except KeyError:  # the user unregistered it already
                pass
        _registries.clear()
        stop, _fold_stop = _fold_stop, None
    if stop is not None:
        stop.set()
        atexit.unregister(fold)
        fold()


def exposition(accept: str | None = None, registry: Any = None) -> tuple[bytes, str]:
    """``(body, content_type)``: ``registry`` in the format ``accept`` asks for (text, or OpenMetrics).

    No ``registry``: ``prometheus_client.REGISTRY`` in one process; in
    multiprocess mode every process's metrics from the directory (this
    process's folded first, so they are current).
    """
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    if registry is None:
        path = multiprocess_dir()
        if path is not None:
            from prometheus_client.multiprocess import MultiProcessCollector

            fold()
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# -- serve(workers=N): the parent's side -----------------------------------------------------


def prepare_workers(env: dict[str, str]) -> Callable[[], None]:
    """Before starting workers: give them a multiprocess directory if metrics are on and none is set.

    Changes ``env`` (the workers' environment); returns what to call once
    every worker has stopped (removes the directory this made).
    """
    if not on or env.get(_MP_VAR):
        return lambda: None
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="ws-metrics-")
    env[_MP_VAR] = path
    return lambda: shutil.rmtree(path, ignore_errors=True)


def worker_gone(pid: int, env: dict[str, str]) -> None:
    """A worker process ended: its live gauges (open connections) stop counting; its counters stay."""
    path = env.get(_MP_VAR)
    if not on or not path:
        return
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
