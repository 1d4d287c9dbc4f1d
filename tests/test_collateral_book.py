"""The collateral book: invariants under any sequence of operations (hypothesis stateful)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cangtwin.platform.cloud.book import BookError, CollateralBook, Loan, Lot

LOTS = [f"B01-{n:02d}" for n in range(1, 7)]
LOANS = ["LN-1", "LN-2", "LN-3"]


def _book() -> CollateralBook:
    book = CollateralBook()
    for lot in LOTS:
        book.add_lot(Lot(lot, f"EPC-{lot}", "small", "steel-coil", 20000.0, "B01"))
    for n, loan in enumerate(LOANS):
        book.open_loan(Loan(loan, f"bank-{n}", "borrower", 1e6))
    return book


def test_a_lot_cannot_be_pledged_to_two_loans():
    book = _book()
    book.pledge("LN-1", ["B01-01"], "WR-1")
    with pytest.raises(BookError, match="already pledged"):
        book.pledge("LN-2", ["B01-02", "B01-01"], "WR-2")
    assert book.pledges == {"B01-01": "LN-1"}  # all or nothing: B01-02 stayed free
    assert "WR-2" not in book.receipts


def test_release_only_by_the_loan_that_holds_the_pledge():
    book = _book()
    book.pledge("LN-1", ["B01-01"], "WR-1")
    with pytest.raises(BookError, match="not pledged to loan LN-2"):
        book.release("LN-2", ["B01-01"])
    book.release("LN-1", ["B01-01"])
    assert "B01-01" not in book.pledges and "B01-01" in book.released
    book.check()


def test_goods_that_left_cannot_be_pledged():
    book = _book()
    book.record_outbound(["B01-03"])
    with pytest.raises(BookError, match="no longer in the warehouse"):
        book.pledge("LN-1", ["B01-03"], "WR-9")


def test_a_lot_listed_twice_in_a_release_changes_nothing():
    book = _book()
    book.pledge("LN-1", ["B01-01", "B01-02"], "WR-1")
    with pytest.raises(BookError, match="lot B01-01 is listed twice") as refused:
        book.release("LN-1", ["B01-01", "B01-02", "B01-01"])
    assert (refused.value.field, refused.value.kind) == ("lots[2]", "invalid")
    assert book.pledges == {"B01-01": "LN-1", "B01-02": "LN-1"} and not book.released


@pytest.mark.parametrize("call,field,kind", [
    (lambda b: b.pledge("LN-9", ["B01-02"], "WR-2"), "loan", "unknown"),
    (lambda b: b.pledge("LN-2", ["B01-02"], "WR-1"), "receipt", "conflict"),
    (lambda b: b.pledge("LN-2", ["B01-02", "B01-77"], "WR-2"), "lots[1]", "unknown"),
    (lambda b: b.pledge("LN-2", ["B01-02", "B01-01"], "WR-2"), "lots[1]", "conflict"),
    (lambda b: b.pledge("LN-2", ["B01-02", "B01-02"], "WR-2"), "lots[1]", "invalid"),
    (lambda b: b.release("LN-1", ["B01-02"]), "lots[0]", "conflict"),
    (lambda b: b.release("LN-1", ["B01-01", "B01-77"]), "lots[1]", "conflict"),  # no such lot: not pledged
])
def test_a_refusal_names_the_argument_at_fault(call, field, kind):
    book = _book()
    book.pledge("LN-1", ["B01-01"], "WR-1")
    with pytest.raises(BookError) as refused:
        call(book)
    assert (refused.value.field, refused.value.kind) == (field, kind)
    assert book.pledges == {"B01-01": "LN-1"} and list(book.receipts) == ["WR-1"]


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = _book()
        self.model: dict[str, str] = {}
        self.gone: set[str] = set()
        self.receipts = 0

    @rule(loan=st.sampled_from(LOANS), lots=st.lists(st.sampled_from(LOTS), min_size=1, max_size=3))
    def pledge(self, loan, lots):
        self.receipts += 1
        ok = len(set(lots)) == len(lots) and all(l not in self.model and l not in self.gone for l in lots)
        version = self.book.version
        if ok:
            self.book.pledge(loan, lots, f"WR-{self.receipts}")
            self.model.update({l: loan for l in lots})
            assert self.book.version == version + 1
        else:
            with pytest.raises(BookError):
                self.book.pledge(loan, lots, f"WR-{self.receipts}")
            assert self.book.version == version

    @rule(loan=st.sampled_from(LOANS), lots=st.lists(st.sampled_from(LOTS), min_size=1, max_size=3))
    def release(self, loan, lots):
        if len(set(lots)) == len(lots) and all(self.model.get(l) == loan for l in lots):
            self.book.release(loan, lots)
            for l in lots:
                del self.model[l]
        else:
            before = dict(self.book.pledges)
            released, version = set(self.book.released), self.book.version
            with pytest.raises(BookError):
                self.book.release(loan, lots)
            assert (self.book.pledges, self.book.released, self.book.version) == (before, released, version)

    @precondition(lambda self: len(self.gone) < len(LOTS))
    @rule(lot=st.sampled_from(LOTS))
    def goods_leave(self, lot):
        self.book.record_outbound([lot])
        self.gone.add(lot)

    @invariant()
    def pledges_match_the_model_and_invariants_hold(self):
        assert self.book.pledges == self.model
        self.book.check()
        assert not set(self.book.pledges) & self.book.released


BookMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestBookMachine = BookMachine.TestCase
