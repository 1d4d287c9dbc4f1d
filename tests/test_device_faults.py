"""Device faults and tampering seen only through the bytes they change."""

from __future__ import annotations

import json
from pathlib import Path

from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def test_dead_sensor_drifting_clock_replay_and_rigged_scale_are_each_caught(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "device-faults.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert set(result["detections"]) == {"sensor-dead", "tag-clock", "rfid-replay", "rigged-scale"}
    assert result["detections"]["sensor-dead"]["bank_latency_s"] <= 30 + 10  # k=3 heartbeats of 10 s, 1 s ticks
    rejected = outcome.edge_rejections
    assert rejected.get("clock-skew", 0) > 0 and rejected.get("replayed-seq", 0) + rejected.get("clock-skew", 0) >= 3
    # The dead sensor really went quiet: nothing from it after the failure.
    events = [json.loads(line) for line in outcome.log.lines]
    failure_at = next(e["t"] for e in events if e["ev"] == "fraud.label" and e["data"]["id"] == "sensor-dead")
    assert not [e for e in events if e["ev"] == "device.emit" and e["data"]["device"] == "climate-1" and e["t"] > failure_at]


def test_large_remote_offset_is_caught_as_weight_with_no_vehicle_in_view(tmp_path):
    """+2 t on the empty plate is far outside the zero band, so no zero-drift check can see it; the
    plate camera does. The honest inbound weighings before it, truck in view, raise nothing."""
    outcome = run_scenario(load_scenario(LIBRARY / "scale-ballast.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert result["status"] == "SUCCESS", result["criteria"]
    [alert] = [a for a in result["alerts"] if a["rule"] == "weighbridge-anomaly"]
    assert "no vehicle in view" in alert["summary"]
    assert result["false_alarms"] == []
