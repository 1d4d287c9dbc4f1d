"""ltv-band: a loan's loan-to-value crosses into a worse band (warning, 追加保证金 margin call, 处置 disposal).

Cloud rule. It needs the platform's price book as `ctx.extra["prices"]` (a
`cangtwin.platform.value.feed.PriceBook`, updated by the cloud service with each accepted
`PriceTick`). It re-marks the loans a commodity backs on every tick of that commodity (event
time = the tick's source time), and every loan on its own timer so book changes (pledges,
releases, goods leaving) are seen too (event time = the check). The tick that triggered an
evaluation is used even if the service has not yet put it in the book, so the verdict does not
depend on which of the two happens first.

One alert per loan per band entered. Once in a band, a loan leaves it for a better one only when
its LTV falls `hysteresis_ltv` below the line, so a price oscillating around a threshold alerts
once, not on every crossing; a genuine recovery and a new fall alert again.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext
from cangtwin.platform.value.feed import PriceBook, PriceTick
from cangtwin.platform.value.mark_to_market import (
    BANDS,
    RANK,
    Band,
    LoanMark,
    Thresholds,
    band_with_hysteresis,
    mark_loan,
    pledges_by_loan,
)

AlertBand = Literal["warning", "margin-call", "disposal"]
Haircut = Annotated[float, pydantic.Field(ge=0, lt=1)]


class Params(StrictModel):
    warning_ltv: float = pydantic.Field(default=0.75, gt=0, le=5)
    margin_call_ltv: float = pydantic.Field(default=0.80, gt=0, le=5)
    disposal_ltv: float = pydantic.Field(default=0.90, gt=0, le=5)
    hysteresis_ltv: float = pydantic.Field(default=0.02, ge=0, le=0.5)
    # Commodity → fraction of market value not lent against (e.g. rubber ages, copper does not).
    haircuts: dict[str, Haircut] = {}
    # Which lines this entry alerts on: split them across entries to give each its own severity.
    alert_on: list[AlertBand] = pydantic.Field(default=["warning", "margin-call", "disposal"], min_length=1)

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Params:
        if not self.warning_ltv < self.margin_call_ltv < self.disposal_ltv:
            raise ValueError("thresholds must satisfy warning_ltv < margin_call_ltv < disposal_ltv")
        return self

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.warning_ltv, self.margin_call_ltv, self.disposal_ltv)


class Entry(RuleEntry):
    kind: Literal["ltv-band"]
    params: Params = Params()


class LtvBand(Rule):
    kind = "ltv-band"
    where = "cloud"
    consumes = (PriceTick,)
    tick_s = 60.0

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._thresholds = self.params.thresholds
        self._band: dict[str, Band] = {}
        self._entries: Counter[tuple[str, str]] = Counter()

    def evaluate(self, event: PriceTick, ctx: CloudContext) -> list[Finding]:
        book: PriceBook = ctx.extra["prices"]
        ticks = book.ticks()
        quote = book.quote(event.commodity)
        if quote is not None and quote.tick == event:
            observed_at = quote.received_at
        elif PriceBook.would_accept(quote, event):
            ticks[event.commodity] = event  # not in the book yet: value with it as the book will
            observed_at = event.at
        else:
            return []  # a tick the book refuses changes no valuation
        lots = ctx.book.lots
        affected = {
            loan: lot_ids
            for loan, lot_ids in pledges_by_loan(ctx.book).items()
            if any(lots[lot].commodity == event.commodity for lot in lot_ids)
        }
        return self._assess(ctx, affected, ticks, event.at, observed_at)

    def on_time(self, now: float, ctx: CloudContext) -> list[Finding]:
        active = pledges_by_loan(ctx.book)
        for loan in set(self._band) - set(active):
            del self._band[loan]  # fully released: a later pledge starts from "ok"
        return self._assess(ctx, active, ctx.extra["prices"].ticks(), now, now)

    def _assess(
        self,
        ctx: CloudContext,
        loans: dict[str, list[str]],
        ticks: dict[str, PriceTick],
        event_time: float,
        observed_at: float,
    ) -> list[Finding]:
        prices = {c: t.price_cny_per_t for c, t in ticks.items()}
        findings = []
        for loan, lot_ids in sorted(loans.items()):
            mark = mark_loan(ctx.book, loan, lot_ids, prices, self._thresholds, self.params.haircuts)
            if mark.ltv is None:
                continue  # an unpriced commodity: price-stale's case, and no basis for a verdict
            before = self._band.get(loan, "ok")
            after = band_with_hysteresis(mark.ltv, before, self._thresholds, self.params.hysteresis_ltv)
            self._band[loan] = after
            crossed = [b for b in BANDS[RANK[before] + 1 : RANK[after] + 1] if b in self.params.alert_on]
            if crossed:
                findings.append(self._finding(ctx, mark, before, crossed[-1], ticks, (event_time, observed_at)))
        return findings

    def _finding(
        self,
        ctx: CloudContext,
        mark: LoanMark,
        before: Band,
        crossed: Band,
        ticks: dict[str, PriceTick],
        times: tuple[float, float],
    ) -> Finding:
        self._entries[(mark.loan, crossed)] += 1
        return Finding(
            targets=(f"loan:{mark.loan}",),
            event_time=times[0],
            observed_at=times[1],
            summary=f"loan {mark.loan} LTV {mark.ltv:.1%} entered {mark.band} (was {before})",
            dedupe_key=f"{mark.loan}:{crossed}:{self._entries[(mark.loan, crossed)]}",
            detail={
                "loan": mark.loan,
                "bank": ctx.book.loans[mark.loan].bank,
                "ltv": mark.ltv,
                "band": mark.band,
                "from_band": before,
                "crossed": crossed,
                "condition": crossed,  # each band entered is its own alert at the desk, not a repeat
                "value_cny": mark.value_cny,
                "amount_cny": mark.amount_cny,
                "lots": list(mark.lots),
                "absent_lots": list(mark.absent),
                "prices": {
                    c: {"price_cny_per_t": p, "at": ticks[c].at, "source": ticks[c].source, "seq": ticks[c].seq}
                    for c, p in mark.prices.items()
                },
                "haircuts": {c: self.params.haircuts[c] for c in mark.prices if c in self.params.haircuts},
            },
        )
