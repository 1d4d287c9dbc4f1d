"""ownership-change: a registry transfer of goods that are still pledged.

When a transfer becomes visible, the goods it names count as pledged if the public registry
shows an active registration for them at that moment (by registration id, receipt id, or, when
the transfer carries a fingerprint, a shared receipt, tag or weight signature), or, with
`check_book`, if the collateral book still holds lots of a receipt the transfer names (directly,
through its registration or its fingerprint) pledged to that receipt's loan. The book is its
current state, not its history: it confirms what the registry says, the registry gives timing.
A transfer after the pledge was cancelled and released is silent.
"""

from __future__ import annotations

from typing import Literal

from cangtwin.platform.registry.registry import RegistrationVisible, TransferVisible, registry_of
from cangtwin.platform.rules.base import Finding, FingerprintTolerance, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext


class Params(FingerprintTolerance):
    check_book: bool = True
    match_fingerprint: bool = True


class Entry(RuleEntry):
    kind: Literal["ownership-change"]
    params: Params = Params()


class OwnershipChange(Rule):
    kind = "ownership-change"
    where = "cloud"
    consumes = (TransferVisible,)

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self.quantum = self.params.quantum()

    def _active_registrations(self, event: TransferVisible, ctx: CloudContext) -> list[RegistrationVisible]:
        registry, at = registry_of(ctx), event.visible_at
        found: dict[str, RegistrationVisible] = {}
        if event.registration is not None and registry.status(event.registration, at) == "active":
            found[event.registration] = registry.registration(event.registration)
        if event.receipt is not None:
            found.update((e.registration, e) for e in registry.search(at, receipt=event.receipt))
        if event.fingerprint is not None and self.params.match_fingerprint:
            for other, m in registry.matches(event.fingerprint, at, self.quantum):
                lots = min(len(event.fingerprint.lots), len(other.fingerprint.lots))
                if m.receipt or m.tags or (m.weight and lots >= self.params.weight_min_lots):
                    found[other.registration] = other
        return sorted(found.values(), key=lambda e: e.registration)

    def _pledged_in_book(self, event: TransferVisible, ctx: CloudContext) -> dict[str, tuple[str, list[str]]]:
        """Receipt → (loan, lots still pledged to it), for each receipt the transfer names."""
        named = {event.receipt, event.fingerprint.receipt if event.fingerprint is not None else None}
        if event.registration is not None:
            named.add(registry_of(ctx).registration(event.registration).receipt)
        book, found = ctx.book, {}
        for receipt_id in sorted(r for r in named if r is not None):
            receipt = book.receipts.get(receipt_id)
            lots = [lot for lot in receipt.lots if book.pledges.get(lot) == receipt.loan] if receipt else []
            if lots:
                found[receipt_id] = (receipt.loan, lots)
        return found

    def evaluate(self, event: TransferVisible, ctx: CloudContext) -> list[Finding]:
        registrations = self._active_registrations(event, ctx)
        in_book = self._pledged_in_book(event, ctx) if self.params.check_book else {}
        if not registrations and not in_book:
            return []
        receipts = sorted({e.receipt for e in registrations} | set(in_book))
        targets = tuple(f"pledge:{r}" for r in receipts)
        targets += tuple(f"registration:{e.registration}" for e in registrations)
        for loan, lots in in_book.values():
            targets += (f"loan:{loan}",) + tuple(f"lot:{lot}" for lot in lots)
        return [
            Finding(
                targets=targets,
                event_time=event.visible_at,
                observed_at=event.visible_at,
                summary=(
                    f"transfer {event.transfer} from {event.from_owner} to {event.to_owner} covers goods still "
                    f"pledged ({', '.join(receipts)})"
                ),
                dedupe_key=event.transfer,
                detail={
                    "transfer": event.transfer,
                    "from_owner": event.from_owner,
                    "to_owner": event.to_owner,
                    "registrations": [
                        {"registration": e.registration, "bank": e.bank, "pledgor": e.pledgor, "receipt": e.receipt}
                        for e in registrations
                    ],
                    "book": {r: {"loan": loan, "lots": lots} for r, (loan, lots) in in_book.items()},
                },
            )
        ]
