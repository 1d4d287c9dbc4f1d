"""tag-cloned: pledged goods leave wearing a copy of another lot's RFID tag; that lot stays put.

Acts on the world only: the goods of `leaves` get a cloned tag carrying `clone_of`'s EPC (their
own tag is cut off), and a truck collects them as any outbound would. The portal reads
`clone_of` leaving while its goods, with the original tag, still stand in their bay.

Which rule catches it depends on the cloned identity: if `clone_of` is pledged and not released,
the gate read alone is an unauthorized outbound (outbound-unauthorized, ≤ 2 s); if it was
released, the book now places `clone_of` outside and `leaves` inside, so the LiDAR finds one bay
fuller and another emptier than the book says (inventory-mismatch, within two scans of the
bays after the book change). One lot is the minimum magnitude; the LiDAR case needs the lot's
envelope above the rule's tolerance (0.3 m³ and 8 % of the bay: one copper bundle in a bay of
five is 0.44 m³, 20 %).
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse

MINIMUM_LOTS = 1


def inject_tag_cloned(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, leaves: str, clone_of: str,
    record: Callable[[Label], None],
) -> Label:
    goods, original = warehouse.lots[leaves], warehouse.lots[clone_of]
    label = Label(
        id=label_id, kind="tag-cloned", fault=False,
        targets=[f"lot:{leaves}", f"lot:{clone_of}", f"bay:{goods.bay}", f"bay:{original.bay}"],
        injected_at=at, magnitude=1, magnitude_unit="lots",
        primary_rules=["outbound-unauthorized", "inventory-mismatch"],
        # geofence: the goods are carried out of their zone to the dock before the gate sees them.
        secondary_rules=["substitution-or-hollow", "geofence", "outbound-unauthorized-cloud"],
        detail={"cloned_tag": original.tag, "own_tag": goods.tag, "minimum_magnitude": MINIMUM_LOTS},
    )

    def on_left(_lots: list[str], t: float) -> None:
        label.onset = t
        record(label)

    def on_lifted(_lot: str, t: float) -> None:
        if label.started is None:  # the bay is short from here on: a scan may see it before the gate
            label.started = t

    def act(_e: simpy.Event) -> None:
        goods.tag = original.tag  # the clone is stuck on; the goods' own tag is cut off
        warehouse.outbound([leaves], on_left=on_left, on_lifted=on_lifted)

    env.timeout(at - env.now).callbacks.append(act)
    return label
