"""ws._runtime.flow.FlowGate: pause at high, resume at low, only a pause it made."""

from __future__ import annotations

import pytest

from ws._runtime.flow import FlowGate


def make(high: int = 4, low: int = 1) -> tuple[FlowGate, list[str]]:
    calls: list[str] = []
    return FlowGate(high, low, lambda: calls.append("pause"), lambda: calls.append("resume")), calls


def test_pauses_at_high_once_and_resumes_at_low_once() -> None:
    gate, calls = make()
    for size in (1, 2, 3):
        gate.added(size)
    assert calls == [] and not gate.paused
    gate.added(4)
    gate.added(5)
    assert calls == ["pause"] and gate.paused
    for size in (4, 3, 2):
        gate.removed(size)
    assert calls == ["pause"]
    gate.removed(1)
    gate.removed(0)
    assert calls == ["pause", "resume"] and not gate.paused


def test_leaves_a_pause_it_did_not_make() -> None:
    gate, calls = make()
    gate.added(9, can_pause=False)  # someone else paused the producer
    gate.removed(0)
    assert calls == [] and not gate.paused


def test_rejects_low_not_below_high() -> None:
    with pytest.raises(ValueError):
        FlowGate(4, 4, lambda: None, lambda: None)


@pytest.mark.parametrize(("high", "low"), [(4, 4), (4, 5), (4, -1)])
def test_the_marks_must_leave_a_gap(high: int, low: int) -> None:
    with pytest.raises(ValueError, match="low < high"):
        FlowGate(high, low, lambda: None, lambda: None)
