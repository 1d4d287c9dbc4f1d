"""Weighbridge frauds acting on the world: a wheel off the plate, a person on the scale."""

from __future__ import annotations

import pytest

from cangtwin.fraud.partial_wheel import minimum_missing_kg, stop_short
from cangtwin.fraud.person_on_scale import minimum_person_kg
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Truck, Warehouse
from cangtwin.twin.world import PhysicalWorld

from injector_runs import latency, run_library


@pytest.fixture
def empty_truck_on_plate():
    import simpy

    site = load_site("small")
    world = PhysicalWorld(site)
    env = simpy.Environment()
    warehouse = Warehouse(env, site, world, RandomStreams(1), lambda *_: None)
    gate = site.spec.gates[0]
    body = world.add_truck(site.spec.truck.tare_kg, tuple(site.spec.truck.bed_m), (15.0, 12.0))
    truck = Truck(warehouse.model, "T9", body, gate)
    truck.where = "inside"
    world.settle(0.5)
    yield warehouse, truck
    world.close()


@pytest.mark.parametrize("overhang_m", [0.2, 0.5, 1.0])
def test_stopping_short_tips_the_truck_and_the_plate_carries_what_statics_says(empty_truck_on_plate, overhang_m):
    """A rigid chassis of length L resting on the plate edge and the floor: the plate carries
    (L/2) / (L/2 + overhang) of it, by moments about the end on the floor."""
    warehouse, truck = empty_truck_on_plate
    tare, half = warehouse.spec.truck.tare_kg, warehouse.spec.truck.bed_m[0] / 2
    assert warehouse.world.plate_load_kg("WB1") == pytest.approx(tare, rel=1e-3)
    stop_short(warehouse, truck, "WB1", overhang_m)
    assert warehouse.world.plate_load_kg("WB1") == pytest.approx(tare * half / (half + overhang_m), rel=0.01)
    # It stopped short towards the gate it came from (west of the plate on `small`).
    assert warehouse.world.position(truck.body)[0] < 6.0


def test_stated_minimums():
    assert minimum_missing_kg(5000.0, 50.0) == pytest.approx(225.0)
    assert minimum_person_kg(50.0) == pytest.approx(110.0)


def test_wheel_off_the_plate_is_caught_at_the_gate_and_an_honest_load_is_not():
    outcome, result = run_library("partial-wheel")
    assert result["status"] == "SUCCESS", result["criteria"]
    [label] = [label for label in outcome.labels if label.id == "wheel-off"]
    assert label.magnitude > label.detail["minimum_magnitude"]
    assert latency(result, "wheel-off") <= 2.0  # brief §9: gate outbound
    [alert] = result["alerts"]  # the honest collection later raised nothing
    assert alert["rule"] == "substitution-or-hollow" and "lighter" in alert["summary"]
    assert result["false_alarms"] == []


def test_wheel_barely_off_is_still_caught_above_the_stated_minimum():
    outcome, result = run_library("partial-wheel-near")
    [label] = outcome.labels
    assert label.detail["minimum_magnitude"] < label.magnitude < 2 * label.detail["minimum_magnitude"]  # near the threshold
    assert result["status"] == "SUCCESS" and latency(result, "wheel-edge") <= 2.0


def test_person_above_the_minimum_is_caught_by_the_plateau_step():
    outcome, result = run_library("person-on-scale")
    assert result["status"] == "SUCCESS", result["criteria"]
    [label] = outcome.labels
    assert label.magnitude >= minimum_person_kg(50.0)
    # Judged while the truck still stands on the plate (it leaves 40 s after it drove on, 28 s
    # after the person stepped on): the indicator settles, the new plateau holds 2 s.
    assert latency(result, "on-the-plate") <= 10.0
    [alert] = result["alerts"]
    assert "with vehicle" in alert["summary"]
    assert result["false_alarms"] == [] and result["missed"] == []


def test_a_lone_person_below_the_minimum_is_caught_only_when_the_rounding_allows():
    _, result = run_library("person-on-scale-near")
    assert result["false_alarms"] == []
    assert set(result["detections"]) | set(result["missed"]) == {"driver-in", "driver-out"}
    # This seed: the first step shows as 2e and is caught during its weighing; the second shows
    # as 1e, within what the rule allows, and stays silent, at the end of its weighing too.
    assert list(result["detections"]) == ["driver-in"] and latency(result, "driver-in") <= 10.0
    assert len(result["alerts"]) == 1
