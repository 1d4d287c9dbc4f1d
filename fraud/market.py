"""Market faults: a price crash, a slide, and a price feed that goes silent.

Faults, not frauds: their labels say which value alerts they are expected to cause, so those
alerts count as explained rather than false.
"""

from __future__ import annotations

from typing import Callable

import msgspec

from cangtwin.fraud.label import Label
from cangtwin.platform.value.feed import PriceTick
from cangtwin.twin.market import PriceFeed


def inject_price_crash(
    label_id: str, feed: PriceFeed, commodity: str, at: float, drop: float, loans: list[str],
    record: Callable[[Label], None],
) -> Label:
    """From `at`, the commodity trades `drop` (e.g. 0.3 = 30 %) below its path."""
    feed.crash(commodity, at, -drop)
    label = Label(
        id=label_id, kind="price-crash", fault=True, targets=[f"loan:{loan}" for loan in loans],
        injected_at=at, onset=at, magnitude=drop, magnitude_unit="fraction",
        primary_rules=["ltv-band", "ltv-disposal"], window_s=86400.0, detail={"commodity": commodity},
    )
    record(label)
    return label


def inject_feed_silence(
    label_id: str, feed: PriceFeed, at: float, duration_s: float, commodities: list[str],
    record: Callable[[Label], None],
) -> Label:
    """No ticks at all for `duration_s`: the price source has stopped."""
    feed.silence(at, at + duration_s)
    label = Label(
        id=label_id, kind="price-feed-silent", fault=True, targets=[f"price:{c}" for c in commodities],
        injected_at=at, onset=at, magnitude=duration_s, magnitude_unit="s",
        primary_rules=["price-stale"], window_s=duration_s + 3600.0,
    )
    record(label)
    return label


class LoanExposure(msgspec.Struct, frozen=True):
    """A loan as its LTV is reckoned: the amount, and the tonnes of each commodity pledged to it."""

    loan: str
    amount_cny: float
    tonnes: dict[str, float]


def inject_price_slide(
    label_id: str, feed: PriceFeed, commodity: str, at: float, drop: float, over_s: float,
    loans: list[LoanExposure], warning_ltv: float, margin_call_ltv: float, record: Callable[[Label], None],
) -> None:
    """From `at`, the commodity slides `drop` below its path, evenly in log price over `over_s`.

    Ground truth is the market itself (every tick, delivered or not) and the loans' own terms:
    LTV = amount / Σ tonnes × price. Label `<id>` is written when a loan's LTV first reaches
    the warning line (onset: that tick's time; primary rule `ltv-band`), or, if none has when the
    slide is over, with no rule (the slide stayed under the line). Label `<id>-margin-call` is
    written when a loan's LTV first reaches the margin-call line. Disposal is not this label's
    business: a slide that goes that deep is a crash's (`ltv-disposal` would be a false alarm).
    Minimum magnitude: the drop that takes a loan's LTV to the warning line (1 − LTV₀ / warning),
    plus the path's own noise over the run (σ ≈ 0.5 % in 3 h at the reference 25 %/yr volatility).
    """
    feed.slide(commodity, at, -drop, over_s)
    exposed = [loan for loan in loans if loan.tonnes.get(commodity)]
    prices: dict[str, float] = {}
    pending = {"warning": warning_ltv, "margin-call": margin_call_ltv}
    peak = {"ltv": 0.0}

    def label(suffix: str, onset: float, rules: list[str], ltv: dict[str, float]) -> Label:
        return Label(
            id=label_id + suffix, kind="price-slide", fault=True, targets=[f"loan:{loan.loan}" for loan in exposed],
            injected_at=at, onset=onset, magnitude=drop, magnitude_unit="fraction", primary_rules=rules,
            window_s=86400.0,
            detail={"commodity": commodity, "over_s": over_s, "ltv": ltv, "peak_ltv": round(peak["ltv"], 6),
                    "lines": {"warning": warning_ltv, "margin-call": margin_call_ltv}},
        )

    def observe(tick: PriceTick) -> None:
        prices[tick.commodity] = tick.price_cny_per_t
        if tick.at < at or not pending:
            return
        ltv = {}
        for loan in exposed:
            if all(c in prices for c in loan.tonnes):
                ltv[loan.loan] = round(loan.amount_cny / sum(t * prices[c] for c, t in loan.tonnes.items()), 6)
        peak["ltv"] = max([peak["ltv"], *ltv.values()])
        for band, line in list(pending.items()):
            if any(v >= line for v in ltv.values()):
                del pending[band]
                record(label("" if band == "warning" else "-margin-call", tick.at, ["ltv-band"], ltv))
        if "warning" in pending and tick.at >= at + over_s:
            pending.clear()  # the slide is over and no loan reached the warning line
            record(label("", at, [], ltv))

    feed.observers.append(observe)
