"""RFID tags cloned or moved, and a LiDAR occluded: frauds in the world that the bays' scans reveal."""

from __future__ import annotations

import json

import pytest

from injector_runs import latency, run_library

BAY_CHANGE_S = 65.0  # brief §9: one scan period, then a commanded rescan confirms within seconds


def test_cloned_tags_are_caught_by_the_gate_or_by_the_bay_scans():
    outcome, result = run_library("tag-cloned")
    assert result["status"] == "SUCCESS", result["criteria"]
    # A clone of a pledged, unreleased lot: the gate read alone is an unauthorized outbound. The
    # bay scans may see the goods gone even before the gate, as they are loaded (a negative latency).
    gate = next(c for c in result["criteria"] if c["name"] == "outbound-unauthorized catches clone-pledged (bank)")
    assert gate["actual"] <= 2.0
    assert result["detections"]["clone-pledged"]["rule"] in {"outbound-unauthorized", "inventory-mismatch"}
    assert latency(result, "clone-pledged") <= 2.0
    # A clone of a released lot passes the gate; the LiDAR sees both bays disagree with the book.
    assert result["detections"]["clone-released"]["rule"] == "inventory-mismatch"
    assert latency(result, "clone-released") <= BAY_CHANGE_S
    bays = {a["detail"]["bay"] for a in result["alerts"] if a["rule"] == "inventory-mismatch"}
    assert {"B09", "B10"} <= bays  # one bay emptier, the other fuller than the book
    assert result["false_alarms"] == [] and result["missed"] == []
    # The twin really kept the original: B09-03's goods left, B10-01's never did.
    left = {lot for line in outcome.log.lines if b'"twin.goods-left"' in line for lot in json.loads(line)["data"]["lots"]}
    assert "B09-03" in left and "B10-01" not in left


def test_swapped_tags_let_pledged_goods_out_as_released_ones_and_the_scans_catch_it():
    _, result = run_library("tag-moved")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert result["detections"]["swapped"]["rule"] == "inventory-mismatch"
    assert latency(result, "swapped") <= BAY_CHANGE_S
    assert not [a for a in result["alerts"] if a["rule"] == "outbound-unauthorized"]  # the gate was fooled
    assert result["false_alarms"] == []


@pytest.mark.parametrize("name", ["lidar-occluded", "lidar-occluded-near"])
def test_a_board_in_front_of_the_lidar_is_confirmed_by_a_rescan_not_a_second_period(name):
    outcome, result = run_library(name)
    assert result["status"] == "SUCCESS", result["criteria"]
    assert result["detections"]["board"]["rule"] == "lidar-tamper"
    assert latency(result, "board") <= BAY_CHANGE_S
    # The alert rests on two scans: the first scan after the board went up, and the one the edge
    # commanded right after it, a pan sweep later (not the next 60 s period).
    events = [json.loads(line) for line in outcome.log.lines]
    rescan = next(e for e in events if e["ev"] == "edge.rescan")
    alert = next(e for e in events if e["ev"] == "edge.alert" and e["data"]["rule"] == "lidar-tamper")
    assert rescan["data"]["reason"] == "confirm" and 0 < alert["t"] - rescan["t"] < 5.0
    assert result["false_alarms"] == []
