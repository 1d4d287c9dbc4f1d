"""Where weighbridge frauds find their truck: the vehicle standing on a plate when it reports loaded.

Shared by the partial-wheel and person-on-the-scale injectors, which both act on the world at
that moment, before the indicator takes its first reading.
"""

from __future__ import annotations

from cangtwin.twin.warehouse import Truck, Warehouse


def truck_on_plate(warehouse: Warehouse, scale_id: str) -> Truck | None:
    """The truck inside the site whose chassis stands over the plate of `scale_id`, if any."""
    rect = next(w for w in warehouse.spec.weighbridges if w.id == scale_id).rect
    for truck in warehouse.model.agents_by_type.get(Truck, []):
        if truck.where != "inside":
            continue
        x, y, _ = warehouse.world.position(truck.body)
        if rect.x0 <= x <= rect.x1 and rect.y0 <= y <= rect.y1:
            return truck
    return None
