"""Mark-to-market (盯市): value each loan's pledged goods at current prices and place it in an LTV band.

Pure functions over the collateral book and a price map, so a valuation can be recomputed from
the evidence it cites. Only pledged lots still in the warehouse count as collateral: goods that
left are not under supervision, whatever the pledge says. A loan whose goods include a commodity
with no price gets no LTV (`ltv is None`): a missing price is the price-stale rule's alarm, not a
reason to call a margin.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cangtwin.platform.cloud.book import CollateralBook

Band = Literal["ok", "warning", "margin-call", "disposal"]
# Best to worst. 追加保证金 = margin call, 处置 = disposal of the collateral.
BANDS: tuple[Band, ...] = ("ok", "warning", "margin-call", "disposal")
RANK: dict[Band, int] = {band: i for i, band in enumerate(BANDS)}


@dataclass(frozen=True)
class Thresholds:
    """LTV at or above which a loan is in each band; strictly increasing."""

    warning: float = 0.75
    margin_call: float = 0.80
    disposal: float = 0.90

    def __post_init__(self) -> None:
        if not 0 < self.warning < self.margin_call < self.disposal:
            raise ValueError(
                f"LTV thresholds must satisfy 0 < warning < margin_call < disposal, got "
                f"{self.warning}, {self.margin_call}, {self.disposal}"
            )


def band_for(ltv: float, thresholds: Thresholds) -> Band:
    if ltv >= thresholds.disposal:
        return "disposal"
    if ltv >= thresholds.margin_call:
        return "margin-call"
    if ltv >= thresholds.warning:
        return "warning"
    return "ok"


def band_with_hysteresis(ltv: float, current: Band, thresholds: Thresholds, hysteresis: float) -> Band:
    """The band after a new LTV: worsen at once, improve only once LTV is `hysteresis` below the line."""
    raw = band_for(ltv, thresholds)
    if RANK[raw] >= RANK[current]:
        return raw
    sticky = band_for(ltv + hysteresis, thresholds)
    return BANDS[max(RANK[raw], min(RANK[current], RANK[sticky]))]


def loan_to_value(amount_cny: float, value_cny: float) -> float:
    """Loan amount over collateral value; infinite when a loan is outstanding against nothing."""
    if amount_cny <= 0:
        return 0.0
    return amount_cny / value_cny if value_cny > 0 else math.inf


@dataclass(frozen=True)
class LoanMark:
    loan: str
    amount_cny: float
    value_cny: float  # of the priced, present lots, after haircuts
    ltv: float | None  # None when some commodity has no price
    band: Band | None
    lots: tuple[str, ...]  # pledged and present
    absent: tuple[str, ...] = ()  # pledged but seen leaving: no value
    unpriced: tuple[str, ...] = ()  # commodities without a price
    prices: dict[str, float] = field(default_factory=dict)  # commodity → CNY/t used


def pledges_by_loan(book: CollateralBook) -> dict[str, list[str]]:
    """Loan → its pledged lot ids, sorted."""
    by_loan: dict[str, list[str]] = defaultdict(list)
    for lot_id, loan_id in sorted(book.pledges.items()):
        by_loan[loan_id].append(lot_id)
    return dict(by_loan)


def pledged_commodities(book: CollateralBook) -> dict[str, list[str]]:
    """Commodity → loans it backs (pledged lots still present), sorted: what needs a live price."""
    loans: dict[str, set[str]] = defaultdict(set)
    for lot_id, loan_id in book.pledges.items():
        lot = book.lots[lot_id]
        if lot.present:
            loans[lot.commodity].add(loan_id)
    return {commodity: sorted(ids) for commodity, ids in sorted(loans.items())}


def mark_loan(
    book: CollateralBook,
    loan_id: str,
    lot_ids: Iterable[str],
    prices: Mapping[str, float],
    thresholds: Thresholds,
    haircuts: Mapping[str, float] | None = None,
) -> LoanMark:
    """Value = Σ mass_t × price × (1 − haircut) over present lots; LTV = amount / value."""
    haircuts = haircuts or {}
    amount = book.loans[loan_id].amount_cny
    value = 0.0
    present, absent, unpriced, used = [], [], set(), {}
    for lot_id in lot_ids:
        lot = book.lots[lot_id]
        if not lot.present:
            absent.append(lot_id)
            continue
        present.append(lot_id)
        price = prices.get(lot.commodity)
        if price is None:
            unpriced.add(lot.commodity)
            continue
        haircut = haircuts.get(lot.commodity, 0.0)
        if not 0 <= haircut < 1:
            raise ValueError(f"haircut for {lot.commodity} must be in [0, 1), got {haircut}")
        used[lot.commodity] = price
        value += lot.mass_kg / 1000.0 * price * (1.0 - haircut)
    ltv = None if unpriced else loan_to_value(amount, value)
    return LoanMark(
        loan=loan_id,
        amount_cny=amount,
        value_cny=value,
        ltv=ltv,
        band=None if ltv is None else band_for(ltv, thresholds),
        lots=tuple(present),
        absent=tuple(absent),
        unpriced=tuple(sorted(unpriced)),
        prices=dict(sorted(used.items())),
    )


def mark_book(
    book: CollateralBook,
    prices: Mapping[str, float],
    thresholds: Thresholds,
    haircuts: Mapping[str, float] | None = None,
) -> dict[str, LoanMark]:
    """Every loan with at least one pledged lot, marked."""
    return {
        loan_id: mark_loan(book, loan_id, lots, prices, thresholds, haircuts)
        for loan_id, lots in pledges_by_loan(book).items()
    }
