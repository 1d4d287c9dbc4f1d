"""substitution / hollow-stack: a pledged lot is swapped for one that looks the same but weighs less.

以次充好 (a cheaper, lighter grade) or 空心垛 (a stack that is hollow inside): the envelope, the
position and the RFID tag stay; only the mass of the body in the physical world changes. The
LiDAR cannot see it; the weighbridge can, the next time the lot crosses it.
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse



def minimum_deficit_kg(declared_kg: float, division_kg: float) -> float:
    """The smallest mass deficit that must be caught: beyond two weighings' MPE and rounding
    (4e) plus 0.5 % for masses rounded on receipts. For a 2.5 t copper bundle on a 50 kg
    division weighbridge that is 212.5 kg (8.5 %); for a 20 t coil, 300 kg (1.5 %)."""
    return 4 * division_kg + 0.005 * declared_kg


def inject_substitution(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, lot: str, mass_factor: float,
    variant: str, record: Callable[[Label], None],
) -> Label:
    truth = warehouse.lots[lot]
    label = Label(
        id=label_id, kind=variant, fault=False, targets=[f"lot:{lot}"], injected_at=at, onset=at,
        magnitude=round(1 - mass_factor, 6), magnitude_unit="mass deficit (fraction)",
        primary_rules=["substitution-or-hollow"], secondary_rules=["weighbridge-anomaly"],
        window_s=7 * 86400.0, detail={"true_mass_before_kg": truth.mass_kg},
    )

    def swap(_event: simpy.Event) -> None:
        warehouse.swap_mass(lot, truth.mass_kg * mass_factor)
        record(label)

    env.timeout(at - env.now).callbacks.append(swap)
    return label
