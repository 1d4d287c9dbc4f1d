"""Load checks: pair a truck's two weighings with the lots that crossed the gate.

A truck is weighed on the way in and on the way out; the difference is what it brought or
took. At an outbound passage the lots are those its RFID tags named; the book says what they
should weigh. Each weighing carries the plate its scale's plate camera saw, so the two weighings
paired are those of one truck, the one whose second weighing began last before the passage, even
while several trucks use several scales at once. A scale without plate reads falls back to order:
the two latest weighings, exact while one truck at a time uses the weighbridge.
"""

from __future__ import annotations

import bisect

from cangtwin.platform.edge.weighing import WeighingFuser, WeighTicket
from cangtwin.platform.records import GateEvent, LoadCheck
from cangtwin.platform.rules.base import BookView


class LoadChecker:
    def __init__(self, site: str, id_prefix: str | None = None) -> None:
        self.site = site
        self.id_prefix = id_prefix or site
        self._fusers: dict[str, WeighingFuser] = {}
        self._views: dict[str, list[tuple[float, str]]] = {}  # scale device → (clock, plate in view)
        self._tickets: list[tuple[WeighTicket, float, str]] = []  # (ticket, division_kg, plate), unpaired
        self._count = 0

    def add_vehicle(self, device: str, clock: float, plate: str) -> None:
        """The scale's plate camera: from `clock` on, `plate` stands on the plate ("" once clear)."""
        bisect.insort(self._views.setdefault(device, []), (clock, plate))

    def add_reading(self, device: str, division_kg: float, clock: float, mass_kg: float, stable: bool) -> None:
        fuser = self._fusers.setdefault(device, WeighingFuser(device, division_kg))
        ticket = fuser.add(clock, mass_kg, stable)
        if ticket is not None and ticket.gross_kg is not None:
            self._tickets.append((ticket, division_kg, self._plate(device, ticket)))

    def _plate(self, device: str, ticket: WeighTicket) -> str:
        """The plate in view as the gross reading began (the reads may arrive after the readings)."""
        views = self._views.get(device, [])
        at = next((p.start for p in ticket.plateaus if p.mass_kg == ticket.gross_kg), ticket.started_at)
        i = bisect.bisect_right(views, (at, "\uffff"))
        del views[: max(0, i - 1)]  # tickets come in clock order per scale
        return views[0][1] if i else ""

    def _take_pair(self, before: float) -> list[tuple[WeighTicket, float, str]]:
        """The leaving truck's two weighings, removed from the unpaired ones."""
        done = [t for t in self._tickets if t[0].started_at <= before]
        plated = [t for t in done if t[2]]
        if not plated:
            pair, self._tickets = self._tickets[-2:], []
            return pair
        counts: dict[str, int] = {}
        for _, _, plate in plated:
            counts[plate] = counts.get(plate, 0) + 1
        twice = [t for t in plated if counts[t[2]] >= 2]
        if not twice:
            return []
        plate = max(twice, key=lambda t: t[0].started_at)[2]
        pair = [t for t in self._tickets if t[2] == plate][-2:]
        self._tickets = [t for t in self._tickets if t[2] != plate]
        return pair

    def on_gate_event(self, event: GateEvent, book: BookView) -> LoadCheck | None:
        """A check for an outbound passage whose lots the book knows, once two weighings are in."""
        if event.direction != "out":
            return None
        tickets = self._take_pair(event.event_time)
        known = [lot for lot in event.lots if lot in book.mass_by_lot]
        if len(tickets) < 2 or not known:
            return None
        (first, division, _), (second, _, _) = tickets
        self._count += 1
        return LoadCheck(
            id=f"{self.id_prefix}-L{self._count:06d}",
            site=self.site,
            gate_event=event.id,
            direction=event.direction,
            lots=tuple(known),
            declared_kg=round(sum(book.mass_by_lot[lot] for lot in known), 3),
            net_kg=abs(first.gross_kg - second.gross_kg),
            grosses_kg=(first.gross_kg, second.gross_kg),
            division_kg=division,
            event_time=event.event_time,
            received_at=event.received_at,
        )
