"""person-on-scale: someone steps onto the weighbridge plate beside the truck during a weighing.

Acts on the world only: a person is a 0.4 × 0.3 × 1.7 m body of `mass_kg` put down on the plate
in the strip between the truck's side and the plate's edge, `on_after_s` into the weighing, and
taken away again `stay_s` later. The plate's contact forces then carry the person too.

weighbridge-anomaly sees it as a step between two stable plateaus with the vehicle on. The
indicator shows whole divisions e, so a step of m kg shows as ⌊m/e⌋ or ⌈m/e⌉ divisions
depending on where the load sits within its division; the rule alerts above 1.5e. A step is
therefore always caught from `minimum_person_kg` = 2e plus the indicator's noise margin
(110 kg on a 50 kg-division bridge: a person carrying ballast, or two people); a lone 70–90 kg
person on that bridge is caught only when the rounding falls their way (about (m − e)/e of the
time), which is the near-threshold case the library shows.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.fraud.weighing_hooks import truck_on_plate
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import Shape

BODY = Shape("box", (0.4, 0.3, 1.7))
SETTLE_S = 0.5
NOISE_MARGIN_E = 0.2


def minimum_person_kg(division_kg: float) -> float:
    """The smallest extra body whose step the rule catches whatever the rounding."""
    return (2 + NOISE_MARGIN_E) * division_kg


def inject_person_on_scale(
    warehouse: Warehouse, label_id: str, at: float, scale_id: str, mass_kg: float, on_after_s: float,
    stay_s: float, record: Callable[[Label], None],
) -> Label:
    """On the first weighing on `scale_id` at or after `at`."""
    env, world = warehouse.env, warehouse.world
    device = next(d.id for d in warehouse.spec.devices if d.type == "weighbridge" and d.weighbridge == scale_id)
    label = Label(
        id=label_id, kind="person-on-scale", fault=False,
        targets=[f"weighbridge:{scale_id}", f"device:{device}"], injected_at=at,
        magnitude=mass_kg, magnitude_unit="kg", primary_rules=["weighbridge-anomaly"],
        secondary_rules=["substitution-or-hollow"], window_s=600.0,
        detail={"on_after_s": on_after_s, "stay_s": stay_s,
                "minimum_magnitude": minimum_person_kg(next(w for w in warehouse.spec.weighbridges
                                                             if w.id == scale_id).division_kg)},
    )
    done: list[bool] = []

    def step_on(_e) -> None:
        rect = next(w for w in warehouse.spec.weighbridges if w.id == scale_id).rect
        truck = truck_on_plate(warehouse, scale_id)
        x, y, _ = world.position(truck.body) if truck else (*rect.center, 0.0)
        half_truck = warehouse.spec.truck.bed_m[1] / 2
        strip = (rect.y0, y - half_truck)  # between the plate's edge and the truck's near side
        body = world.add_goods(BODY, mass_kg, (x, (strip[0] + strip[1]) / 2, 0.05))
        world.settle(SETTLE_S)
        label.onset = env.now
        label.detail.update({"truck": truck.name if truck else None, "off_at": env.now + stay_s})
        record(label)
        env.timeout(stay_s).callbacks.append(lambda _e: step_off(body))

    def step_off(body: int) -> None:
        world.remove(body)
        world.settle(SETTLE_S)

    def on_plate(scale: str, loaded: bool) -> None:
        if scale == scale_id and loaded and env.now >= at and not done:
            done.append(True)
            env.timeout(on_after_s).callbacks.append(step_on)

    warehouse.signals.plate.append(on_plate)
    return label
