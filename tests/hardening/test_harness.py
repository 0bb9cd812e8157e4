"""The attack harness itself: the target serves, the measurements are real numbers that move."""

from __future__ import annotations

import time
import urllib.request

from .hostile import MiB, LatencyProbe, TargetProcess, upgrade


def test_target_serves_and_is_measured() -> None:
    with TargetProcess() as target:
        fds = target.fds()  # before any connection: one left closing cannot inflate it
        assert urllib.request.urlopen(f"http://127.0.0.1:{target.port}/ok", timeout=5).read() == b"ok"
        rss = target.rss()
        assert 5 * MiB < rss < 200 * MiB and target.peak_rss() >= rss
        socks = [upgrade(target.port) for _ in range(10)]
        deadline = time.monotonic() + 5
        while target.fds() < fds + 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert target.fds() >= fds + 10  # the fd count sees our connections
        for s in socks:
            s.close()
        with LatencyProbe(target.port) as probe:
            time.sleep(0.5)
        probe.assert_served()
        assert target.cpu() > 0
        assert target.alive()
