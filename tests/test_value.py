"""Price book and mark-to-market: refusals, valuations by hand, bands and hysteresis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.value.feed import PriceBook, PriceTick
from cangtwin.platform.value.mark_to_market import (
    BANDS,
    RANK,
    Thresholds,
    band_for,
    band_with_hysteresis,
    loan_to_value,
    mark_book,
    mark_loan,
    pledged_commodities,
)


def tick(commodity: str, price: float, at: float, seq: int = 0) -> PriceTick:
    return PriceTick(commodity=commodity, price_cny_per_t=price, at=at, source="test", seq=seq)


# --- price book -------------------------------------------------------------------------------


def test_price_book_keeps_the_latest_tick_and_its_age():
    book = PriceBook()
    assert book.update(tick("steel-coil", 3800, 100.0), received_at=100.4)
    assert book.update(tick("steel-coil", 3790, 160.0, 1))
    assert book.update(tick("copper-cathode", 76000, 50.0))
    assert book.latest("steel-coil") == tick("steel-coil", 3790, 160.0, 1)
    assert book.quote("steel-coil").received_at == 160.0  # defaults to source time
    assert book.age_s("steel-coil", now=200.0) == 40.0
    assert book.age_s("rubber-bale", now=200.0) is None
    assert book.prices() == {"steel-coil": 3790, "copper-cathode": 76000}
    assert book.accepted == 3 and not book.refused


def test_price_book_refuses_and_counts_bad_ticks():
    book = PriceBook()
    book.update(tick("steel-coil", 3800, 100.0))
    refusals = [
        (tick("steel-coil", 3700, 99.0), "back-in-time"),
        (tick("steel-coil", 3700, 100.0, 7), "repeated-time"),
        (tick("steel-coil", 0.0, 200.0), "non-positive"),
        (tick("steel-coil", -5.0, 200.0), "non-positive"),
        (tick("steel-coil", math.nan, 200.0), "non-finite"),
        (tick("steel-coil", 3800, math.inf), "non-finite"),
    ]
    for bad, _ in refusals:
        assert not book.update(bad)
    assert dict(book.refused) == {"back-in-time": 1, "repeated-time": 1, "non-positive": 2, "non-finite": 2}
    assert book.latest("steel-coil") == tick("steel-coil", 3800, 100.0)
    # Another commodity's clock is its own.
    assert book.update(tick("copper-cathode", 76000, 1.0))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["steel-coil", "copper-cathode"]),
            st.one_of(st.floats(-10, 1e6), st.just(math.nan)),
            st.integers(0, 20).map(float),
        ),
        max_size=40,
    )
)
def test_price_book_holds_the_first_valid_tick_of_the_newest_time(raw):
    book = PriceBook()
    ticks = [tick(c, p, at, seq) for seq, (c, p, at) in enumerate(raw)]
    for t in ticks:
        book.update(t)
    assert book.accepted + sum(book.refused.values()) == len(ticks)
    for commodity in ("steel-coil", "copper-cathode"):
        valid = [t for t in ticks if t.commodity == commodity and t.price_cny_per_t > 0]
        if not valid:
            assert book.latest(commodity) is None
            continue
        newest = max(t.at for t in valid)
        assert book.latest(commodity) == next(t for t in valid if t.at == newest)


# --- mark-to-market ---------------------------------------------------------------------------


def collateral() -> CollateralBook:
    book = CollateralBook()
    book.add_lot(Lot("S1", "t-s1", "small", "steel-coil", 20_000.0, "B01"))
    book.add_lot(Lot("S2", "t-s2", "small", "steel-coil", 20_000.0, "B01"))
    book.add_lot(Lot("C1", "t-c1", "small", "copper-cathode", 2_500.0, "B09"))
    book.add_lot(Lot("R1", "t-r1", "small", "rubber-bale", 1_200.0, "B11"))
    book.add_lot(Lot("A1", "t-a1", "small", "aluminium-ingot", 1_000.0, "B05"))
    book.open_loan(Loan("L1", "bank-a", "borrower-1", 250_000.0))
    book.open_loan(Loan("L2", "bank-b", "borrower-2", 10_000.0))
    book.open_loan(Loan("L3", "bank-b", "borrower-3", 50_000.0))
    book.pledge("L1", ["S1", "S2", "C1"], "WR-1")
    book.pledge("L2", ["R1"], "WR-2")
    return book


PRICES = {"steel-coil": 3800.0, "copper-cathode": 76000.0, "rubber-bale": 14500.0}


def test_mark_by_hand_with_a_haircut():
    marks = mark_book(collateral(), PRICES, Thresholds(), haircuts={"copper-cathode": 0.1})
    assert set(marks) == {"L1", "L2"}  # L3 has no pledge: nothing to mark
    l1 = marks["L1"]
    # 2 × 20 t × 3,800 = 152,000; 2.5 t × 76,000 × 0.9 = 171,000; 250,000 / 323,000 = 0.77399
    assert l1.value_cny == pytest.approx(323_000.0)
    assert l1.ltv == pytest.approx(250_000 / 323_000)
    assert l1.band == "warning"
    assert l1.lots == ("C1", "S1", "S2")
    assert l1.prices == {"copper-cathode": 76000.0, "steel-coil": 3800.0}
    l2 = marks["L2"]  # 1.2 t × 14,500 = 17,400
    assert (l2.value_cny, l2.band) == (pytest.approx(17_400.0), "ok")
    assert l2.ltv == pytest.approx(10_000 / 17_400)


def test_goods_that_left_are_worth_nothing_to_the_loan():
    book = collateral()
    book.record_outbound(["C1"])
    mark = mark_book(book, PRICES, Thresholds())["L1"]
    assert mark.absent == ("C1",)
    assert mark.value_cny == pytest.approx(152_000.0)
    assert mark.band == "disposal"  # 250,000 / 152,000 = 1.64
    book.record_outbound(["S1", "S2"])
    gone = mark_book(book, PRICES, Thresholds())["L1"]
    assert (gone.value_cny, gone.ltv, gone.band) == (0.0, math.inf, "disposal")


def test_a_missing_price_gives_no_ltv():
    mark = mark_book(collateral(), {"steel-coil": 3800.0}, Thresholds())["L1"]
    assert mark.unpriced == ("copper-cathode",)
    assert (mark.ltv, mark.band) == (None, None)
    assert mark.value_cny == pytest.approx(152_000.0)


def test_bad_haircut_and_thresholds_are_refused():
    with pytest.raises(ValueError, match="haircut"):
        mark_loan(collateral(), "L2", ["R1"], PRICES, Thresholds(), haircuts={"rubber-bale": 1.0})
    with pytest.raises(ValueError, match="warning < margin_call < disposal"):
        Thresholds(0.8, 0.8, 0.9)


def test_pledged_commodities_are_those_of_present_pledged_lots():
    book = collateral()
    assert pledged_commodities(book) == {
        "copper-cathode": ["L1"],
        "rubber-bale": ["L2"],
        "steel-coil": ["L1"],
    }
    book.release("L2", ["R1"])
    book.record_outbound(["C1"])
    assert pledged_commodities(book) == {"steel-coil": ["L1"]}


def test_ltv_edges():
    assert loan_to_value(0.0, 0.0) == 0.0
    assert loan_to_value(1.0, 0.0) == math.inf
    assert loan_to_value(75.0, 100.0) == 0.75


def test_bands_start_at_their_lines():
    th = Thresholds(0.75, 0.80, 0.90)
    assert [band_for(x, th) for x in (0.7499, 0.75, 0.7999, 0.80, 0.8999, 0.90, math.inf)] == [
        "ok", "warning", "warning", "margin-call", "margin-call", "disposal", "disposal",
    ]


def test_hysteresis_by_hand():
    th = Thresholds(0.75, 0.80, 0.90)
    assert band_with_hysteresis(0.74, "warning", th, 0.02) == "warning"  # within 2 points of the line
    assert band_with_hysteresis(0.7299, "warning", th, 0.02) == "ok"  # over 2 points below: out
    assert band_with_hysteresis(0.85, "disposal", th, 0.02) == "margin-call"
    assert band_with_hysteresis(0.50, "disposal", th, 0.02) == "ok"
    assert band_with_hysteresis(0.91, "ok", th, 0.02) == "disposal"
    assert band_with_hysteresis(0.79, "warning", th, 0.0) == "warning"


thresholds = (
    st.lists(st.floats(0.05, 2.0), min_size=3, max_size=3, unique=True)
    .map(sorted)
    .filter(lambda t: t[0] < t[1] < t[2])
    .map(lambda t: Thresholds(*t))
)


@settings(max_examples=80, deadline=None)
@given(
    amount=st.floats(1.0, 1e9),
    mass=st.floats(1.0, 1e6),
    p1=st.floats(1.0, 1e6),
    p2=st.floats(1.0, 1e6),
    th=thresholds,
)
def test_ltv_and_band_are_monotone_in_price(amount, mass, p1, p2, th):
    book = CollateralBook()
    book.add_lot(Lot("X", "t", "s", "steel-coil", mass, None))
    book.open_loan(Loan("L", "b", "c", amount))
    book.pledge("L", ["X"], "R")
    low, high = sorted((p1, p2))
    at_low = mark_loan(book, "L", ["X"], {"steel-coil": low}, th)
    at_high = mark_loan(book, "L", ["X"], {"steel-coil": high}, th)
    assert at_high.ltv <= at_low.ltv
    assert RANK[at_high.band] <= RANK[at_low.band]


@settings(max_examples=80, deadline=None)
@given(
    th=thresholds,
    hysteresis=st.floats(0.0, 0.2),
    start=st.floats(0.01, 3.0),
    falls=st.lists(st.floats(0.0, 0.3), max_size=30),
)
def test_band_never_improves_while_the_price_only_falls(th, hysteresis, start, falls):
    ltv, band = start, band_for(start, th)
    for fall in falls:
        ltv = ltv / (1 - fall)  # the price falls by `fall`, so the LTV rises
        after = band_with_hysteresis(ltv, band, th, hysteresis)
        assert RANK[after] >= RANK[band]
        band = after


@settings(max_examples=80, deadline=None)
@given(th=thresholds, hysteresis=st.floats(0.0, 0.2), ltv=st.floats(0.0, 3.0), current=st.sampled_from(BANDS))
def test_hysteresis_stays_between_the_raw_band_and_the_current_one(th, hysteresis, ltv, current):
    after = band_with_hysteresis(ltv, current, th, hysteresis)
    raw = band_for(ltv, th)
    assert RANK[raw] <= RANK[after] <= max(RANK[raw], RANK[current])
    if band_for(ltv + hysteresis, th) == raw:
        assert after == raw  # clear of every line by the margin: no memory
