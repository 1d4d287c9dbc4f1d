"""duplicate-pledge: the same goods fingerprint pledged twice, across banks or warehouses.

When a registration becomes visible, it is compared with every registration active in the
public registry at that moment. A conflict is a shared receipt id, RFID tag, lot id (only at
the same warehouse: lot ids are local) or weight signature (only for receipts of at least
`weight_min_lots` lots: one coil's weight is not unique among thousands). The same bank
re-filing the same borrower's goods at the same warehouse is a renewal, not a duplicate.

The alert names the new registration and every active one it conflicts with, so a ring of
three banks gives alerts that together name all three. Its event time is the moment the new
registration became visible, which is the defined onset.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.registry.fingerprint import FingerprintMatch
from cangtwin.platform.registry.registry import RegistrationVisible, registry_of
from cangtwin.platform.rules.base import Finding, FingerprintTolerance, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext


class Params(FingerprintTolerance):
    match_receipt: bool = True
    match_tags: bool = True
    match_lot_ids: bool = True
    match_weight: bool = True

    @pydantic.model_validator(mode="after")
    def _some_component(self) -> Params:
        if not (self.match_receipt or self.match_tags or self.match_lot_ids or self.match_weight):
            raise ValueError("at least one of match_receipt, match_tags, match_lot_ids, match_weight must be true")
        return self


class Entry(RuleEntry):
    kind: Literal["duplicate-pledge"]
    params: Params = Params()


class DuplicatePledge(Rule):
    kind = "duplicate-pledge"
    where = "cloud"
    consumes = (RegistrationVisible,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self.quantum = self.params.quantum()

    def _conflict(self, new: RegistrationVisible, old: RegistrationVisible, m: FingerprintMatch) -> tuple[str, ...]:
        """The matched components that count between these two registrations (empty: no conflict)."""
        if (new.bank, new.site, new.pledgor) == (old.bank, old.site, old.pledgor):
            return ()  # a renewal or correction by the same bank
        p = self.params
        lots = min(len(new.fingerprint.lots), len(old.fingerprint.lots))
        counts = {
            "receipt": p.match_receipt,
            "tags": p.match_tags,
            "lots": p.match_lot_ids and new.site == old.site,
            "weight": p.match_weight and lots >= p.weight_min_lots,
        }
        return tuple(c for c in m.components if counts[c])

    def evaluate(self, event: RegistrationVisible, ctx: CloudContext) -> list[Finding]:
        registry = registry_of(ctx)
        conflicts = {}
        for other, m in registry.matches(event.fingerprint, event.visible_at, self.quantum):
            if other.registration == event.registration:
                continue
            components = self._conflict(event, other, m)
            if components:
                conflicts[other.registration] = (other, components)
        if not conflicts:
            return []
        involved = sorted([event, *(other for other, _ in conflicts.values())], key=lambda e: e.registration)
        targets = tuple(f"registration:{e.registration}" for e in involved) + tuple(
            sorted({f"pledge:{e.receipt}" for e in involved})
        )
        banks = sorted({e.bank for e in involved})
        return [
            Finding(
                targets=targets,
                event_time=event.visible_at,
                observed_at=event.visible_at,
                summary=(
                    f"registration {event.registration} ({event.bank}, {event.site}) pledges goods already "
                    f"pledged under {', '.join(sorted(conflicts))}; banks involved: {', '.join(banks)}"
                ),
                dedupe_key="+".join(e.registration for e in involved),
                detail={
                    "registration": event.registration,
                    "conflicts": {reg: list(components) for reg, (_, components) in sorted(conflicts.items())},
                    "registrations": [
                        {"registration": e.registration, "bank": e.bank, "site": e.site, "pledgor": e.pledgor,
                         "receipt": e.receipt, "visible_at": e.visible_at}
                        for e in involved
                    ],
                },
            )
        ]
