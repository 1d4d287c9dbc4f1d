"""ownership-transfer: the owner sells goods held in the warehouse, filing the transfer in the registry.

It acts where a real seller and buyer act: a `Transfer` is filed in the national registry (中登网),
naming the goods by the warehouse receipt they are held under (电子仓单, the title document)
and their fingerprint (lot ids, tags, weights). Lots under no receipt are sold under a fresh
receipt the warehouse issues for them. One transfer per receipt. Nobody edits the bank's book.

Sold while pledged, that is a fraud on the bank: the buyer takes goods that secure a loan.
Ground truth from the scenario's pledges when the transfer is filed:
- magnitude = the pledged lots sold; minimum 1 (the label's primary rule is `ownership-change`);
- selling lots that secure no loan is honest, and the label names no rule;
- onset = the moment the transfer becomes visible in the registry, after its lag (as for a
  duplicate pledge, docs/matching.md).
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.platform.registry.fingerprint import Fingerprint, LotGoods
from cangtwin.platform.registry.registry import PledgeRegistry, Transfer

MINIMUM_LOTS = 1


def inject_ownership_transfer(
    label_id: str,
    registry: PledgeRegistry,
    at: float,
    goods: list[LotGoods],
    held_under: Callable[[], dict[str, tuple[str, str]]],
    from_owner: str,
    to_owner: str,
    record: Callable[[Label], None],
    schedule: Callable[[float, Callable[[], None]], None],
) -> None:
    """`held_under()`: lot → (receipt, loan) for the lots pledged and unreleased at the moment of filing."""

    def file() -> None:
        pledges = held_under()
        by_receipt: dict[str, list[LotGoods]] = {}
        for lot in goods:
            receipt = pledges[lot.lot][0] if lot.lot in pledges else f"WR-{label_id}"
            by_receipt.setdefault(receipt, []).append(lot)
        transfers = [
            Transfer(f"TR-{label_id}" if len(by_receipt) == 1 else f"TR-{label_id}-{n}", from_owner, to_owner, at,
                     fingerprint=Fingerprint(receipt, tuple(lots)))
            for n, (receipt, lots) in enumerate(sorted(by_receipt.items()), 1)
        ]
        pledged = sorted(lot.lot for lot in goods if lot.lot in pledges)
        for transfer in transfers:
            registry.transfer(transfer)
        record(Label(
            id=label_id, kind="ownership-transfer", fault=False,
            targets=[f"lot:{lot.lot}" for lot in goods]
            + [f"pledge:{r}" for r in sorted({pledges[lot][0] for lot in pledged})]
            + [f"loan:{loan}" for loan in sorted({pledges[lot][1] for lot in pledged})],
            injected_at=at, onset=at + registry.lag_s, magnitude=len(pledged), magnitude_unit="pledged lots",
            primary_rules=["ownership-change"] if len(pledged) >= MINIMUM_LOTS else [],
            detail={"transfers": [t.transfer for t in transfers], "from_owner": from_owner, "to_owner": to_owner,
                    "pledged_lots": pledged, "minimum_magnitude": MINIMUM_LOTS},
        ))

    schedule(at, file)
