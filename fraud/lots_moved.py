"""lots-moved: a forklift driver moves stored lots to another bay or out onto the floor elsewhere.

A Mesa agent whose behaviour is the act: at `at` the driver takes a forklift from the pool and,
one lot after another, drives to it, lifts it, and sets it down in `to_bay` or at the floor point
`to_xy` (e.g. in the yard, out of the goods' zone, ready to be taken away later). Nothing leaves
through a gate and no release exists. The world changes only by the forklift's drives (which its
positioning tag reports) and the lots' new places (which cameras and bay scans can see).

Ground truth (the site's time zone and working hours, the scenario's pledges):
- onset = the first moment the forklift is inside a bay holding pledged goods, from the drive's
  route (x first, then y, as the twin's aisles run); None if it never enters one;
- the primary rule is `geofence` when pledged lots are moved outside working hours, or out of
  their zone; a move of pledged goods between bays of one zone in working hours is the keeper's
  daily work, and the label names no rule. The bays' scans see the book out of date either way
  (`inventory-mismatch` is secondary).
Minimum magnitude: one pledged lot, moved outside working hours or out of its zone (from a bay
whose lots are all pledged: `geofence` cannot tell a pickup there from an honest outbound's).
"""

from __future__ import annotations

from typing import Callable, Iterator

import mesa
import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.site import Bay
from cangtwin.twin.warehouse import Forklift, Warehouse

MINIMUM_LOTS = 1


def first_entry(start: tuple[float, float], end: tuple[float, float], t0: float, t1: float,
                bays: list[Bay]) -> float | None:
    """When a forklift driving start → end over [t0, t1] (x first, then y) first stands inside one of `bays`."""
    legs = [(start, (end[0], start[1])), ((end[0], start[1]), end)]
    length = sum(abs(b[0] - a[0]) + abs(b[1] - a[1]) for a, b in legs)
    if length == 0:
        return None
    speed, travelled, found = length / (t1 - t0), 0.0, []
    for a, b in legs:
        leg = abs(b[0] - a[0]) + abs(b[1] - a[1])
        for bay in bays:
            r = bay.rect
            # The leg is axis-parallel: the fraction of it inside the rectangle is one interval.
            lo, hi = 0.0, 1.0
            for axis, (r0, r1) in enumerate(((r.x0, r.x1), (r.y0, r.y1))):
                d = b[axis] - a[axis]
                if d == 0:
                    if not r0 <= a[axis] <= r1:
                        lo, hi = 1.0, 0.0
                    continue
                f0, f1 = sorted(((r0 - a[axis]) / d, (r1 - a[axis]) / d))
                lo, hi = max(lo, f0), min(hi, f1)
            if leg > 0 and lo <= hi:
                found.append(t0 + (travelled + lo * leg) / speed)
        travelled += leg
    return min(found) if found else None


class ForkliftDriver(mesa.Agent):
    """Moves lots when told to, and remembers every drive its forklift made meanwhile."""

    def __init__(self, warehouse: Warehouse, name: str) -> None:
        super().__init__(warehouse.model)
        self.name = name
        self.warehouse = warehouse
        self.forklift: Forklift | None = None
        self.used: str | None = None  # the forklift it took
        self.drives: list[tuple[tuple, tuple, float, float]] = []
        warehouse.signals.forklift_move.append(self._saw_drive)

    def _saw_drive(self, forklift: str, start: tuple, end: tuple, t0: float, t1: float) -> None:
        if self.forklift is not None and forklift == self.forklift.name:
            self.drives.append((tuple(start), tuple(end), t0, t1))

    def move(self, lots: list[str], to_bay: str | None, to_xy: tuple[float, float] | None,
             done: Callable[[], None]) -> Iterator[simpy.Event]:
        self.forklift = yield self.warehouse.forklifts.get()
        self.used = self.forklift.name
        for n, lot in enumerate(lots):
            # Lots set on the floor stand side by side, 2 m apart.
            spot = None if to_xy is None else (to_xy[0] + 2.0 * n, to_xy[1])
            yield from self.warehouse.move_lot(self.forklift, lot, to_bay, spot)
        yield self.warehouse.forklifts.put(self.forklift)
        self.forklift = None
        done()


def inject_lots_moved(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, lots: list[str],
    to_bay: str | None, to_xy: tuple[float, float] | None, pledged: list[str], record: Callable[[Label], None],
) -> Label:
    """`pledged`: the lots pledged and unreleased when the driver sets off (the scenario's loans)."""
    driver = ForkliftDriver(warehouse, f"driver-{label_id}")
    bays = {b.id: b for b in warehouse.spec.bays}
    origin = {lot: warehouse.lots[lot].bay for lot in lots}
    pledged_bays = sorted({warehouse.lots[lot].bay for lot in pledged if warehouse.lots[lot].bay})
    destination_zone = bays[to_bay].zone if to_bay else next(
        (name for name, rect in warehouse.spec.zones.items() if rect.contains(*to_xy)), None)
    moved_pledged = [lot for lot in lots if lot in pledged]
    label = Label(
        id=label_id, kind="lots-moved", fault=False,
        targets=[f"lot:{lot}" for lot in lots] + [f"bay:{b}" for b in pledged_bays],
        injected_at=at, magnitude=len(moved_pledged), magnitude_unit="pledged lots", primary_rules=[],
        secondary_rules=["inventory-mismatch"],
        detail={"to": to_bay or list(to_xy), "to_zone": destination_zone, "from": origin,
                "minimum_magnitude": MINIMUM_LOTS},
    )

    def done() -> None:
        entries = [first_entry(s, e, t0, t1, [bays[b] for b in pledged_bays]) for s, e, t0, t1 in driver.drives]
        entries = [t for t in entries if t is not None]
        label.onset = min(entries) if entries else None
        label.targets += [f"device:{d.id}" for d in warehouse.spec.devices
                          if d.type == "positioning-tag" and d.forklift == driver.used]
        out_of_zone = any(bays[origin[lot]].zone != destination_zone for lot in moved_pledged)
        after_hours = label.onset is not None and not warehouse.in_working_hours(label.onset)
        label.detail.update({"after_hours": after_hours, "out_of_zone": out_of_zone, "finished_at": env.now})
        if moved_pledged and (after_hours or out_of_zone):
            label.primary_rules = ["geofence"]
        record(label)

    def start(_event: simpy.Event) -> None:
        env.process(driver.move(list(lots), to_bay, to_xy, done))

    env.timeout(at - env.now).callbacks.append(start)
    return label
