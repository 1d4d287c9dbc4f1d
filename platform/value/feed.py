"""Price feeds as the platform receives them: one tick per quote, and the latest quote per commodity.

A price source (an exchange feed, a data vendor, or the twin's market) sends `PriceTick`s. The
`PriceBook` keeps the newest accepted tick of each commodity and refuses, and counts, ticks that
would make the book go back in time or carry an impossible price, so a replayed or misbehaving
feed can never lower the age of a quote or value goods at zero.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import msgspec


class PriceTick(msgspec.Struct, frozen=True, tag="price-tick"):
    """One quote on the wire: `at` is the source's time, `seq` its own running number."""

    commodity: str
    price_cny_per_t: float
    at: float
    source: str
    seq: int


@dataclass(frozen=True)
class Quote:
    """An accepted tick and when the platform received it."""

    tick: PriceTick
    received_at: float


class PriceBook:
    """The latest accepted quote per commodity. Refusal reasons are counted in `refused`."""

    def __init__(self) -> None:
        self._quotes: dict[str, Quote] = {}
        self.accepted = 0
        self.refused: Counter[str] = Counter()

    def update(self, tick: PriceTick, received_at: float | None = None) -> bool:
        """Accept `tick` if it is newer than the held quote and its price is usable."""
        reason = self._refusal(self._quotes.get(tick.commodity), tick)
        if reason is not None:
            self.refused[reason] += 1
            return False
        self._quotes[tick.commodity] = Quote(tick, tick.at if received_at is None else received_at)
        self.accepted += 1
        return True

    @staticmethod
    def would_accept(held: Quote | None, tick: PriceTick) -> bool:
        """Whether a book holding `held` for the tick's commodity would accept `tick`."""
        return PriceBook._refusal(held, tick) is None

    @staticmethod
    def _refusal(held: Quote | None, tick: PriceTick) -> str | None:
        if not math.isfinite(tick.price_cny_per_t) or not math.isfinite(tick.at):
            return "non-finite"
        if tick.price_cny_per_t <= 0:
            return "non-positive"
        if held is not None:
            if tick.at < held.tick.at:
                return "back-in-time"
            if tick.at == held.tick.at:
                return "repeated-time"  # a duplicate, or two prices for one instant: keep the first
        return None

    def quote(self, commodity: str) -> Quote | None:
        return self._quotes.get(commodity)

    def latest(self, commodity: str) -> PriceTick | None:
        quote = self._quotes.get(commodity)
        return None if quote is None else quote.tick

    def age_s(self, commodity: str, now: float) -> float | None:
        """Seconds since the source time of the latest tick; None if never quoted."""
        quote = self._quotes.get(commodity)
        return None if quote is None else now - quote.tick.at

    def prices(self) -> dict[str, float]:
        """Commodity → latest price (CNY/t)."""
        return {c: q.tick.price_cny_per_t for c, q in self._quotes.items()}

    def ticks(self) -> dict[str, PriceTick]:
        """Commodity → latest tick, for valuations that must cite the quotes they used."""
        return {c: q.tick for c, q in self._quotes.items()}
