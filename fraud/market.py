"""Market faults: a price crash, and a price feed that goes silent.

Faults, not frauds: their labels say which value alerts they are expected to cause, so those
alerts count as explained rather than false.
"""

from __future__ import annotations

from typing import Callable

from cangtwin.fraud.label import Label
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
