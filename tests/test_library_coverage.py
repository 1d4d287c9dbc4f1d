"""The scenario library covers the whole rule catalog: every rule of the default rule set is
expected to fire in some scenario and to stay silent in an honest near-miss, and the honest
near-miss scenario really runs clean from the twin to the cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.scenarios.spec import Detect, NoAlerts, load_scenario
from injector_runs import run_library

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "scenarios" / "library"
CATALOG = [entry.id for entry in load_ruleset(REPO / "platform" / "rules" / "default.yaml").entries]
SCENARIOS = {path.name: load_scenario(path).spec for path in sorted(LIBRARY.glob("*.yaml"))}


def _expecting(kind: type) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, spec in SCENARIOS.items():
        for exp in spec.expectations:
            if isinstance(exp, kind):
                found.setdefault(exp.rule, []).append(name)
    return found


@pytest.mark.parametrize("rule", CATALOG)
def test_every_rule_is_expected_to_fire_in_a_library_scenario(rule):
    assert rule in _expecting(Detect), f"no library scenario expects {rule} to catch anything"


@pytest.mark.parametrize("rule", CATALOG)
def test_every_rule_is_expected_to_stay_silent_in_a_library_scenario(rule):
    assert rule in _expecting(NoAlerts), f"no library scenario is an honest near-miss for {rule}"


def test_the_honest_near_miss_raises_nothing_yet_comes_close():
    outcome, result = run_library("honest-near-miss")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert result["alerts"] == []
    m = result["messages"]
    # Close, not idle: the lossy uplink really lost and duplicated traffic, and pledged lots left.
    assert m["lost_on_links"] > 0 and m["cloud_duplicates"] > 0
    assert m["records_lost"] == 0 and m["outbox_evicted"] == 0
    left = [line for line in outcome.log.lines if b'"twin.goods-left"' in line]
    assert any(b"B01-03" in line for line in left) and any(b"B09-01" in line for line in left)
