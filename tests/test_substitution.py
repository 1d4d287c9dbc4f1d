"""substitution-or-hollow: the weighbridge catches goods that look right but weigh wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.fraud.substitution import minimum_deficit_kg
from cangtwin.platform.edge.load_check import LoadChecker
from cangtwin.platform.records import GateEvent, LoadCheck
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.substitution_or_hollow import Entry, SubstitutionOrHollow
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"
RULE = SubstitutionOrHollow(Entry(id="substitution-or-hollow", kind="substitution-or-hollow",
                                  category="physical", severity="critical", section="4.4 质物监管"))


def _check(net: float, declared: float, division: float = 50.0) -> LoadCheck:
    return LoadCheck("L1", "small", "G1", "out", ("B09-01",), declared, net, (15000.0, 15000.0 + net),
                     division, 100.0, 100.01)


@settings(max_examples=200)
@given(declared=st.floats(500, 60000), division=st.sampled_from([10.0, 20.0, 50.0]), frac=st.floats(0, 0.999))
def test_silent_within_tolerance_and_alerting_beyond_the_stated_minimum(declared, division, frac):
    limit = minimum_deficit_kg(declared, division)
    assert RULE.evaluate(_check(declared - frac * limit, declared, division), None) == []
    [finding] = RULE.evaluate(_check(declared - limit * 1.001 - 1.0, declared, division), None)
    assert finding.targets == ("lot:B09-01",) and "lighter" in finding.summary


def test_heavier_than_declared_is_also_flagged():
    [finding] = RULE.evaluate(_check(3000.0, 2500.0), None)
    assert "heavier" in finding.summary


def test_load_checker_pairs_the_two_weighings_with_the_outbound_lots():
    checker, book = LoadChecker("small"), BookView()
    book.mass_by_lot = {"B09-01": 2500.0}
    for gross in (15000.0, 17480.0):  # tare on the way in, gross with the lot on the way out
        for t, mass, stable in [(0.0, 0.0, True), (1.0, gross, False), (2.0, gross, True), (5.0, gross, True),
                                (6.0, 0.0, False), (8.0, 0.0, True)]:
            checker.add_reading("scale-wb1", 20.0, t + gross / 1000, mass, stable)
    event = GateEvent("G1", "small", "G1", "out", ("B09-01",), (), 100.0, 100.01)
    check = checker.on_gate_event(event, book)
    assert check.net_kg == pytest.approx(2480.0) and check.declared_kg == 2500.0 and check.division_kg == 20.0
    assert checker.on_gate_event(event, book) is None  # the tickets were used


def _weigh(checker: LoadChecker, scale: str, plate: str, start: float, gross: float) -> None:
    for t, mass, stable in [(0.0, gross, False), (1.0, gross, True), (4.0, gross, True)]:
        checker.add_reading(scale, 20.0, start + t, mass, stable)
    checker.add_vehicle(scale, start - 0.01, plate)  # plate reads may arrive after the readings
    checker.add_vehicle(scale, start + 4.5, "")
    for t, mass, stable in [(5.0, 0.0, False), (7.0, 0.0, True)]:
        checker.add_reading(scale, 20.0, start + t, mass, stable)


def test_interleaved_trucks_on_two_scales_are_paired_by_their_plates():
    """Truck A weighs in; truck B weighs in and out on the other scale and leaves; then A weighs out
    and leaves. Paired by order, B's exit would use up A's entry weighing and A's load would go
    unchecked; the plate reads keep each truck's weighings together."""
    checker, book = LoadChecker("medium"), BookView()
    book.mass_by_lot = {"W05-01": 20000.0, "E06-01": 2500.0}
    _weigh(checker, "scale-wb1", "T0001", 0.0, 15000.0)     # A in, empty
    _weigh(checker, "scale-wb2", "T0002", 10.0, 15000.0)    # B in, empty
    _weigh(checker, "scale-wb2", "T0002", 100.0, 17500.0)   # B out with a copper bundle
    check_b = checker.on_gate_event(GateEvent("G2-1", "medium", "G2", "out", ("E06-01",), (), 120.0, 120.01), book)
    _weigh(checker, "scale-wb1", "T0001", 130.0, 35000.0)   # A out with a coil
    check_a = checker.on_gate_event(GateEvent("G1-1", "medium", "G1", "out", ("W05-01",), (), 150.0, 150.01), book)
    assert check_b.net_kg == pytest.approx(2500.0) and check_b.lots == ("E06-01",)
    assert check_a.net_kg == pytest.approx(20000.0) and check_a.lots == ("W05-01",)


def test_substituted_and_hollow_bundles_are_caught_and_honest_loads_are_not(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "substitution.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert set(result["detections"]) == {"swap-1", "hollow-1"}
    assert [tuple(a["targets"]) for a in result["alerts"]] == [("lot:B09-01",), ("lot:B09-02",)]
    assert result["false_alarms"] == [] and result["status"] == "SUCCESS"
