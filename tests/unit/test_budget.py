"""ws._runtime.budget.SendBudget: past the limit, the holders of the most unsent bytes go first."""

from __future__ import annotations

import asyncio

import pytest

from ws import WebSocketServer
from ws._runtime.budget import DEFAULT_MAX_TOTAL_BUFFERED, SendBudget, budget_for


class Peer:
    """A connection as the budget sees it: what it holds now, and a record of being dropped."""

    def __init__(self, name: str, held: int, log: list[str]) -> None:
        self.name, self.buffered_amount, self.log = name, held, log

    def _over_budget(self, budget: SendBudget, held: int) -> None:
        self.log.append(f"{self.name}:{held}")
        self.buffered_amount = 0  # dropped: its buffer is gone


def test_under_the_limit_nothing_is_dropped_and_release_forgets() -> None:
    log: list[str] = []
    budget = SendBudget(100)
    a, b = Peer("a", 40, log), Peer("b", 50, log)
    assert not budget.charge(a, 40) and not budget.charge(b, 50)
    assert budget.total == 90 and log == []
    assert not budget.charge(a, 45)  # a report replaces the previous one
    assert budget.total == 95
    budget.release(a)
    budget.release(a)  # twice is harmless
    assert budget.total == 50


def test_past_the_limit_the_largest_go_first_until_it_fits() -> None:
    log: list[str] = []
    budget = SendBudget(100)
    small, big, bigger = Peer("small", 10, log), Peer("big", 40, log), Peer("bigger", 45, log)
    for peer in (small, big, bigger):
        budget.charge(peer, peer.buffered_amount)
    small.buffered_amount = 20
    assert budget.charge(small, 20) is False  # 105 > 100: the largest goes, not the one reporting
    assert log == ["bigger:45"] and budget.total == 60


def test_the_reporting_holder_is_told_when_it_is_the_one_dropped() -> None:
    log: list[str] = []
    budget = SendBudget(100)
    other, hog = Peer("other", 30, log), Peer("hog", 80, log)
    budget.charge(other, 30)
    assert budget.charge(hog, 80) is True
    assert log == ["hog:80"] and budget.total == 30


def test_stale_reports_are_read_again_before_anyone_is_dropped() -> None:
    log: list[str] = []
    budget = SendBudget(100)
    drained, growing = Peer("drained", 90, log), Peer("growing", 20, log)
    budget.charge(drained, 90)
    drained.buffered_amount = 5  # it drained since its report (still above its high-water mark)
    assert budget.charge(growing, 20) is False
    assert log == [] and budget.total == 25


def test_recording_inside_a_write_does_not_drop() -> None:
    log: list[str] = []
    budget = SendBudget(100)
    hog = Peer("hog", 500, log)
    assert budget.charge(hog, 500, shed=False) is False
    assert log == [] and budget.total == 500
    assert budget.charge(Peer("next", 1, log), 1) is False and log == ["hog:500"]


def test_a_drop_whose_listener_sends_again_does_not_recurse_and_the_budget_still_fits() -> None:
    log: list[str] = []
    budget = SendBudget(100)
    inner: list[bool] = []

    class Noisy(Peer):
        def _over_budget(self, budget: SendBudget, held: int) -> None:
            super()._over_budget(budget, held)
            inner.append(budget.charge(bystander, 500))  # an 'error' listener sends to another socket

    bystander = Peer("bystander", 10, log)
    noisy = Noisy("noisy", 200, log)
    budget.charge(bystander, 10)
    budget.charge(noisy, 200)
    assert inner == [False]  # recorded inside the drop, not judged there...
    assert log == ["noisy:200", "bystander:500"] and budget.total == 0  # ...but before the shedding ends


def test_one_budget_per_loop_and_limit() -> None:
    one, two = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert budget_for(one, 10) is budget_for(one, 10)
        assert budget_for(one, 10) is not budget_for(one, 20)
        assert budget_for(one, 10) is not budget_for(two, 10)
    finally:
        one.close()
        two.close()


def test_the_server_option_default_alias_and_checks() -> None:
    assert WebSocketServer(no_server=True).max_total_buffered_amount == DEFAULT_MAX_TOTAL_BUFFERED
    assert WebSocketServer(no_server=True, maxTotalBufferedAmount=1 << 20).max_total_buffered_amount == 1 << 20
    assert WebSocketServer(no_server=True, max_total_buffered_amount=None).max_total_buffered_amount is None
    with pytest.raises(ValueError, match="max_total_buffered_amount must be positive"):
        WebSocketServer(no_server=True, max_total_buffered_amount=0)
    with pytest.raises(TypeError, match="max_total_buffered_amount must be an int or None"):
        WebSocketServer(no_server=True, max_total_buffered_amount="256MB")
