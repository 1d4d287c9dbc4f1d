"""Cloud pieces: exactly-once sequence ranges, the alert lifecycle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.platform.cloud.alert_desk import AlertDesk, AlertDeskError, AlertStatus
from cangtwin.platform.cloud.dedupe import SeenRanges
from cangtwin.platform.records import Alert


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=400))
def test_seen_ranges_behave_like_a_set(seqs):
    ranges, model = SeenRanges(), set()
    for n in seqs:
        assert ranges.add(n) == (n not in model)
        model.add(n)
    assert all((n in ranges) == (n in model) for n in range(-2, 305))
    # Ranges stay merged: their number is the number of maximal runs in the set.
    runs = sum(1 for n in model if n - 1 not in model)
    assert ranges.range_count == runs


def test_contiguous_delivery_keeps_one_range():
    ranges = SeenRanges()
    for n in range(100_000):
        ranges.add(n)
    assert ranges.range_count == 1


def _alert(aid: str, targets=("lot:B01-01",), rule="outbound-unauthorized") -> Alert:
    return Alert(id=aid, rule=rule, category="physical", severity="critical", section="4.5 出入库监管",
                 site="small", targets=targets, event_time=1.0, observed_at=1.0, raised_at=1.0,
                 ruleset="x", summary="s")


def test_alert_lifecycle_and_dedupe():
    desk = AlertDesk()
    case = desk.raise_alert(_alert("A1"), received_at=2.0, visible_at=2.1)
    assert case.status is AlertStatus.RAISED and case.visible_at == 2.1
    assert desk.raise_alert(_alert("A1"), 3.0, 3.0) is None  # the same alert delivered again
    assert desk.raise_alert(_alert("A2"), 3.0, 3.0) is None  # same rule and targets while open
    assert desk.cases["A1"].repeats == 1
    desk.acknowledge("A1", 4.0, "bank-a")
    with pytest.raises(AlertDeskError, match="cannot become acknowledged"):
        desk.acknowledge("A1", 4.5, "bank-a")
    desk.resolve("A1", 5.0, "bank-a")
    assert [h[1] for h in desk.cases["A1"].history] == ["raised", "acknowledged", "resolved"]
    assert desk.raise_alert(_alert("A3"), 6.0, 6.0) is not None  # resolved: a new case may open


def test_unacknowledged_alerts_escalate():
    desk = AlertDesk()
    desk.raise_alert(_alert("A1"), 0.0, 0.0)
    desk.raise_alert(_alert("A2", targets=("lot:B01-02",)), 0.0, 50.0)
    late = desk.escalate_unacknowledged(now=100.0, after_s=60.0)
    assert [c.alert.id for c in late] == ["A1"]
    assert desk.cases["A1"].status is AlertStatus.ESCALATED
    with pytest.raises(AlertDeskError):
        desk.resolve("nope", 1.0, "x")
