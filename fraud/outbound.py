"""unauthorized-outbound: pledged lots really leave on a truck, with no release order.

The injector only dispatches a truck in the twin, exactly as an honest outbound would be;
whether anything notices is up to the devices and the platform. Onset is the moment the
truck carrying the goods clears the gate.
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse

MINIMUM_LOTS = 1  # one pledged lot out of the gate must be caught


def inject_unauthorized_outbound(
    env: simpy.Environment,
    warehouse: Warehouse,
    label_id: str,
    at: float,
    lots: list[str],
    loans: list[str],
    record: Callable[[Label], None],
    gate_watched: Callable[[], bool] | None = None,
) -> Label:
    """`loans` are those the lots secure: their LTV may move when the goods are gone.

    `gate_watched` tells whether the edge was running when the truck crossed the gate (ground
    truth the harness has; None: always). If it was not (an edge crash), the gate's reads went
    nowhere and only the bays' scans can tell: inventory-mismatch becomes the primary rule."""
    value = sum(warehouse.lots[lot].mass_kg for lot in lots)
    label = Label(
        id=label_id,
        kind="unauthorized-outbound",
        fault=False,
        targets=[f"lot:{lot}" for lot in lots] + [f"loan:{loan}" for loan in loans],
        injected_at=at,
        magnitude=len(lots),
        magnitude_unit="lots",
        primary_rules=["outbound-unauthorized"],
        # geofence: the goods are carried out of their zone to the dock before the gate sees them.
        secondary_rules=["inventory-mismatch", "geofence", "ltv-band", "ltv-disposal", "outbound-unauthorized-cloud"],
        detail={"mass_kg": round(value, 1), "via": "gate"},
    )

    def on_left(left: list[str], t: float) -> None:
        label.onset = t
        label.detail["lots_left"] = left
        if gate_watched is not None and not gate_watched():
            label.primary_rules = ["inventory-mismatch"]
            label.secondary_rules = ["outbound-unauthorized"] + [
                r for r in label.secondary_rules if r != "inventory-mismatch"
            ]
            label.detail["gate_unwatched"] = True
        record(label)

    def on_lifted(_lot: str, t: float) -> None:
        if label.started is None:
            label.started = t

    def start(_event: simpy.Event) -> None:
        warehouse.outbound(list(lots), on_left=on_left, on_lifted=on_lifted)

    env.timeout(at - env.now).callbacks.append(start)
    return label
