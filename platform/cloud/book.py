"""The collateral book: lots, loans, pledges, warehouse receipts (电子仓单) and releases.

Invariants: a lot is pledged to at most one loan; a released lot leaves its pledge; a lot that
left the warehouse cannot be pledged. Violations raise BookError and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BookError(ValueError):
    """A request that would break an invariant of the book.

    `field` names the argument at fault (`loan`, `receipt`, `lots`, `lots[2]`), so an API can say
    which part of a request was wrong; `kind` is `unknown` (no such thing), `conflict` (the book's
    state forbids it) or `invalid` (the request contradicts itself).
    """

    def __init__(self, message: str, field: str | None = None, kind: str = "conflict") -> None:
        super().__init__(message)
        self.field, self.kind = field, kind


@dataclass
class Lot:
    id: str
    tag: str
    site: str
    commodity: str
    mass_kg: float
    bay: str | None
    present: bool = True
    volume_m3: float | None = None  # outer envelope, as measured at inbound and written on the receipt


@dataclass
class Loan:
    id: str
    bank: str
    borrower: str
    amount_cny: float


@dataclass
class Receipt:
    """An electronic warehouse receipt: the lots it represents, and the loan it secures."""

    id: str
    loan: str
    lots: tuple[str, ...]


@dataclass
class CollateralBook:
    lots: dict[str, Lot] = field(default_factory=dict)
    loans: dict[str, Loan] = field(default_factory=dict)
    pledges: dict[str, str] = field(default_factory=dict)  # lot → loan
    receipts: dict[str, Receipt] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    version: int = 0

    def add_lot(self, lot: Lot) -> None:
        if lot.id in self.lots:
            raise BookError(f"lot {lot.id} already exists")
        if any(other.tag == lot.tag for other in self.lots.values()):
            raise BookError(f"tag {lot.tag} already belongs to another lot")
        self.lots[lot.id] = lot
        self.version += 1

    def open_loan(self, loan: Loan) -> None:
        if loan.id in self.loans:
            raise BookError(f"loan {loan.id} already exists")
        self.loans[loan.id] = loan
        self.version += 1

    def pledge(self, loan_id: str, lot_ids: list[str], receipt_id: str) -> Receipt:
        """Pledge lots to a loan under one receipt; all or nothing."""
        if loan_id not in self.loans:
            raise BookError(f"unknown loan {loan_id}", "loan", "unknown")
        if receipt_id in self.receipts:
            raise BookError(f"receipt {receipt_id} already issued", "receipt")
        for i, lot_id in enumerate(lot_ids):
            lot = self.lots.get(lot_id)
            if lot is None:
                raise BookError(f"unknown lot {lot_id}", f"lots[{i}]", "unknown")
            if not lot.present:
                raise BookError(f"lot {lot_id} is no longer in the warehouse", f"lots[{i}]")
            if lot_id in self.pledges:
                raise BookError(f"lot {lot_id} is already pledged to loan {self.pledges[lot_id]}", f"lots[{i}]")
        _no_repeats(lot_ids)
        for lot_id in lot_ids:
            self.pledges[lot_id] = loan_id
            self.released.discard(lot_id)
        receipt = Receipt(receipt_id, loan_id, tuple(lot_ids))
        self.receipts[receipt_id] = receipt
        self.version += 1
        return receipt

    def release(self, loan_id: str, lot_ids: list[str]) -> None:
        """A release order (解押): the lots leave the pledge and may leave the warehouse."""
        for i, lot_id in enumerate(lot_ids):
            if self.pledges.get(lot_id) != loan_id:
                raise BookError(f"lot {lot_id} is not pledged to loan {loan_id}", f"lots[{i}]")
        _no_repeats(lot_ids)  # a repeat would be deleted twice, half-way through the change
        for lot_id in lot_ids:
            del self.pledges[lot_id]
            self.released.add(lot_id)
        self.version += 1

    def record_outbound(self, lot_ids: list[str]) -> None:
        """Goods seen leaving: they are no longer present, whatever the pledge says."""
        changed = False
        for lot_id in lot_ids:
            lot = self.lots.get(lot_id)
            if lot is not None and lot.present:
                lot.present = False
                changed = True
        if changed:
            self.version += 1

    def check(self) -> None:
        """Assert the invariants; used by tests and after recovery."""
        for lot_id, loan_id in self.pledges.items():
            if lot_id not in self.lots or loan_id not in self.loans:
                raise BookError(f"pledge {lot_id}→{loan_id} names an unknown lot or loan")
            if lot_id in self.released:
                raise BookError(f"lot {lot_id} is both pledged and released")


def _no_repeats(lot_ids: list[str]) -> None:
    seen: set[str] = set()
    for i, lot_id in enumerate(lot_ids):
        if lot_id in seen:
            raise BookError(f"lot {lot_id} is listed twice", f"lots[{i}]", "invalid")
        seen.add(lot_id)
