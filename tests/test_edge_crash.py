"""Edge crash and restart from the durable outbox: committed records survive, ids stay unique."""

from __future__ import annotations

import json
from pathlib import Path

from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario
from injector_runs import run_library

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def test_crash_restart_then_theft(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "edge-crash.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    assert result["status"] == "SUCCESS", result["criteria"]
    m = outcome.messages
    assert m["lost_while_edge_down"] > 0  # devices kept talking to a dead edge
    assert m["records_lost"] == 0 and m["outbox_evicted"] == 0  # what was committed reached the cloud
    ids = [a["id"] for a in result["alerts"]]
    assert len(ids) == len(set(ids))
    theft = next(a for a in result["alerts"] if a["rule"] == "outbound-unauthorized")
    assert "-r" in theft["id"]  # raised by the restarted edge, under its new boot prefix
    events = [json.loads(line)["ev"] for line in outcome.log.lines]
    assert events.index("fault.edge-crash") < events.index("fault.edge-restart")
    assert (tmp_path / "edge-outbox.sqlite").exists()


def test_a_theft_while_the_edge_was_down_is_found_by_the_rescan_at_restart():
    """The restarted edge, once it has its book again, commands every LiDAR to scan at once and
    confirms with one more scan: the bays are reconciled seconds after the restart, not two scan
    periods later. The latency from the goods leaving counts the time the edge was down (its
    own edge-offline alert covers that); what the edge adds is measured from the restart."""
    outcome, result = run_library("theft-during-edge-crash")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert result["detections"]["theft"]["rule"] == "inventory-mismatch"
    events = [json.loads(line) for line in outcome.log.lines]
    restart = next(e["t"] for e in events if e["ev"] == "fault.edge-restart")
    left = next(e["t"] for e in events if e["ev"] == "twin.goods-left")
    rescans = [e for e in events if e["ev"] == "edge.rescan"]
    assert rescans[0]["data"] == {"device": "lidar-1", "reason": "restart"} and rescans[0]["t"] - restart < 1.0
    found = left + result["detections"]["theft"]["edge_latency_s"]
    assert restart < found < restart + 10.0  # within §9's 65 s for a bay change, counted from the restart
    assert result["false_alarms"] == []
