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


def test_substituted_and_hollow_bundles_are_caught_and_honest_loads_are_not(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "substitution.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert set(result["detections"]) == {"swap-1", "hollow-1"}
    assert [tuple(a["targets"]) for a in result["alerts"]] == [("lot:B09-01",), ("lot:B09-02",)]
    assert result["false_alarms"] == [] and result["status"] == "SUCCESS"
