"""Load checks: pair a truck's two weighings with the lots that crossed the gate.

A truck is weighed on the way in and on the way out; the difference is what it brought or
took. At an outbound passage the lots are those its RFID tags named; the book says what they
should weigh. Pairing is by order: the two latest tickets before the passage. That is exact
while one truck at a time uses the weighbridge, which the single-plate sites here do; with
several trucks interleaving on one plate the pairing needs the plate camera's plate reads.
"""

from __future__ import annotations

from cangtwin.platform.edge.weighing import WeighingFuser, WeighTicket
from cangtwin.platform.records import GateEvent, LoadCheck
from cangtwin.platform.rules.base import BookView


class LoadChecker:
    def __init__(self, site: str, id_prefix: str | None = None) -> None:
        self.site = site
        self.id_prefix = id_prefix or site
        self._fusers: dict[str, WeighingFuser] = {}
        self._tickets: list[tuple[WeighTicket, float]] = []  # (ticket, division_kg), since the last check
        self._count = 0

    def add_reading(self, device: str, division_kg: float, clock: float, mass_kg: float, stable: bool) -> None:
        fuser = self._fusers.setdefault(device, WeighingFuser(device, division_kg))
        ticket = fuser.add(clock, mass_kg, stable)
        if ticket is not None and ticket.gross_kg is not None:
            self._tickets.append((ticket, division_kg))

    def on_gate_event(self, event: GateEvent, book: BookView) -> LoadCheck | None:
        """A check for an outbound passage whose lots the book knows, once two weighings are in."""
        if event.direction != "out":
            return None
        tickets, self._tickets = self._tickets[-2:], []
        known = [lot for lot in event.lots if lot in book.mass_by_lot]
        if len(tickets) < 2 or not known:
            return None
        (first, division), (second, _) = tickets
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
