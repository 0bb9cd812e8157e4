"""ws.metrics: Prometheus metrics scraped over real HTTP after known sequences, parsed by prometheus_client.

Every test scrapes ``ws.http.Server.metrics('/metrics')`` (or renders the
registry an application would expose) and asserts exact values.  The
multiprocess mode (``serve(workers=2)``) is tested in tests/test_workers.py.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from typing import Any, Iterator

import pytest

prometheus_client = pytest.importorskip("prometheus_client", reason="pip install 'ws-js[metrics]'")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import ws.metrics  # noqa: E402
from ws import WebSocket, WebSocketServer, http  # noqa: E402
from ws._runtime import metrics as _metrics  # noqa: E402
from ws.backplane import MemoryBackplane  # noqa: E402
from ws.connection.metered import MeteredWebSocket  # noqa: E402

from .backplane.conftest import RedisServer, redis_server  # noqa: E402,F401
from .conftest import connect, run, serving, until  # noqa: E402
from .test_limits import RawPeer  # noqa: E402

EVIL = "http://evil.example"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """Metrics on, shown in a registry of the test's own, from zero; off again afterwards."""
    assert ws.metrics.multiprocess_dir() is None, "these tests run in one-process mode"
    _metrics.reset()
    registry = CollectorRegistry()
    ws.metrics.enable(registry)
    try:
        yield registry
    finally:
        ws.metrics.disable()
        _metrics.reset()


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(port: int, accept: str | None = None) -> tuple[str, str]:
    """GET /metrics over HTTP (in a thread: urllib blocks); ``(content_type, body)``."""

    def get() -> tuple[str, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Content-Type"], response.read().decode()

    return await asyncio.to_thread(get)


async def samples_of(port: int) -> Samples:
    return parse((await scrape(port))[1])


def test_a_known_sequence_scraped_over_http(registry: CollectorRegistry) -> None:
    """3 clients, messages of known sizes, a broadcast, closes 1000/1001/1008, a 403 (Origin), a 404, a keepalive timeout."""

    async def main() -> None:
        origins = ["http://good.example", None]  # None: clients that send no Origin
        async with serving(
            "/chat", echo=True, allowed_origins=origins, ping_interval=0.3, ping_timeout=0.3, rate_limit=(5, 60)
        ) as served:
            served.server.metrics("/metrics", registry=registry)
            clients = [await connect(served.port, "/chat") for _ in range(3)]
            for _, rec in clients:
                await rec.wait("open")
            (a, ra), (b, rb), (c, rc) = clients
            for _ in range(5):
                a.send("hello")  # 5 bytes
            for _ in range(3):
                b.send(b"\x00" * 100)
            for _ in range(2):
                c.send("h\u00e9llo")  # 5 characters, 6 bytes of UTF-8
            await ra.wait("message", 5)
            await rb.wait("message", 3)
            await rc.wait("message", 2)
            assert served.wss is not None
            assert served.wss.broadcast("news") == 3
            for _, rec, count in ((a, ra, 6), (b, rb, 4), (c, rc, 3)):
                await rec.wait("message", count)

            samples = await samples_of(served.port)
            assert value(samples, "ws_connections_open", path="/chat") == 3
            assert all(isinstance(sock, MeteredWebSocket) for sock, _ in served.accepted)

            evil, revil = await connect(served.port, "/chat", origin=EVIL)
            lost, rlost = await connect(served.port, "/nowhere")
            await revil.wait("close")
            await rlost.wait("close")

            a.close(1000)
            served.accepted[1][0].close(1001)
            for _ in range(4):  # c's bucket holds 5: three more pass (echoed), the fourth closes it with 1008
                c.send("h\u00e9llo")
            await rc.wait("close", timeout=5)
            for _, rec in served.accepted:
                await rec.wait("close")

            silent = await RawPeer.open(served.port, "/chat")  # answers no ping
            _, dead = await served.socket(3)
            await dead.wait("close", timeout=5)
            silent.abort()

            samples = await samples_of(served.port)
            handshakes = {
                (labels, v) for (name, labels), v in samples.items() if name == "ws_handshakes_total"
            }
            assert handshakes == {
                ((("outcome", "accepted"), ("path", "/chat"), ("status", "101")), 4.0),
                ((("outcome", "refused"), ("path", "/chat"), ("status", "403")), 1.0),
                ((("outcome", "refused"), ("path", "(unmatched)"), ("status", "404")), 1.0),
            }
            assert value(samples, "ws_origin_refusals_total", path="/chat") == 1
            assert value(samples, "ws_messages_received_total", path="/chat") == 13
            assert value(samples, "ws_received_bytes_total", path="/chat") == 5 * 5 + 3 * 100 + 5 * 6
            assert value(samples, "ws_messages_sent_total", path="/chat") == 13 + 3
            assert value(samples, "ws_sent_bytes_total", path="/chat") == 5 * 5 + 3 * 100 + 5 * 6 + 3 * 4
            closes = {dict(labels)["code"]: v for (name, labels), v in samples.items() if name == "ws_connections_closed_total"}
            assert closes == {"1000": 1, "1001": 1, "1008": 1, "1011": 1}
            assert value(samples, "ws_keepalive_timeouts_total", path="/chat") == 1
            assert value(samples, "ws_rate_limited_total", path="/chat") == 1
            assert value(samples, "ws_connections_open", path="/chat") == 0

    run(main, timeout=30)


@pytest.mark.parametrize("limit", ["max_buffered_amount", "max_total_buffered_amount"])
def test_a_peer_that_does_not_read_is_counted_as_a_send_buffer_drop(registry: CollectorRegistry, limit: str) -> None:
    async def main() -> None:
        limits = {"max_buffered_amount": 64 << 20, "max_total_buffered_amount": 64 << 20, limit: 256 << 10}
        async with serving("/big", high_water_mark=16 << 10, low_water_mark=4 << 10, **limits) as served:
            served.server.metrics("/metrics", registry=registry)
            peer = await RawPeer.open(served.port, "/big")  # reads nothing from now on
            sock, rec = await served.socket(0)
            chunk = b"x" * (1 << 20)
            for _ in range(256):
                if sock.ready_state is not WebSocket.OPEN:
                    break
                sock.send(chunk)
                await asyncio.sleep(0)
            await rec.wait("close", timeout=10)
            samples = await samples_of(served.port)
            assert value(samples, "ws_send_buffer_drops_total", path="/big", limit=limit) == 1
            assert value(samples, "ws_connections_closed_total", path="/big", code="1008") == 1
            peer.abort()

    run(main, timeout=30)


def test_the_applications_own_registry_and_openmetrics(registry: CollectorRegistry) -> None:
    """``enable(registry)`` without the route: the registry an application exposes itself shows ws's metrics."""

    async def main() -> None:
        async with serving("/app", echo=True) as served:
            client, rec = await connect(served.port, "/app")
            await rec.wait("open")
            client.send("ping")
            await rec.wait("message")
            samples = parse(generate_latest(registry).decode())
            assert value(samples, "ws_messages_received_total", path="/app") == 1
            assert value(samples, "ws_connections_open", path="/app") == 1

            served.server.metrics("/metrics", registry=registry)
            content_type, body = await scrape(served.port, accept="application/openmetrics-text; version=1.0.0")
            assert content_type.startswith("application/openmetrics-text")
            assert body.rstrip().endswith("# EOF")
            assert 'ws_messages_sent_total{path="/app"} 1.0' in body
            client.close()
            await rec.wait("close")

    run(main)


def test_metrics_off_leave_sockets_plain() -> None:
    """The default: plain WebSockets (nothing counted on the message path); the rate-limit hook does nothing."""
    assert not ws.metrics.enabled()

    async def main() -> None:
        async with serving("/plain", echo=True) as served:
            client, rec = await connect(served.port, "/plain")
            await rec.wait("open")
            sock, _ = await served.socket(0)
            assert type(sock) is WebSocket
            sock._note_rate_limited()
            client.send("x")
            await rec.wait("message")
            assert served.wss is not None
            served.wss.broadcast("y")
            await rec.wait("message", 2)
            assert not [key for key in _metrics._tallies if key[0] == "/plain"]  # nothing counted, nowhere
            client.close()
            await rec.wait("close")

    run(main)


async def _publish_and_scrape(served: Any, kind: str, count: int) -> Samples:
    assert served.wss is not None
    for n in range(count):
        served.wss.broadcast(f"message {n}")

    async def published() -> Samples | None:
        samples = await samples_of(served.port)
        done = value(samples, "ws_backplane_publish_seconds_count", backplane=kind) == count
        return samples if done else None

    samples = None
    for _ in range(100):
        samples = await published()
        if samples is not None:
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} publishes not seen: {samples}")


def test_backplane_publish_latency_with_a_memory_backplane(registry: CollectorRegistry) -> None:
    async def main() -> None:
        async with serving("/room", http_options={"backplane": MemoryBackplane()}) as served:
            served.server.metrics("/metrics", registry=registry)
            samples = await _publish_and_scrape(served, "MemoryBackplane", 5)
            assert value(samples, "ws_backplane_publish_seconds_bucket", backplane="MemoryBackplane", le="+Inf") == 5
            total = value(samples, "ws_backplane_publish_seconds_sum", backplane="MemoryBackplane")
            assert total is not None and 0 < total < 5

    run(main)


def test_backplane_publish_latency_and_errors_with_redis(registry: CollectorRegistry, redis_server: RedisServer) -> None:  # noqa: F811
    async def main() -> None:
        async with serving("/room", http_options={"backplane": redis_server.url}) as served:
            served.server.metrics("/metrics", registry=registry)
            errors: list[BaseException] = []
            assert served.wss is not None
            served.wss.on("error", errors.append)
            samples = await _publish_and_scrape(served, "RedisBackplane", 3)
            assert value(samples, "ws_backplane_publish_seconds_bucket", backplane="RedisBackplane", le="+Inf") == 3
            assert value(samples, "ws_backplane_errors_total", backplane="RedisBackplane", operation="publish") is None

            redis_server.stop()
            served.wss.broadcast("into the void")
            await until(lambda: errors, timeout=15, what="the failed publish was not reported")
            samples = await samples_of(served.port)
            assert value(samples, "ws_backplane_errors_total", backplane="RedisBackplane", operation="publish") == 1
            assert value(samples, "ws_backplane_publish_seconds_count", backplane="RedisBackplane") == 3

    run(main, timeout=40)


def test_multiprocess_fold_adds_deltas_once(tmp_path: Any) -> None:
    """The multiprocess mode in one process: folds add what changed, the gauge is live, the histogram is whole."""
    import subprocess
    import sys
    import textwrap

    from .conftest import ROOT

    script = textwrap.dedent(
        """
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        from ws._runtime import metrics
        import ws.metrics

        class Connection:  # what a MeteredWebSocket counts
            _messages_in = _bytes_in = _messages_out = _bytes_out = 0

        ws.metrics.enable()
        tally = metrics.tally(object(), "/p")
        one, two = Connection(), Connection()
        tally.joined(one)
        tally.joined(two)
        one._messages_in = 3
        tally.handshake(101)
        ws.metrics.fold()
        two._messages_in = 4
        tally.handshake(101)
        plane = metrics.backplane_tally(object(), None)
        plane.published(0.0002)
        plane.published(0.3)
        ws.metrics.fold()
        ws.metrics.fold()
        body, _ = ws.metrics.exposition()
        print(body.decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    samples = parse(done.stdout)
    assert value(samples, "ws_messages_received_total", path="/p") == 7
    assert value(samples, "ws_handshakes_total", path="/p", outcome="accepted", status="101") == 2
    assert value(samples, "ws_connections_open", path="/p") == 2
    assert value(samples, "ws_backplane_publish_seconds_count", backplane="object") == 2
    assert value(samples, "ws_backplane_publish_seconds_bucket", backplane="object", le="0.00025") == 1
    assert value(samples, "ws_backplane_publish_seconds_bucket", backplane="object", le="0.25") == 1
    assert value(samples, "ws_backplane_publish_seconds_bucket", backplane="object", le="0.5") == 2


def test_two_folds_at_once_never_apply_older_sums(tmp_path: Any) -> None:
    """A fold that read its sums first but applies them second (the scrape's on the loop, the ``ws-metrics``
    thread's) must not set the gauge back nor rewind the histogram (whose buckets the next fold then added again).

    Fold A is held just after reading its sums; fold B starts and is let go until it is finished or
    waits for A (the folder's lock, watched); then A goes on.  No timing is involved.
    """
    import subprocess
    import sys
    import textwrap

    from .conftest import ROOT

    script = textwrap.dedent(
        """
        import threading
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector
        from ws._runtime import metrics
        import ws.metrics

        class Connection:  # what a MeteredWebSocket counts
            _messages_in = _bytes_in = _messages_out = _bytes_out = 0

        class Watched:  # the folder's lock, telling when a fold has to wait for it
            def __init__(self, lock, contended):
                self.lock, self.contended = lock, contended
            def __enter__(self):
                if not self.lock.acquire(blocking=False):
                    self.contended.set()
                    self.lock.acquire()
            def __exit__(self, *exc):
                self.lock.release()

        ws.metrics.enable()
        folder = metrics._folder
        b_stuck_or_done = threading.Event()
        folder._lock = Watched(folder._lock, b_stuck_or_done)
        real_sums, a_read, a_go = metrics._sums, threading.Event(), threading.Event()

        def sums():
            result = real_sums()
            if threading.current_thread().name == "A":
                a_read.set()
                assert a_go.wait(10), "fold A was never let go"
            return result

        metrics._sums = sums
        plane = metrics.backplane_tally(object(), None)
        tally = metrics.tally(object(), "/p")

        def files():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return {s.name: s.value for family in registry.collect() for s in family.samples}

        tally.joined(Connection())
        for _ in range(5):
            plane.published(0.001)
        a = threading.Thread(target=ws.metrics.fold, name="A")
        a.start()
        assert a_read.wait(10)  # A has the sums of 5 publishes and 1 connection
        tally.joined(Connection())
        for _ in range(5):
            plane.published(0.001)

        def fold_b():
            ws.metrics.fold()
            b_stuck_or_done.set()

        b = threading.Thread(target=fold_b, name="B")
        b.start()
        assert b_stuck_or_done.wait(10)
        a_go.set()
        a.join(10)
        b.join(10)
        assert not a.is_alive() and not b.is_alive()
        seen = files()
        print("after", seen["ws_connections_open"], seen["ws_backplane_publish_seconds_count"], seen["ws_backplane_publish_seconds_sum"])
        ws.metrics.fold()
        seen = files()
        print("next", seen["ws_connections_open"], seen["ws_backplane_publish_seconds_count"], seen["ws_backplane_publish_seconds_sum"])
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "WS_METRICS_INTERVAL": "3600"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in done.stdout.splitlines()}
    for when in ("after", "next"):
        opened, count, total = lines[when]
        assert (opened, count) == (2, 10), (when, done.stdout)
        assert total == pytest.approx(0.01), (when, done.stdout)


def test_a_connection_closing_while_its_tally_is_read_counts_once() -> None:
    """The sums read the open connections' counts outside the tally's lock (the loop takes it per broadcast,
    accept and close); a connection that closes meanwhile counts once: as open in this reading, closed in the next."""
    import threading

    tally = _metrics.Tally("/p")
    closed_meanwhile: list[bool] = []

    class Connection:  # what a MeteredWebSocket counts
        _bytes_in = _messages_out = _bytes_out = 0

        def __init__(self, messages: int, close_when_read: bool = False) -> None:
            self.messages, self.close_when_read = messages, close_when_read

        @property
        def _messages_in(self) -> int:
            if self.close_when_read:  # the loop closes it while the sums are read (on another thread)
                self.close_when_read = False
                closing = threading.Thread(target=tally.left, args=(self, 1000))
                closing.start()
                closing.join(5)
                closed_meanwhile.append(not closing.is_alive())
            return self.messages

    gone = Connection(3)
    tally.joined(gone)
    tally.left(gone, 1000)
    tally.joined(Connection(4, close_when_read=True))
    tally.joined(Connection(5))

    def read() -> tuple[float, float]:
        values: _metrics.Values = {name: {} for name, spec in _metrics.SPECS.items() if spec[0] != "histogram"}
        tally.add_to(values)
        return values["ws_messages_received"][("/p",)], values["ws_connections_open"][("/p",)]

    assert read() == (3 + 4 + 5, 2)
    assert closed_meanwhile == [True], "the close waited for the sums: the tally's lock was held while reading them"
    assert read() == (3 + 4 + 5, 1)
    assert tally.closes == {1000: 2}


def test_broadcasts_follow_enable_and_disable() -> None:
    """Broadcasts count from ``enable()`` on (no handshake needed first), and not after ``disable()``."""
    _metrics.reset()
    registry = CollectorRegistry()

    async def main() -> None:
        async with serving("/news") as served:
            assert served.wss is not None
            plain, rplain = await connect(served.port, "/news")  # accepted while metrics are off
            await rplain.wait("open")
            await served.socket(0)
            ws.metrics.enable(registry)
            assert served.wss.broadcast("one") == 1
            await rplain.wait("message")
            samples = parse(generate_latest(registry).decode())
            assert value(samples, "ws_messages_sent_total", path="/news") == 1
            assert value(samples, "ws_sent_bytes_total", path="/news") == 3

            metered, rmetered = await connect(served.port, "/news")
            await rmetered.wait("open")
            await served.socket(1)
            assert served.wss.broadcast("two") == 2
            await rmetered.wait("message")
            ws.metrics.disable()
            assert served.wss.broadcast("three") == 2
            await rmetered.wait("message", 2)
            ws.metrics.enable(registry)
            samples = parse(generate_latest(registry).decode())
            assert value(samples, "ws_messages_sent_total", path="/news") == 3
            assert value(samples, "ws_sent_bytes_total", path="/news") == 9
            for sock, rec in ((plain, rplain), (metered, rmetered)):
                sock.close()
                await rec.wait("close")

    try:
        run(main)
    finally:
        ws.metrics.disable()
        _metrics.reset()


def test_a_metered_socket_is_a_websocket_in_reports_and_reprs(registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    """``MeteredWebSocket`` is internal: an unhandled ``'error'``, a listener that raises, the repr say ``WebSocket``."""
    import logging

    from ws._runtime.log import reports

    from .test_limits import TEXT, frame

    caplog.set_level(logging.ERROR, logger="ws")
    reports.reset()  # (the same causes reported by earlier tests would only be counted)

    async def main() -> None:
        async with serving("/m") as served:
            peer = await RawPeer.open(served.port, "/m")
            sock, rec = await served.socket(0)
            assert type(sock) is MeteredWebSocket
            assert repr(sock).startswith("<WebSocket server ")
            sock.remove_all_listeners("error")  # (the test's recorder)

            def fails(event: Any) -> None:
                raise RuntimeError("a bug in a listener")

            sock.on("message", fails)
            peer.send(frame(TEXT, b"hi"))
            await until(lambda: any("listener of" in r.getMessage() for r in caplog.records), what="the listener's failure")
            peer.send(frame(TEXT, b"unmasked", mask=False))
            assert await peer.read_close() == 1002
            await rec.wait("close")
            peer.abort()

    try:
        run(main)
    finally:
        reports.reset()
    messages = [record.getMessage() for record in caplog.records]
    assert "listener of WebSocket raised" in messages, messages
    assert any(m.startswith("unhandled 'error' event on WebSocket: ") for m in messages), messages
    assert not [m for m in messages if "Metered" in m], messages


def test_enable_with_prometheus_clients_default_registry() -> None:
    """``enable()`` alone: ws's metrics join ``prometheus_client.REGISTRY`` (which collects when registering)."""
    _metrics.reset()
    ws.metrics.enable()
    try:
        ws.metrics.enable()  # once per registry
        names = {family.name for family in prometheus_client.REGISTRY.collect()}
        assert {"ws_connections_open", "ws_handshakes", "ws_backplane_publish_seconds"} <= names
        body, content_type = ws.metrics.exposition()
        assert content_type.startswith("text/plain") and b"# TYPE ws_messages_received_total counter" in body
    finally:
        ws.metrics.disable()
    assert "ws_handshakes" not in {family.name for family in prometheus_client.REGISTRY.collect()}


def test_the_deploying_pages_example_with_two_workers(tmp_path: Any) -> None:
    """docs/deploying.md's program as pasted: one scrape shows the connections and messages of both workers."""
    import signal

    from .fixtures.doc_blocks import Script, block, with_port
    from .fixtures.processes import free_port

    port = free_port()
    with Script(with_port(block("metrics-workers").code, 8080, port), tmp_path) as script:
        script.expect("listening on")
        script.expect("listening on")  # each worker says so

        async def main() -> None:
            clients = [await connect(port, "/ws") for _ in range(6)]
            for sock, rec in clients:
                await rec.wait("open", timeout=10)
                sock.send("hi")
                await rec.wait("message", timeout=10)
            for name, expected in (("ws_connections_open", 6), ("ws_messages_received_total", 6), ("ws_sent_bytes_total", 12)):
                await until_scraped(port, name, expected, path="/ws")
            for sock, rec in clients:
                sock.close()
                await rec.wait("close")
            await until_scraped(port, "ws_connections_closed_total", 6, path="/ws", code="1000")

        run(main, timeout=60)
        assert script.stop(signal.SIGTERM) == 0, script.report()


async def until_scraped(port: int, name: str, expected: float, timeout: float = 10.0, **labels: str) -> None:
    """Scrape until ``name{labels}`` is ``expected`` (workers fold their numbers every second)."""
    seen: float | None = None
    for _ in range(int(timeout / 0.2)):
        seen = value(await samples_of(port), name, **labels)
        if seen == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}{labels} is {seen}, not {expected}")


def test_connection_limits_refusals_are_counted_by_status(registry: CollectorRegistry) -> None:
    async def main() -> None:
        async with serving("/limited", echo=True, max_connections_per_ip=1) as served:
            served.server.metrics("/metrics", registry=registry)
            first, rfirst = await connect(served.port, "/limited")
            await rfirst.wait("open")
            second, rsecond = await connect(served.port, "/limited")
            await rsecond.wait("close")
            samples = await samples_of(served.port)
            assert value(samples, "ws_handshakes_total", path="/limited", outcome="accepted", status="101") == 1
            assert value(samples, "ws_handshakes_total", path="/limited", outcome="refused", status="429") == 1
            first.close()
            await rfirst.wait("close")

    run(main)


def test_asgi_handshakes_are_counted(registry: CollectorRegistry) -> None:
    """Under ASGI the handshakes are counted (the ASGI server frames the messages)."""
    from ws.asgi import ASGIApp

    from .test_asgi import FakeASGI, scope

    async def main() -> None:
        refusing = WebSocketServer(no_server=True, path="/asgi", allowed_origins=["http://other.test"])
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(refusing)(scope("/asgi"), fake.receive, fake.send)
        assert fake.sent[0]["type"] == "websocket.close"
        accepting = WebSocketServer(no_server=True, path="/asgi", allowed_origins=["http://o.test"])
        fake = FakeASGI({"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000})
        await ASGIApp(accepting)(scope("/asgi"), fake.receive, fake.send)
        assert fake.sent[0]["type"] == "websocket.accept"
        samples = parse(generate_latest(registry).decode())
        assert value(samples, "ws_handshakes_total", path="/asgi", outcome="refused", status="403") == 1
        assert value(samples, "ws_origin_refusals_total", path="/asgi") == 1
        assert value(samples, "ws_handshakes_total", path="/asgi", outcome="accepted", status="101") == 1

    run(main)
