"""ltv-band and price-stale: fire on the real thing, stay silent on honest near-misses, agree on replay."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.rules import ltv_band, price_stale, ruleset
from cangtwin.platform.rules.context import CloudContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.ruleset import RuleSet
from cangtwin.platform.value.feed import PriceBook, PriceTick
from cangtwin.twin.market import JumpDiffusion, JumpDiffusionModel, PriceFeed

COPPER = "copper-cathode"


def ltv_entry(**params) -> ltv_band.Entry:
    return ltv_band.Entry(
        id="ltv-band", kind="ltv-band", category="value", severity="major", section="4.7 质物价值重估",
        params=ltv_band.Params(**params),
    )


def stale_entry(**params) -> price_stale.Entry:
    return price_stale.Entry(
        id="price-stale", kind="price-stale", category="value", severity="major", section="4.7 质物价值重估",
        params=price_stale.Params(**params),
    )


def copper_loan(amount: float = 100_000.0) -> CollateralBook:
    """One loan against 2 t of copper: LTV = amount / (2 × price), so price 50,000/x gives LTV x."""
    book = CollateralBook()
    book.add_lot(Lot("C1", "t-c1", "small", COPPER, 2_000.0, "B09"))
    book.add_lot(Lot("A1", "t-a1", "small", "aluminium-ingot", 1_000.0, "B05"))
    book.open_loan(Loan("L1", "bank-a", "borrower-1", amount))
    book.pledge("L1", ["C1"], "WR-1")
    return book


def price_for(ltv: float) -> float:
    return 50_000.0 / ltv


class Desk:
    """A cloud context with a price book, and a rule fed the way the cloud service feeds it."""

    def __init__(self, rule, book: CollateralBook | None = None) -> None:
        self.rule = rule
        self.prices = PriceBook()
        self.ctx = CloudContext(book or copper_loan(), {}, {}, extra={"prices": self.prices})
        self.seq = 0

    def tick(self, price: float, at: float, commodity: str = COPPER, book_first: bool = True):
        tick = PriceTick(commodity, price, at, "test-feed", self.seq)
        self.seq += 1
        if book_first:
            self.prices.update(tick, received_at=at + 0.25)
            return self.rule.evaluate(tick, self.ctx)
        findings = self.rule.evaluate(tick, self.ctx)
        self.prices.update(tick, received_at=at + 0.25)
        return findings


# --- ltv-band -----------------------------------------------------------------------------------


def test_a_price_fall_into_the_warning_band_alerts_the_loan():
    desk = Desk(ltv_band.LtvBand(ltv_entry()))
    assert desk.tick(76_000, 0.0) == []
    [finding] = desk.tick(66_000, 60.0)
    assert finding.targets == ("loan:L1",)
    assert (finding.event_time, finding.observed_at) == (60.0, 60.25)
    d = finding.detail
    assert d["ltv"] == pytest.approx(100_000 / 132_000)
    assert (d["band"], d["from_band"], d["crossed"], d["bank"]) == ("warning", "ok", "warning", "bank-a")
    assert d["value_cny"] == pytest.approx(132_000.0)
    assert d["prices"] == {COPPER: {"price_cny_per_t": 66_000, "at": 60.0, "source": "test-feed", "seq": 1}}
    assert d["lots"] == ["C1"]


def test_near_miss_ltv_just_below_each_line_stays_silent():
    desk = Desk(ltv_band.LtvBand(ltv_entry()))
    for i, (line, band) in enumerate([(0.75, "warning"), (0.80, "margin-call"), (0.90, "disposal")]):
        # Approach each line from below: silent. Then cross it: one alert.
        assert desk.tick(price_for(line - 0.0005), 100.0 * i) == []
        [finding] = desk.tick(price_for(line + 0.0005), 100.0 * i + 50)
        assert finding.detail["band"] == band


def test_a_crash_straight_to_disposal_is_one_alert():
    desk = Desk(ltv_band.LtvBand(ltv_entry()))
    desk.tick(76_000, 0.0)
    [finding] = desk.tick(40_000, 60.0)
    assert (finding.detail["band"], finding.detail["crossed"]) == ("disposal", "disposal")
    assert desk.tick(30_000, 120.0) == []


def test_oscillation_around_a_line_alerts_once_until_a_real_recovery():
    desk = Desk(ltv_band.LtvBand(ltv_entry(hysteresis_ltv=0.02)))
    findings = []
    for i in range(20):
        findings += desk.tick(price_for(0.7508 if i % 2 == 0 else 0.7401), 60.0 * i)
    assert len(findings) == 1
    assert desk.tick(price_for(0.72), 2000.0) == []  # recovers beyond the hysteresis: back to ok, silently
    [again] = desk.tick(price_for(0.76), 2060.0)  # a new fall is a new alert, not a duplicate
    assert again.dedupe_key != findings[0].dedupe_key
    assert again.event_time == 2060.0


def test_without_hysteresis_every_crossing_alerts():
    desk = Desk(ltv_band.LtvBand(ltv_entry(hysteresis_ltv=0.0)))
    findings = [f for i in range(6) for f in desk.tick(price_for(0.7508 if i % 2 == 0 else 0.7492), 60.0 * i)]
    assert len(findings) == 3
    assert len({f.dedupe_key for f in findings}) == 3


def test_alert_on_splits_the_lines_across_entries():
    disposal_only = Desk(ltv_band.LtvBand(ltv_entry(alert_on=["disposal"])))
    assert disposal_only.tick(price_for(0.85), 0.0) == []
    [f] = disposal_only.tick(price_for(0.95), 60.0)
    assert f.detail["crossed"] == "disposal"
    warning_only = Desk(ltv_band.LtvBand(ltv_entry(alert_on=["warning"])))
    [f] = warning_only.tick(price_for(0.95), 0.0)  # jumped past warning: the warning line was still crossed
    assert (f.detail["crossed"], f.detail["band"]) == ("warning", "disposal")


def test_haircuts_lower_the_value():
    desk = Desk(ltv_band.LtvBand(ltv_entry(haircuts={COPPER: 0.2})))
    [f] = desk.tick(76_000, 0.0)  # 2 t × 76,000 × 0.8 = 121,600 → LTV 0.822
    assert f.detail["value_cny"] == pytest.approx(121_600.0)
    assert f.detail["band"] == "margin-call"
    assert f.detail["haircuts"] == {COPPER: 0.2}


def test_ticks_of_other_commodities_or_refused_ticks_change_nothing():
    desk = Desk(ltv_band.LtvBand(ltv_entry()))
    desk.tick(76_000, 100.0)
    assert desk.tick(10.0, 110.0, commodity="aluminium-ingot") == []  # backs no loan here
    assert desk.tick(40_000, 50.0) == []  # back in time: the book refuses it, so does the rule
    assert desk.tick(-1.0, 200.0) == []


def test_an_unpriced_commodity_gives_no_verdict():
    book = copper_loan(amount=1_000_000.0)
    book.add_lot(Lot("R1", "t-r1", "small", "rubber-bale", 1_200.0, "B11"))
    book.pledge("L1", ["R1"], "WR-2")
    desk = Desk(ltv_band.LtvBand(ltv_entry()), book)
    assert desk.tick(76_000, 0.0) == []  # LTV would be 6.6 on copper alone, but rubber has no price yet
    [f] = desk.tick(14_500, 10.0, commodity="rubber-bale")
    assert f.detail["band"] == "disposal"


def test_book_changes_are_seen_on_the_timer():
    book = copper_loan()
    book.add_lot(Lot("C2", "t-c2", "small", COPPER, 2_000.0, "B09"))
    book.pledge("L1", ["C2"], "WR-2")
    desk = Desk(ltv_band.LtvBand(ltv_entry()), book)
    assert desk.tick(66_000, 0.0) == []  # 100,000 / 264,000
    assert desk.rule.on_time(30.0, desk.ctx) == []
    book.record_outbound(["C2"])  # half the collateral left the warehouse
    [f] = desk.rule.on_time(60.0, desk.ctx)
    assert (f.event_time, f.observed_at) == (60.0, 60.0)
    assert f.detail["band"] == "warning" and f.detail["absent_lots"] == ["C2"]
    assert desk.rule.on_time(90.0, desk.ctx) == []


def test_a_released_loan_starts_afresh():
    desk = Desk(ltv_band.LtvBand(ltv_entry()))
    desk.tick(price_for(0.95), 0.0)
    desk.ctx.book.release("L1", ["C1"])
    assert desk.rule.on_time(30.0, desk.ctx) == []
    desk.ctx.book.add_lot(Lot("C3", "t-c3", "small", COPPER, 2_000.0, "B09"))
    desk.ctx.book.pledge("L1", ["C3"], "WR-3")
    [f] = desk.rule.on_time(60.0, desk.ctx)
    assert f.detail["from_band"] == "ok"


def test_params_must_be_ordered():
    with pytest.raises(pydantic.ValidationError, match="warning_ltv < margin_call_ltv"):
        ltv_band.Params(warning_ltv=0.85)
    with pytest.raises(pydantic.ValidationError):
        ltv_band.Params(haircuts={COPPER: 1.0})
    with pytest.raises(pydantic.ValidationError):
        ltv_band.Params(alert_on=[])


prices = st.lists(st.floats(30_000, 90_000), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(prices)
def test_verdict_does_not_depend_on_whether_the_book_or_the_rule_sees_a_tick_first(path):
    def verdicts(book_first: bool):
        desk = Desk(ltv_band.LtvBand(ltv_entry()))
        return [
            (f.dedupe_key, f.event_time, f.detail["band"], f.detail["ltv"])
            for i, p in enumerate(path)
            for f in desk.tick(p, 60.0 * i, book_first=book_first)
        ]

    assert verdicts(True) == verdicts(False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 0.2), max_size=25), st.floats(60_000, 90_000))
def test_falling_prices_alert_each_band_at_most_once_in_order(falls, start):
    desk = Desk(ltv_band.LtvBand(ltv_entry()))
    price, crossed = start, []
    for i, fall in enumerate(falls):
        price *= 1 - fall
        crossed += [f.detail["crossed"] for f in desk.tick(price, 60.0 * i)]
    order = ["warning", "margin-call", "disposal"]
    assert [order.index(c) for c in crossed] == sorted({order.index(c) for c in crossed})


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([0.75, 0.80, 0.90]), st.lists(st.floats(-0.0199, 0.0199), min_size=1, max_size=30))
def test_oscillating_within_the_hysteresis_alerts_at_most_once(line, wiggles):
    desk = Desk(ltv_band.LtvBand(ltv_entry(hysteresis_ltv=0.02)))
    desk.tick(price_for(line - 0.0199), 0.0)  # start just below the line, already in the band below
    findings = [f for i, w in enumerate(wiggles) for f in desk.tick(price_for(line + w), 60.0 * (i + 1))]
    assert len(findings) <= 1


# --- price-stale ----------------------------------------------------------------------------------


def test_a_silent_feed_alerts_at_the_instant_it_went_stale():
    desk = Desk(price_stale.PriceStale(stale_entry(max_age_s=600, grace_s=30)))
    desk.tick(76_000, 100.0)
    assert desk.rule.on_time(700.0, desk.ctx) == []
    assert desk.rule.on_time(730.0, desk.ctx) == []  # stale, but a tick may still be in flight
    [f] = desk.rule.on_time(760.0, desk.ctx)
    assert f.targets == (f"price:{COPPER}",)
    assert (f.event_time, f.observed_at) == (700.0, 760.0)
    assert f.detail["last_tick_at"] == 100.0 and f.detail["loans"] == ["L1"]
    assert desk.rule.on_time(790.0, desk.ctx) == []  # one alert per silence
    desk.tick(76_100, 800.0)
    assert desk.rule.on_time(1390.0, desk.ctx) == []
    [again] = desk.rule.on_time(1500.0, desk.ctx)  # resumed, then stopped again: a new alert
    assert again.event_time == 1400.0 and again.dedupe_key != f.dedupe_key


def test_near_miss_a_tick_just_in_time_keeps_it_fresh():
    desk = Desk(price_stale.PriceStale(stale_entry(max_age_s=600, grace_s=30)))
    desk.tick(76_000, 100.0)
    desk.tick(76_050, 699.0)  # one second before the deadline
    assert desk.rule.on_time(760.0, desk.ctx) == []
    # Stamped before the deadline but delivered late, within the grace: still no alert.
    assert desk.rule.on_time(1320.0, desk.ctx) == []  # 21 s past the deadline, within the grace
    desk.tick(76_000, 1298.0)
    assert desk.rule.on_time(1330.0, desk.ctx) == []


def test_only_commodities_backing_a_present_pledge_matter():
    desk = Desk(price_stale.PriceStale(stale_entry(max_age_s=600, grace_s=0)))
    desk.tick(76_000, 0.0)
    desk.tick(20_500, 0.0, commodity="aluminium-ingot")  # A1 is not pledged
    desk.ctx.book.release("L1", ["C1"])
    assert desk.rule.on_time(5000.0, desk.ctx) == []


def test_a_never_quoted_commodity_counts_from_when_it_was_needed():
    desk = Desk(price_stale.PriceStale(stale_entry(max_age_s=600, grace_s=0)))
    assert desk.rule.on_time(100.0, desk.ctx) == []
    [f] = desk.rule.on_time(701.0, desk.ctx)
    assert f.event_time == 700.0
    assert f.detail["last_tick_at"] is None
    assert "never quoted" in f.summary


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.one_of(st.floats(1, 600), st.floats(661, 3000)), min_size=1, max_size=12),
    phase=st.floats(0, 29.9),
)
def test_stale_alerts_do_not_depend_on_when_the_checks_run(gaps, phase):
    max_age, grace, step = 600.0, 30.0, 30.0
    times = list(np.cumsum([0.0] + gaps))
    desk = Desk(price_stale.PriceStale(stale_entry(max_age_s=max_age, grace_s=grace)))
    pending, seen = list(times), []
    check = phase
    while check < times[-1] + max_age + grace + 2 * step:
        while pending and pending[0] <= check:
            desk.tick(76_000, pending.pop(0))
        seen += [f.event_time for f in desk.rule.on_time(check, desk.ctx)]
        check += step
    expected = [t + max_age for t, gap in zip(times, gaps + [math.inf]) if gap > max_age + grace + step]
    assert seen == pytest.approx(expected)


# --- through the engine, and with the twin's market --------------------------------------------


@pytest.fixture
def kinds(monkeypatch):
    monkeypatch.setitem(ruleset.KINDS, "ltv-band", (ltv_band.Entry, ltv_band.LtvBand))
    monkeypatch.setitem(ruleset.KINDS, "price-stale", (price_stale.Entry, price_stale.PriceStale))


def test_the_market_crash_and_silence_reach_the_bank_as_alerts(kinds):
    rules = RuleSet(
        "value", 1, "0" * 64, "test",
        entries=(
            ltv_entry(alert_on=["warning", "margin-call"]),
            ltv_band.Entry(
                id="ltv-disposal", kind="ltv-band", category="value", severity="critical",
                section="4.7 质物价值重估", params=ltv_band.Params(alert_on=["disposal"]),
            ),
            stale_entry(max_age_s=300, grace_s=30),
        ),
    )
    engine = RuleEngine(rules, "cloud", where="cloud")
    assert engine.tick_s == 30.0
    env = simpy.Environment()
    clock = SimPyClock(env)
    book = copper_loan(amount=0.65 * 2 * 76_000)  # LTV 0.65 at the reference price
    prices = PriceBook()
    ctx = CloudContext(book, {}, {}, extra={"prices": prices})
    alerts = []

    def deliver(tick: PriceTick) -> None:
        prices.update(tick, received_at=clock.now())
        alerts.extend(engine.evaluate(tick, ctx, raised_at=clock.now()))

    def timer() -> None:
        alerts.extend(engine.tick(clock.now(), ctx))
        clock.call_later(engine.tick_s, timer)

    model = JumpDiffusionModel(COPPER, np.random.default_rng(1), JumpDiffusion(jump_intensity=0.0))
    feed = PriceFeed([model])
    feed.crash(COPPER, 600.0, -0.35)  # LTV 0.65 / 0.65 = 1.0: disposal
    feed.silence(1200.0)
    feed.run(clock, deliver, latency_s=0.2)
    timer()
    env.run(until=2000)
    by_rule = {(a.rule, a.severity): a for a in alerts}
    assert set(by_rule) == {("ltv-band", "major"), ("ltv-disposal", "critical"), ("price-stale", "major")}
    for rule in ("ltv-band", "ltv-disposal"):
        alert = next(a for a in alerts if a.rule == rule)
        assert alert.targets == ("loan:L1",)
        assert alert.event_time == 600.0 and alert.raised_at == pytest.approx(600.2)
    assert next(a for a in alerts if a.rule == "ltv-band").detail["crossed"] == "margin-call"
    stale = next(a for a in alerts if a.rule == "price-stale")
    assert stale.targets == (f"price:{COPPER}",)
    assert stale.event_time == 1140.0 + 300.0  # last delivered tick + max age
    assert 1440.0 + 30 < stale.raised_at <= 1440.0 + 30 + engine.tick_s
    assert len(alerts) == 3
