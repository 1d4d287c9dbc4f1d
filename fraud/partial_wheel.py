"""partial-wheel: the driver stops short, so part of the truck stands off the weighbridge plate.

Acts on the world only: the truck (and its cargo) is put down further back, towards the gate it
came from, so that its laden centre of mass (chassis and cargo) lies `overhang_m` beyond the plate's near edge. The plate
sits 5 cm above the floor, so the chassis tips onto the floor behind it and pybullet's contact
forces split the weight between floor and plate: the scale carries, e.g., 97 % of a 13 m truck
at 0.2 m and 87 % at 1 m. The indicator then weighs only what rests on the plate.

Cheating the loaded weighing of an outbound truck makes its load look lighter than the receipts.
The load check at the gate (net = loaded − empty weighing, against the book) catches it once
the missing weight exceeds two weighings' MPE and rounding plus 0.5 % of the declared load:
`minimum_missing_kg` (225 kg for two 2.5 t copper bundles on a 50 kg-division weighbridge).
Onset is the moment the mis-weighed load clears the gate.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.fraud.substitution import minimum_deficit_kg
from cangtwin.fraud.weighing_hooks import truck_on_plate
from cangtwin.twin.warehouse import Truck, Warehouse

SETTLE_S = 0.5
MAX_SETTLE_S = 10.0


def minimum_missing_kg(declared_kg: float, division_kg: float) -> float:
    """The smallest weight off the plate that must be caught: the load check's tolerance."""
    return minimum_deficit_kg(declared_kg, division_kg)


def stop_short(warehouse: Warehouse, truck: Truck, scale_id: str, overhang_m: float) -> None:
    """Put the truck down with its laden centre of mass `overhang_m` beyond the plate edge nearest its gate."""
    rect = next(w for w in warehouse.spec.weighbridges if w.id == scale_id).rect
    world = warehouse.world
    bodies = [(truck.body, warehouse.spec.truck.tare_kg)] + [
        (warehouse.lots[lot].body, warehouse.lots[lot].mass_kg) for lot in truck.cargo
    ]
    x = sum(world.position(body)[0] * mass for body, mass in bodies) / sum(mass for _, mass in bodies)
    edge, side = (rect.x0, -1.0) if truck.gate.position[0] < (rect.x0 + rect.x1) / 2 else (rect.x1, 1.0)
    dx = edge + side * overhang_m - x
    for body, _ in bodies:
        bx, by, bz = world.position(body)
        world.place(body, (bx + dx, by, bz - world.shapes[body].height / 2))
    # A small overhang tips the chassis slowly: let it come to rest on the floor before weighing.
    before, waited = float("inf"), 0.0
    while waited < MAX_SETTLE_S and abs(world.plate_load_kg(scale_id) - before) > 1.0:
        before = world.plate_load_kg(scale_id)
        world.settle(SETTLE_S)
        waited += SETTLE_S


def inject_partial_wheel(
    warehouse: Warehouse, label_id: str, at: float, scale_id: str, lots: list[str], overhang_m: float,
    record: Callable[[Label], None],
) -> Label:
    """The truck that collects `lots` stops short on its loaded weighing (the first one at or after `at`)."""
    env = warehouse.env
    label = Label(
        id=label_id, kind="partial-wheel", fault=False,
        targets=[f"lot:{lot}" for lot in lots] + [f"weighbridge:{scale_id}"],
        injected_at=at, magnitude=0.0, magnitude_unit="kg off the plate",
        primary_rules=["substitution-or-hollow"], secondary_rules=["weighbridge-anomaly"],
        window_s=600.0, detail={"overhang_m": overhang_m, "scale": scale_id},
    )
    state: dict[str, Truck] = {}

    def on_plate(scale: str, loaded: bool) -> None:
        if scale != scale_id or not loaded or env.now < at or "truck" in state:
            return
        truck = truck_on_plate(warehouse, scale_id)
        if truck is None or sorted(truck.cargo) != sorted(lots):
            return
        state["truck"] = truck
        full = warehouse.world.plate_load_kg(scale_id)
        stop_short(warehouse, truck, scale_id, overhang_m)
        missing = full - warehouse.world.plate_load_kg(scale_id)
        label.magnitude = round(missing, 1)
        scale = next(w for w in warehouse.spec.weighbridges if w.id == scale_id)
        declared = sum(warehouse.lots[lot].mass_kg for lot in lots)
        label.detail.update({"truck": truck.name, "plate_kg_full": round(full, 1), "weighed_at": env.now,
                             "minimum_magnitude": round(minimum_missing_kg(declared, scale.division_kg), 1)})

    def on_gate(gate: str, direction: str, tags: list[str], enter: float, clear: float) -> None:
        truck = state.get("truck")
        if truck is None or direction != "out" or gate != truck.gate.id or label.onset is not None:
            return
        if sorted(tags) != sorted(warehouse.lots[lot].tag for lot in truck.cargo):
            return  # another truck leaving by the same gate
        label.onset = clear
        env.timeout(clear - env.now).callbacks.append(lambda _e: record(label))

    warehouse.signals.plate.append(on_plate)
    warehouse.signals.gate_pass.append(on_gate)
    return label
