"""Store and forward: a run with an uplink outage reaches the same verdicts as one without.

Only latencies differ, plus the outage's own edge-offline alert; nothing queued at the edge is
lost or applied twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    calm = run_scenario(load_scenario(LIBRARY / "demo-outbound.yaml"), tmp_path_factory.mktemp("calm"))
    outage = run_scenario(load_scenario(LIBRARY / "theft-during-outage.yaml"), tmp_path_factory.mktemp("outage"))
    return calm, outage


def _verdicts(outcome) -> set:
    return {(s.alert.rule, s.alert.targets, s.alert.event_time) for s in outcome.alerts if s.alert.rule != "edge-offline"}


def test_same_verdicts_with_and_without_the_outage(pair):
    calm, outage = pair
    assert _verdicts(calm) == _verdicts(outage) != set()
    assert [s.alert.rule for s in outage.alerts if s.alert.rule == "edge-offline"] == ["edge-offline"]
    assert not [s for s in calm.alerts if s.alert.rule == "edge-offline"]


def test_edge_latency_unchanged_and_bank_latency_waits_for_the_link(pair):
    calm, outage = pair
    by_rule = lambda o: {s.alert.rule: s for s in o.alerts}  # noqa: E731
    a, b = by_rule(calm)["outbound-unauthorized"], by_rule(outage)["outbound-unauthorized"]
    assert a.alert.raised_at == b.alert.raised_at
    outage_end = next(l.detail["until"] for l in outage.labels if l.kind == "uplink-outage")
    assert a.visible_at - a.alert.raised_at < 1.0
    assert outage_end <= b.visible_at < outage_end + 10.0  # alerts leave the outbox first after reconnect


def test_nothing_lost_nothing_applied_twice(pair):
    calm, outage = pair
    for outcome in pair:
        m = outcome.messages
        assert m["records_lost"] == 0 and m["outbox_evicted"] == 0
    # The twin and the devices are identical, so the edge queued the same records in both runs.
    assert calm.messages["emitted"] == outage.messages["emitted"]
    assert outage.messages["lost_on_links"] > 0  # batches really were dropped during the outage
    assert build_result(outage, "n/a")["status"] == "SUCCESS"
