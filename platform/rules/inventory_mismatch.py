"""inventory-mismatch: a bay's LiDAR volume differs from what the book says is stored there.

The book (via `BookSync`) places each lot in a bay (`bay_by_lot`) with its envelope volume from
the receipt (`volume_by_lot`); the LiDAR measures the envelope of whatever stands in the bay.
A difference beyond both tolerances (relative to the book's volume, and absolute, so an almost
empty bay is not judged on noise) for `confirm_scans` consecutive scans of the bay raises an
alert on the bay and its pledged lots. Lots the bank has no claim on (released, and with
`only_pledged_bays` never pledged) may leave at any time: a bay short of no more than those is
as booked, since they are loaded onto the truck before the gate tells the book they left. A
lot the book moves to another bay (an authorized move, booked before the forklift goes) may
still stand in its old bay and be missing from its new one for `move_grace_s` after the scan
that first sees the move on the book. A change of the book for the bay (an authorized move,
a release) restarts the count, since the scan that raced the change proves nothing; a scan
too occluded to measure (`max_occluded_fraction`) neither counts nor clears, and is left to
lidar-tamper. Scans are judged in device time; a scan older than the last one of its bay is
ignored. A scan that starts or extends an unconfirmed run asks for a rescan (`lidar_rescan`),
so the confirming scans need not wait for the next period.

Limits: while free lots wait in a bay, a pledged lot of no more volume taken from it unseen by
the gate is caught only once the free ones leave and the book drops them; a lot booked to move
and taken away instead is caught once its grace is over.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.perception.lidar_volume import BayScan
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import EdgeContext


class Params(StrictModel):
    rel_tolerance: float = pydantic.Field(default=0.08, gt=0, le=1)
    abs_tolerance_m3: float = pydantic.Field(default=0.3, ge=0, le=1000)
    confirm_scans: int = pydantic.Field(default=2, ge=1, le=100)
    max_occluded_fraction: float = pydantic.Field(default=0.5, gt=0, le=1)
    only_pledged_bays: bool = True
    move_grace_s: float = pydantic.Field(default=300.0, ge=0, le=86400)


class Entry(RuleEntry):
    kind: Literal["inventory-mismatch"]
    params: Params = Params()


class _BayState:
    __slots__ = ("last_at", "booked", "streak", "since", "alerted", "device", "unconfirmed")

    def __init__(self) -> None:
        self.last_at = float("-inf")
        # Volume on the book, of which free to leave, and booked out but maybe not yet gone.
        self.booked: tuple[float, float, float] | None = None
        self.streak = 0
        self.since = 0.0
        self.alerted = False
        self.device = ""
        self.unconfirmed = False  # the last scan started or extended a run not yet confirmed


class InventoryMismatch(Rule):
    kind = "inventory-mismatch"
    consumes = (BayScan,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._bays: dict[str, _BayState] = {}
        self._placed: dict[str, tuple[str, str | None, float]] = {}  # lot → (bay on the book, bay before, moved at)

    def _follow_moves(self, book, at: float) -> None:
        """Note lots whose bay on the book changed since the last scan; the first sighting is no move."""
        for lot, bay in book.bay_by_lot.items():
            known = self._placed.get(lot)
            if known is None:
                self._placed[lot] = (bay, None, float("-inf"))
            elif known[0] != bay:
                self._placed[lot] = (bay, known[0], at)

    def wants_rescan(self, device: str) -> bool:
        return any(state.unconfirmed and state.device == device for state in self._bays.values())

    def evaluate(self, event: BayScan, ctx: EdgeContext) -> list[Finding]:
        p, book = self.params, ctx.book
        state = self._bays.setdefault(event.bay, _BayState())
        state.unconfirmed = False
        if event.at <= state.last_at or event.occluded_fraction > p.max_occluded_fraction:
            return []
        state.last_at, state.device = event.at, event.device
        self._follow_moves(book, event.at)
        lots = sorted(lot for lot, bay in book.bay_by_lot.items() if bay == event.bay)
        pledged = [lot for lot in lots if lot in book.pledged and lot not in book.released]
        moving = event.at - p.move_grace_s
        expected = sum(book.volume_by_lot.get(lot, 0.0) for lot in lots)
        free = sum(book.volume_by_lot.get(lot, 0.0) for lot in lots
                   if lot in book.released or (p.only_pledged_bays and lot not in book.pledged)
                   or self._placed[lot][2] > moving)  # on its way in
        leaving = sum(book.volume_by_lot.get(lot, 0.0) for lot, (bay, before, at) in self._placed.items()
                      if before == event.bay and at > moving and book.bay_by_lot.get(lot) == bay)
        booked = (expected, free, leaving)
        if state.booked is None or max(abs(a - b) for a, b in zip(booked, state.booked)) > 1e-9:
            state.booked, state.streak, state.alerted = booked, 0, False
        # The nearest volume the book allows: from all but the lots free to be gone, to all and
        # the lots booked out that may not have left yet.
        allowed = min(max(event.volume_m3, expected - free), expected + leaving)
        difference = event.volume_m3 - allowed
        beyond = abs(difference) > p.abs_tolerance_m3 and abs(difference) > p.rel_tolerance * allowed
        if not beyond:
            state.streak, state.alerted = 0, False
            return []
        state.streak += 1
        if state.streak == 1:
            state.since = event.at
        bank_cares = bool(pledged) or not p.only_pledged_bays
        state.unconfirmed = state.streak < p.confirm_scans and bank_cares
        if state.streak < p.confirm_scans or state.alerted or not bank_cares:
            return []
        state.alerted = True
        side = "more" if difference > 0 else "less"
        return [
            Finding(
                targets=(f"bay:{event.bay}",) + tuple(f"lot:{lot}" for lot in pledged),
                event_time=event.at,
                observed_at=event.received_at,
                summary=(
                    f"bay {event.bay}: LiDAR measures {event.volume_m3:.2f} m³, {abs(difference):.2f} m³ {side} "
                    f"than the {allowed:.2f} m³ the book allows, for {state.streak} scans"
                ),
                dedupe_key=f"{event.bay}@{state.since:.3f}",
                detail={
                    "bay": event.bay,
                    "device": event.device,
                    "measured_m3": event.volume_m3,
                    "expected_m3": round(expected, 4),
                    "free_m3": round(free, 4),
                    "count_estimate": event.count_estimate,
                    "lots_on_book": len(lots),
                    "since": state.since,
                },
            )
        ]
