"""unauthorized outbound through a blind spot: pledged lots leave the bay but never pass a gate.

No RFID portal or gate sensor sees them; the LiDAR's next scans of the bay are the only
witness. Onset is the moment the last lot is lifted out of its bay.
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse


def inject_blind_spot_outbound(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, lots: list[str],
    exit_xy: tuple[float, float], record: Callable[[Label], None],
) -> Label:
    bays = sorted({warehouse.lots[lot].bay for lot in lots})
    label = Label(
        id=label_id, kind="unauthorized-outbound-blind-spot", fault=False,
        targets=[f"lot:{lot}" for lot in lots] + [f"bay:{bay}" for bay in bays], injected_at=at,
        magnitude=len(lots), magnitude_unit="lots", primary_rules=["inventory-mismatch"],
        secondary_rules=["geofence", "ltv-band", "ltv-disposal"], detail={"via": "blind spot"},
    )
    gone: list[str] = []

    def on_gone(lot: str, t: float) -> None:
        gone.append(lot)
        if len(gone) == len(lots):
            label.onset = t
            record(label)

    env.timeout(at - env.now).callbacks.append(
        lambda _e: warehouse.carry_out_unseen(list(lots), exit_xy, on_gone))
    return label
