"""pledge-ring: a Qingdao-style ring, the same goods pledged to several banks at once.

At Qingdao (2014) the same metal secured loans at several banks, through receipts issued by
the warehouse that held it and receipts from other warehouses that claimed it. Here the goods
behind one genuine receipt are pledged again, once per copy: each copy is a fresh receipt
filed in the national registry by another bank. A copy from the genuine receipt's warehouse
lists the very lots; a copy from another warehouse lists the same goods (tags, weights,
dimensions) under that warehouse's own lot numbers, as a forged receipt would.

Each copy is its own fraud with its own label; its onset is when its registration becomes
visible, after the registry's lag (docs/matching.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.platform.registry.fingerprint import Fingerprint, LotGoods
from cangtwin.platform.registry.registry import Filing, PledgeRegistry


@dataclass(frozen=True)
class RingCopy:
    label_id: str
    bank: str
    site: str  # the warehouse whose receipt it is
    at: float


def claimed_goods(original: Fingerprint, receipt: str, site: str, original_site: str) -> Fingerprint:
    """What a copy's receipt lists: the original lots, renumbered `<site>.<receipt>-NN` when the
    receipt comes from another warehouse (which has no such lots of its own)."""
    if site == original_site:
        return Fingerprint(receipt, original.lots)
    lots = tuple(
        LotGoods(f"{site}.{receipt}-{n:02d}", g.tag, g.commodity, g.mass_kg, g.dims_m)
        for n, g in enumerate(original.lots, 1)
    )
    return Fingerprint(receipt, lots)


def inject_pledge_ring(
    ring_id: str,
    registry: PledgeRegistry,
    original: Fingerprint,
    original_site: str,
    pledgor: str,
    copies: list[RingCopy],
    record: Callable[[Label], None],
    schedule: Callable[[float, Callable[[], None]], None],
) -> list[Label]:
    labels = []
    for copy in copies:
        registration, receipt = f"REG-{copy.label_id}", f"WR-{copy.label_id}"
        goods = claimed_goods(original, receipt, copy.site, original_site)
        label = Label(
            id=copy.label_id, kind="pledge-ring", fault=False,
            targets=[f"registration:{registration}", f"pledge:{receipt}"],
            injected_at=copy.at, onset=copy.at + registry.lag_s, magnitude=len(goods.lots), magnitude_unit="lots",
            primary_rules=["duplicate-pledge"],
            detail={"ring": ring_id, "bank": copy.bank, "warehouse": copy.site, "copies": original.receipt},
        )

        def file(copy: RingCopy = copy, label: Label = label, registration: str = registration,
                 goods: Fingerprint = goods) -> None:
            registry.file(Filing(registration, copy.bank, pledgor, copy.site, goods.receipt, goods, copy.at))
            record(label)

        schedule(copy.at, file)
        labels.append(label)
    return labels
