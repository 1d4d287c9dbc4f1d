"""duplicate-pledge: the borrower pledges goods that already secure a loan to a second bank.

It acts where the fraud acts: a second registration is filed in the national registry with a
fresh receipt for the same goods (the same tags, lots and weights). Onset is the moment that
second registration becomes publicly visible, after the registry's lag.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.platform.registry.fingerprint import Fingerprint
from cangtwin.platform.registry.registry import Filing, PledgeRegistry


def inject_duplicate_pledge(
    label_id: str,
    registry: PledgeRegistry,
    at: float,
    original: Fingerprint,
    bank: str,
    pledgor: str,
    site: str,
    record: Callable[[Label], None],
    schedule: Callable[[float, Callable[[], None]], None],
) -> Label:
    registration, receipt = f"REG-{label_id}", f"WR-{label_id}"
    label = Label(
        id=label_id, kind="duplicate-pledge", fault=False,
        targets=[f"registration:{registration}", f"pledge:{receipt}"],
        injected_at=at, onset=at + registry.lag_s, magnitude=len(original.lots), magnitude_unit="lots",
        primary_rules=["duplicate-pledge"], detail={"bank": bank, "copies": original.receipt},
    )

    def file() -> None:
        registry.file(Filing(registration, bank, pledgor, site, receipt, Fingerprint(receipt, original.lots), at))
        record(label)

    schedule(at, file)
    return label
