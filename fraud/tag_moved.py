"""tag-moved: the RFID tags of a pledged lot and a released lot are swapped (调包), then the
pledged goods leave under the released lot's identity.

Acts on the world only: the two tags change goods, and a truck collects `lot`. The portal reads
the released lot leaving, which is authorized; the gate is satisfied. The book then places the
released lot outside and the pledged one inside, while the LiDAR sees the opposite: one bay
emptier, another fuller than the book (inventory-mismatch, within two scans of the bays after
the book change). If the two lots' masses differ beyond the load check's tolerance, the
weighbridge catches it at the gate too (substitution-or-hollow). Minimum magnitude: one lot
whose envelope is above the rule's volume tolerance (see fraud/tag_cloned.py).
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse

MINIMUM_LOTS = 1


def inject_tag_moved(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, lot: str, swap_with: str,
    record: Callable[[Label], None],
) -> Label:
    pledged, released = warehouse.lots[lot], warehouse.lots[swap_with]
    label = Label(
        id=label_id, kind="tag-moved", fault=False,
        targets=[f"lot:{lot}", f"lot:{swap_with}", f"bay:{pledged.bay}", f"bay:{released.bay}"],
        injected_at=at, magnitude=1, magnitude_unit="lots",
        primary_rules=["inventory-mismatch", "outbound-unauthorized"],
        # geofence: the goods are carried out of their zone to the dock before the gate sees them.
        secondary_rules=["substitution-or-hollow", "geofence", "outbound-unauthorized-cloud"],
        detail={"tags_swapped": [pledged.tag, released.tag], "minimum_magnitude": MINIMUM_LOTS},
    )

    def on_left(_lots: list[str], t: float) -> None:
        label.onset = t
        record(label)

    def on_lifted(_lot: str, t: float) -> None:
        if label.started is None:  # the bay is short from here on: a scan may see it before the gate
            label.started = t

    def act(_e: simpy.Event) -> None:
        pledged.tag, released.tag = released.tag, pledged.tag
        warehouse.outbound([lot], on_left=on_left, on_lifted=on_lifted)

    env.timeout(at - env.now).callbacks.append(act)
    return label
