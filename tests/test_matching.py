"""Matching alerts to labels, exactly as docs/matching.md states it."""

from __future__ import annotations

from cangtwin.fraud.label import Label
from cangtwin.platform.records import Alert
from cangtwin.scenarios.matching import CLOCK_SLACK_S, SeenAlert, match


def _label(**kw) -> Label:
    base = dict(id="theft", kind="unauthorized-outbound", fault=False, targets=["lot:B01-01", "lot:B01-02"],
                injected_at=0.0, onset=100.0, magnitude=2, magnitude_unit="lots",
                primary_rules=["outbound-unauthorized"], secondary_rules=["inventory-mismatch"], window_s=600.0)
    return Label(**{**base, **kw})


def _seen(aid, rule="outbound-unauthorized", targets=("lot:B01-01",), event=100.2, raised=100.7,
          received=100.75, visible=100.76) -> SeenAlert:
    alert = Alert(id=aid, rule=rule, category="physical", severity="critical", section="4.5 出入库监管",
                  site="small", targets=targets, event_time=event, observed_at=100.21, raised_at=raised,
                  ruleset="x", summary="s")
    return SeenAlert(alert, received, visible)


def test_first_primary_alert_is_the_detection_and_later_ones_repeat():
    result = match([_label()], [_seen("A2", raised=101.0), _seen("A1"), _seen("A3", raised=102.0)])
    d = result.detections["theft"]
    assert d.alert == "A1" and abs(d.edge_latency_s - 0.7) < 1e-9 and abs(d.bank_latency_s - 0.76) < 1e-9
    assert abs(sum(d.stages_s.values()) - d.bank_latency_s) < 1e-9
    assert result.repeats == {"theft": 2}
    assert result.false_alarms == []


def test_secondary_rule_alert_is_expected_not_false_and_not_a_detection():
    result = match([_label()], [_seen("A1", rule="inventory-mismatch")])
    assert result.detections == {} and result.secondary == {"theft": ["A1"]}
    assert result.false_alarms == [] and result.missed([_label()]) == ["theft"]


def test_wrong_target_wrong_rule_or_outside_the_window_is_a_false_alarm():
    alerts = [
        _seen("other-lot", targets=("lot:B09-01",)),
        _seen("other-rule", rule="geofence"),
        _seen("too-early", event=100.0 - CLOCK_SLACK_S - 0.01),
        _seen("too-late", event=100.0 + 600.01),
    ]
    result = match([_label()], alerts)
    assert sorted(result.false_alarms) == ["other-lot", "other-rule", "too-early", "too-late"]


def test_faults_are_detected_like_frauds_and_their_alerts_are_not_false():
    outage = _label(id="outage", kind="uplink-outage", fault=True, targets=["edge:small"],
                    primary_rules=["edge-offline"], secondary_rules=[])
    result = match([outage], [_seen("A1", rule="edge-offline", targets=("edge:small",))])
    assert result.fault_explained == ["A1"] and result.false_alarms == [] and result.missed([outage]) == []
    assert result.detections["outage"].alert == "A1"
    assert match([outage], []).missed([outage]) == ["outage"]


def test_an_alert_never_seen_by_the_cloud_has_no_bank_latency():
    result = match([_label()], [_seen("A1", received=None, visible=None)])
    d = result.detections["theft"]
    assert d.bank_latency_s is None and d.stages_s["transport"] is None and d.edge_latency_s > 0


def test_a_label_whose_act_never_happened_explains_nothing():
    result = match([_label(onset=None)], [_seen("A1")])
    assert result.false_alarms == ["A1"]


def test_the_first_alert_of_each_rule_is_kept_for_per_rule_criteria():
    result = match([_label()], [_seen("A1", rule="inventory-mismatch", raised=100.3), _seen("A2", raised=100.9)])
    assert result.detections["theft"].alert == "A2"
    assert result.by_rule[("theft", "inventory-mismatch")].alert == "A1"
    assert result.by_rule[("theft", "outbound-unauthorized")].alert == "A2"


def test_an_effect_seen_after_the_act_began_but_before_its_onset_counts_for_the_label():
    """Stolen goods leave their bay (started) a minute before the truck clears the gate (onset)."""
    label = _label(started=40.0)
    alerts = [
        _seen("bay-empty", rule="inventory-mismatch", event=60.0, raised=61.0),
        _seen("before-it-began", rule="inventory-mismatch", event=40.0 - CLOCK_SLACK_S - 0.01, raised=36.0),
        _seen("gate"),
    ]
    result = match([label], alerts)
    assert result.secondary == {"theft": ["bay-empty"]}
    assert result.false_alarms == ["before-it-began"]
    assert result.detections["theft"].alert == "gate"
    assert abs(result.detections["theft"].edge_latency_s - 0.7) < 1e-9, "latency still runs from the onset"
    # Without a start time the same bay alert comes too early to be the theft's.
    assert "bay-empty" in match([_label()], alerts).false_alarms
