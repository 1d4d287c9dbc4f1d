"""The `medium` reference site, and the twin's use of several gates, weighbridges and docks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Truck, Warehouse
from cangtwin.twin.world import PhysicalWorld

MEDIUM = load_site("medium")


def test_medium_site_has_the_reference_equipment_and_pinned_rates():
    spec = MEDIUM.spec
    types = Counter(d.type for d in spec.devices)
    assert (len(spec.gates), len(spec.weighbridges), len(spec.forklifts)) == (2, 2, 8)
    assert (types["camera"], types["lidar"], types["climate-sensor"]) == (24, 4, 40)
    assert sum(b.initial_lots for b in spec.bays) == 400
    assert {b.commodity for b in spec.bays} == set(spec.commodities) == {
        "steel-coil", "aluminium-ingot", "copper-cathode", "rubber-bale"}
    assert spec.rates.model_dump() == {"heartbeat_s": 10, "climate_s": 30, "positioning_hz": 1,
                                       "lidar_scan_s": 60, "camera_analysis_s": 2, "scale_hz": 10}
    assert all(d.look_at is not None for d in spec.devices if d.type == "camera")
    covered = [bay for d in spec.devices if d.type == "lidar" for bay in d.bays]
    assert sorted(covered) == sorted(b.id for b in spec.bays)  # each bay in exactly one LiDAR's group
    # Every gate and weighbridge has its devices.
    for gate in spec.gates:
        assert {d.type for d in spec.devices if d.gate == gate.id} == {"rfid-reader", "gate-sensor"}
    assert sorted(d.weighbridge for d in spec.devices if d.type == "weighbridge") == ["WB1", "WB2"]


class Day:
    """The medium warehouse alone (no devices, no platform), with its truth log."""

    def __init__(self) -> None:
        self.env = simpy.Environment()
        self.world = PhysicalWorld(MEDIUM)
        self.log: list[tuple[float, str, dict]] = []
        self.warehouse = Warehouse(self.env, MEDIUM, self.world, RandomStreams(3), self._record)

    def _record(self, event: str, data: dict) -> None:
        self.log.append((self.env.now, event, json.loads(json.dumps(data))))

    def events(self, name: str) -> list[dict]:
        return [data for _, event, data in self.log if event == name]

    def close(self) -> None:
        self.world.close()


def test_simultaneous_trucks_take_the_gates_in_turn_and_a_dock_each():
    day = Day()
    try:
        for bay in ("W09", "W10", "E09", "E10"):
            commodity = "aluminium-ingot" if bay.startswith("W") else "rubber-bale"
            day.warehouse.inbound(commodity, 2, bay)
        day.env.run(until=3600)
        trucks = sorted(day.warehouse.model.agents_by_type[Truck], key=lambda t: t.name)
        passes = day.events("twin.gate-pass")
        assert [(p["truck"], p["direction"], p["gate"]) for p in passes if p["direction"] == "in"] == [
            ("T0001", "in", "G1"), ("T0002", "in", "G2"), ("T0003", "in", "G1"), ("T0004", "in", "G2")]
        assert {(p["truck"], p["gate"]) for p in passes if p["direction"] == "out"} == {
            (t.name, t.gate.id) for t in trucks}
        assert sorted(t.dock.id for t in trucks) == ["D1", "D2", "D3", "D4"]
        # Both weighbridges served arrivals (each gate's nearer one while both were free).
        assert {w["scale"] for w in day.events("twin.weigh")} == {"WB1", "WB2"}
        for bay in ("W09", "W10", "E09", "E10"):
            assert sum(1 for lot in day.warehouse.lots.values() if lot.location == f"bay:{bay}") == 14 + 2
    finally:
        day.close()


visits = st.lists(
    st.tuples(st.sampled_from(["inbound", "outbound"]), st.integers(min_value=0, max_value=900)),
    min_size=1, max_size=3,
)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=visits)
def test_any_arrival_pattern_is_served_deterministically_and_completely(plan):
    """Same plan, same choices: the truth logs of two runs are identical, and every visit ends."""
    stock = [f"{bay}-{n:02d}" for bay in ("W11", "W12", "E13", "E14") for n in range(1, 15)]
    pairs = {i: stock[2 * i:2 * i + 2] for i, (kind, _) in enumerate(plan) if kind == "outbound"}
    taken = [lot for pair in pairs.values() for lot in pair]
    logs = []
    for _ in range(2):
        day = Day()
        try:
            for i, (kind, at) in enumerate(plan):
                if kind == "inbound":
                    visit = lambda _e: day.warehouse.inbound("copper-cathode", 3, "E06")  # noqa: E731
                else:
                    visit = lambda _e, pair=pairs[i]: day.warehouse.outbound(pair)  # noqa: E731
                day.env.timeout(at).callbacks.append(visit)
            day.env.run(until=6 * 3600)
            logs.append(day.log)
            arrived = day.events("twin.truck-arrived")
            left = [p for p in day.events("twin.gate-pass") if p["direction"] == "out"]
            assert len(arrived) == len(left) == len(plan)
            gate_in = {p["truck"]: p["gate"] for p in day.events("twin.gate-pass") if p["direction"] == "in"}
            assert all(gate_in[p["truck"]] == p["gate"] for p in left)  # out by the gate it came in by
            assert all(day.warehouse.lots[lot].location == "gone" for lot in taken)
            inbound = sum(1 for kind, _ in plan if kind == "inbound")
            assert sum(1 for lot in day.warehouse.lots.values() if lot.location == "bay:E06") == 14 + 3 * inbound
        finally:
            day.close()
    assert logs[0] == logs[1]


def test_half_an_hour_on_the_medium_site_uses_both_gates_and_raises_nothing(tmp_path: Path):
    scenario = tmp_path / "medium-half-hour.yaml"
    scenario.write_text(
        """scenario: medium-half-hour
site: medium
seed: 11
start: "2026-03-03T09:00"
duration: 30m
loans:
  - {id: LN-M-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 2000000, bays: [W01, W02, E01]}
operations:
  - {kind: inbound, at: 2m, commodity: aluminium-ingot, count: 3, bay: W10}
  - {kind: outbound, at: 3m, lots: [W05-01, W05-02]}
  - {kind: inbound, at: 4m, commodity: copper-cathode, count: 2, bay: E06}
  - {kind: outbound, at: 5m, lots: [E10-01, E10-02]}
expectations:
  - {kind: no-false-alarms}
""",
        encoding="utf-8",
    )
    outcome = run_scenario(load_scenario(scenario), tmp_path / "run")
    result = build_result(outcome, "n/a")
    lines = [json.loads(line) for line in outcome.log.lines]
    passes = [e["data"] for e in lines if e["ev"] == "twin.gate-pass"]
    assert len({p["truck"] for p in passes}) == 4 and len(passes) == 8  # every truck in and out
    assert {p["gate"] for p in passes} == {"G1", "G2"}
    assert {e["data"]["scale"] for e in lines if e["ev"] == "twin.weigh"} == {"WB1", "WB2"}
    gone = sorted(lot for e in lines if e["ev"] == "twin.goods-left" for lot in e["data"]["lots"])
    assert gone == ["E10-01", "E10-02", "W05-01", "W05-02"]
    m = outcome.messages
    assert m["emitted"] == m["edge_accepted"] > 10_000 and m["edge_rejected"] == 0 and m["records_lost"] == 0
    assert result["alerts"] == [] and result["false_alarms"] == []
    assert result["status"] == "SUCCESS"
