"""lidar-occluded: a sheet is hung in front of a LiDAR mount, between the sensor and its bays.

Acts on the world only: a static square board of side `size_m` (2 cm thick, no mass: it hangs
from the roof) is put `below_m` under the sensor. The LiDAR's rays then hit the board instead of
the goods; lidar-tamper sees returns from a surface higher than any goods may stand, or the
bays' returns dropping, on two consecutive scans. Hung under the `small` site's ceiling mount (over the aisle between
bays) a board shadows the nearest bay: from `MINIMUM_SIZE_M` = 0.75 m at 1 m below the sensor
its returns fall under half their baseline (0.75 m: 38 %, 1 m: 25 %); a 0.6 m board leaves more
than half, and is missed. Detection takes two scans after the board is up: the next periodic
one, then the rescan the edge commands at once; at most a 60 s period and a 2.3 s sweep.
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import Shape

MINIMUM_SIZE_M = 0.75
THICKNESS_M = 0.02


def inject_lidar_occluder(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, lidar: str, size_m: float,
    below_m: float, record: Callable[[Label], None],
) -> Label:
    mount = next(d for d in warehouse.spec.devices if d.id == lidar)
    label = Label(
        id=label_id, kind="lidar-occluded", fault=False,
        targets=[f"device:{lidar}"] + [f"bay:{bay}" for bay in mount.bays], injected_at=at, onset=at,
        magnitude=size_m, magnitude_unit="m (side of the board)", primary_rules=["lidar-tamper"],
        secondary_rules=["inventory-mismatch"], window_s=900.0, detail={"below_m": below_m, "minimum_magnitude": MINIMUM_SIZE_M},
    )

    def hang(_e: simpy.Event) -> None:
        x, y, z = mount.position
        body = warehouse.world.add_goods(Shape("box", (size_m, size_m, THICKNESS_M)), 0.0,
                                         (x, y, z - below_m - THICKNESS_M))
        label.detail["body"] = body
        record(label)

    env.timeout(at - env.now).callbacks.append(hang)
    return label
