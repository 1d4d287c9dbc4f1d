"""Rule-set governance: a bad file is refused and the old rules stay; a new one reaches everyone."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from cangtwin.platform.ledger.log import EvidenceLog
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def test_refused_then_updated_rules_take_effect_at_cloud_and_edge_and_in_the_ledger(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "rules-update.yaml"), tmp_path)
    events = [json.loads(line) for line in outcome.log.lines]
    [refused] = [e for e in events if e["ev"] == "bank.rules-refused"]
    assert "broken.yaml:15: rules[0].params.min_lots" in refused["data"]["error"]
    [cloud] = [e for e in events if e["ev"] == "cloud.ruleset"]
    [edge] = [e for e in events if e["ev"] == "edge.ruleset"]
    assert cloud["data"]["ruleset"].startswith("cangtwin-default@2#") and edge["data"] == cloud["data"]
    assert cloud["t"] <= edge["t"] < cloud["t"] + 1.0
    # The single pledged lot that left after the update is, as the bank's new rules say, not alerted.
    assert [e["data"]["lots"] for e in events if e["ev"] == "twin.goods-left"] == [["B02-04"]]
    result = build_result(outcome, "n/a")
    assert not [a for a in result["alerts"] if a["rule"] == "outbound-unauthorized"]
    # Both versions' hashes went into the ledger when they took effect; the refused one did not.
    log = EvidenceLog.open(tmp_path / "ledger.log")
    rulesets = [msgspec.json.decode(log.entry(i)) for i in range(log.size)]
    versions = [r["version"] for r in rulesets if r.get("type") == "ruleset"]
    log.close()
    assert versions == [1, 2]
