"""climate-fault: the air of one zone goes wrong (an HVAC failure or a leak) and is repaired later.

Acts on the world only: a `ClimateFault` is added to the warehouse's zone climate
(twin/climate.py), so the zone's true temperature and humidity change, and the climate sensors
hanging there read the changed air with their own noise. No sensor output is touched.

Ground truth, computed from the twin's own climate curve (1 s steps), not from any reading:
- the storage range of the zone is the tightest of the ranges of the commodities stored in its
  bays (the site file's `temperature_c` / `humidity_pct`);
- onset = the first moment the zone's true value leaves that range (None if it never does);
- the excursion: how far beyond the range the true value peaks, and for how long it stays
  beyond by at least the noise margin.

Minimum magnitude (what the `environment` rule with the default file, min_duration_s 300 s,
must catch): a true excursion at least `MARGIN` beyond the range (5σ of the sensor's 0.2 °C
noise; 4σ of its 1.5 %RH noise, since one reading back inside the range restarts the rule's
clock) held for at least `MINIMUM_HOLD_S` = 300 s + two 30 s reading periods. Below it, the
label names no rule: an excursion inside the range, or one the bank's file tolerates as too short.
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.climate import Cause, ClimateFault
from cangtwin.twin.warehouse import Warehouse

QUANTITY = {"hvac-failure": "temperature_c", "leak": "humidity_pct"}
UNIT = {"temperature_c": "°C", "humidity_pct": "%RH"}
MARGIN = {"temperature_c": 1.0, "humidity_pct": 6.0}
MINIMUM_HOLD_S = 360.0
STEP_S = 1.0


def storage_range(warehouse: Warehouse, zone: str, quantity: str) -> tuple[float, float] | None:
    """The tightest range of the commodities stored in the zone's bays (None: the zone stores nothing)."""
    ranges = [getattr(warehouse.spec.commodities[bay.commodity], quantity)
              for bay in warehouse.spec.bays if bay.zone == zone]
    if not ranges:
        return None
    return max(lo for lo, _ in ranges), min(hi for _, hi in ranges)


def excursion(warehouse: Warehouse, zone: str, quantity: str, start: float, end: float) -> dict:
    """Onset, peak beyond the range, and the longest hold beyond it by `MARGIN`, of the true curve."""
    bounds = storage_range(warehouse, zone, quantity)
    index = 0 if quantity == "temperature_c" else 1
    onset, peak, hold, longest = None, float("-inf"), None, 0.0
    steps = int((end - start) / STEP_S) + 1
    for k in range(steps):
        t = start + k * STEP_S
        value = warehouse.climate.at(t, zone)[index]
        beyond = float("-inf") if bounds is None else max(bounds[0] - value, value - bounds[1])
        peak = max(peak, beyond)
        if beyond > 0 and onset is None:
            onset = t
        if beyond >= MARGIN[quantity]:
            hold = t if hold is None else hold
            longest = max(longest, t - hold + STEP_S)
        else:
            hold = None
    return {"onset": onset, "peak_beyond": round(peak, 3), "held_beyond_margin_s": longest,
            "range": list(bounds) if bounds else None}


def inject_climate_fault(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, zone: str, cause: Cause,
    magnitude: float, duration_s: float, tau_s: float, record: Callable[[Label], None],
) -> Label:
    quantity = QUANTITY[cause]
    sensors = [d.id for d in warehouse.spec.devices
               if d.type == "climate-sensor" and warehouse.climate.zone_at(d.position[0], d.position[1]) == zone]
    label = Label(
        id=label_id, kind="climate-fault", fault=True,
        targets=[f"zone:{zone}"] + [f"device:{s}" for s in sensors], injected_at=at,
        magnitude=magnitude, magnitude_unit=UNIT[quantity], primary_rules=[],
        detail={"cause": cause, "quantity": quantity, "repaired_at": at + duration_s, "tau_s": tau_s,
                "minimum": {"beyond_range": MARGIN[quantity], "held_s": MINIMUM_HOLD_S}},
    )

    def fail(_event: simpy.Event) -> None:
        warehouse.climate.add(ClimateFault(zone, cause, magnitude, at, at + duration_s, tau_s))
        # The zone is back within 1 % of its undisturbed air five time constants after the repair.
        truth = excursion(warehouse, zone, quantity, at, at + duration_s + 5 * tau_s)
        label.onset = truth["onset"]
        label.detail.update(truth)
        if truth["peak_beyond"] >= MARGIN[quantity] and truth["held_beyond_margin_s"] >= MINIMUM_HOLD_S:
            label.primary_rules = ["environment"]
        record(label)

    env.timeout(at - env.now).callbacks.append(fail)
    return label
