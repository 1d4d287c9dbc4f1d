"""price-stale: the price of a commodity that backs an active pledge has stopped arriving.

Cloud rule on a timer; the price book is `ctx.extra["prices"]` (a `PriceBook`). A commodity is
stale once its latest tick (source time) is older than `max_age_s`; the alert's event time is
that tick's time + `max_age_s`, the instant it went stale, so a replay gives the same alert
whenever it runs. `grace_s` allows for ticks still in flight: a tick stamped before the deadline
but delivered a little late must not make a live run disagree with its replay. A commodity that
has never been quoted counts from when the rule first saw it needed.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.rules.base import Finding, Rule, RuleEntry
from cangtwin.platform.rules.context import CloudContext
from cangtwin.platform.value.feed import PriceBook
from cangtwin.platform.value.mark_to_market import pledged_commodities


class Params(StrictModel):
    max_age_s: float = pydantic.Field(default=1800.0, gt=0, le=30 * 86400)
    grace_s: float = pydantic.Field(default=30.0, ge=0, le=3600)


class Entry(RuleEntry):
    kind: Literal["price-stale"]
    params: Params = Params()


class PriceStale(Rule):
    kind = "price-stale"
    where = "cloud"
    tick_s = 30.0

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self._first_needed: dict[str, float] = {}
        self._alerted: set[tuple[str, float]] = set()

    def on_time(self, now: float, ctx: CloudContext) -> list[Finding]:
        prices: PriceBook = ctx.extra["prices"]
        needed = pledged_commodities(ctx.book)
        for commodity in set(self._first_needed) - set(needed):
            del self._first_needed[commodity]
        findings = []
        for commodity, loans in needed.items():
            tick = prices.latest(commodity)
            since = self._first_needed.setdefault(commodity, now) if tick is None else tick.at
            stale_at = since + self.params.max_age_s
            if now - stale_at <= self.params.grace_s or (commodity, since) in self._alerted:
                continue
            self._alerted.add((commodity, since))
            last = "never quoted" if tick is None else f"last tick {now - tick.at:.0f} s ago"
            findings.append(
                Finding(
                    targets=(f"price:{commodity}",),
                    event_time=stale_at,
                    observed_at=now,
                    summary=f"price of {commodity} is stale ({last}, limit {self.params.max_age_s:.0f} s)",
                    dedupe_key=f"{commodity}:{since!r}",
                    detail={
                        "commodity": commodity,
                        "last_tick_at": None if tick is None else tick.at,
                        "last_price_cny_per_t": None if tick is None else tick.price_cny_per_t,
                        "source": None if tick is None else tick.source,
                        "seq": None if tick is None else tick.seq,
                        "max_age_s": self.params.max_age_s,
                        "loans": loans,
                    },
                )
            )
        return findings
