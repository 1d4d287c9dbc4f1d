"""Store and forward: a run with an uplink outage reaches the same verdicts as one without.

Only latencies differ, plus the outage's own edge-offline alert; nothing queued at the edge is
lost or applied twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cangtwin.platform.edge.resend_timer import ResendTimer
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


# --- resending on a lossy link (RFC 6298 timeout, alerts beside the batch in flight) ---------------

def test_the_resend_timeout_follows_measured_round_trips_within_floor_and_cap():
    timer = ResendTimer(5.0, 0.5, 5.0)
    assert timer.rto_s == 5.0  # nothing measured yet
    timer.measured(0.08)
    assert timer.rto_s == 0.5  # 0.08 + 4 * 0.04 is under the floor
    for _ in range(40):
        timer.measured(3.1)  # a latency spike: the path now takes 3.1 s there and back
    assert 3.1 < timer.rto_s < 3.5  # SRTT + 4 RTTVAR settles just above the round trip
    timer.timed_out()
    assert timer.rto_s == 5.0  # doubled, but never past the cap: an outage is probed every 5 s
    timer.timed_out()
    assert timer.rto_s == 5.0
    timer.measured(3.1)
    assert timer.rto_s < 3.6
    with pytest.raises(ValueError, match="floor"):
        ResendTimer(5.0, 0.0, 5.0)


def test_a_lossy_uplink_delays_the_bank_by_the_link_not_by_a_fixed_resend_wait(tmp_path):
    """30 % loss and +1.5 s each way: the theft alert goes beside the batch in flight and reaches
    the bank one link latency after the edge raised it (it took 11.1 s with a fixed 5 s resend
    wait behind the batch in flight); nothing is lost, duplicates are absorbed."""
    outcome = run_scenario(load_scenario(LIBRARY / "link-spikes.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert result["status"] == "SUCCESS", result["criteria"]
    theft = result["detections"]["theft"]
    assert theft["edge_latency_s"] <= 2.0
    assert theft["bank_latency_s"] - theft["edge_latency_s"] < 1.5 + 0.5  # the spike's own latency, and little more
    m = outcome.messages
    assert m["records_lost"] == 0 and m["lost_on_links"] > 0 and m["cloud_duplicates"] > 0
