"""The pledge registry and goods fingerprints: matching, the lag, the public feed, bad filings."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.registry.fingerprint import (
    Fingerprint,
    FingerprintError,
    LotGoods,
    Quantum,
    fingerprint_from_book,
    match,
    weight_signature,
)
from cangtwin.platform.registry.registry import (
    Cancellation,
    CancellationVisible,
    Filing,
    PledgeRegistry,
    RegistrationVisible,
    RegistryError,
    Transfer,
    TransferVisible,
    event_key,
    registry_of,
)
from cangtwin.platform.rules.context import CloudContext

Q = Quantum(mass_rel_tol=0.005, dim_tol_m=0.05)


def goods(prefix: str, masses: list[float], commodity="copper-cathode", dims=(1.1, 1.0, 0.4)) -> tuple[LotGoods, ...]:
    return tuple(LotGoods(f"{prefix}-{i}", f"EPC-{prefix}-{i}", commodity, m, dims) for i, m in enumerate(masses))


def relabel(fp: Fingerprint, receipt: str, prefix: str, factor: float = 1.0) -> Fingerprint:
    """The same goods under new lot ids, tags and receipt, re-weighed by `factor`."""
    return Fingerprint(receipt, tuple(
        LotGoods(f"{prefix}-{i}", f"EPC-{prefix}-{i}", g.commodity, g.mass_kg * factor, g.dims_m)
        for i, g in enumerate(fp.lots)
    ))


COPPER = Fingerprint("WR-1", goods("A", [2480.0, 2530.0, 2555.0, 2590.0]))


# Fingerprint matching

def test_each_component_is_reported():
    assert match(COPPER, COPPER, Q).components == ("receipt", "tags", "lots", "weight")
    moved = relabel(COPPER, "WR-9", "Z", factor=1.003)  # re-weighed within 0.5 %
    assert match(COPPER, moved, Q).components == ("weight",)
    # the published signature does not depend on labels or on the order lots are listed in
    shuffled = Fingerprint("WR-9", tuple(reversed(relabel(COPPER, "WR-9", "Z").lots)))
    assert weight_signature(shuffled, Q) == weight_signature(COPPER, Q)
    one_tag = Fingerprint("WR-8", (COPPER.lots[0], *goods("Q", [900.0])))
    m = match(COPPER, one_tag, Q)
    assert m.tags == ("EPC-A-0",) and m.lots == ("A-0",) and not m.weight and not m.receipt


def test_different_goods_of_the_same_commodity_and_similar_weight_do_not_match():
    other = Fingerprint("WR-2", goods("B", [2450.0, 2560.0, 2520.0, 2620.0]))  # each lot ~1.2 % off
    assert abs(other.total_mass_kg / COPPER.total_mass_kg - 1) < 0.002  # totals nearly equal
    assert match(COPPER, other, Q).components == ()


def test_commodity_lot_count_and_dimensions_separate_equal_weights():
    masses = [g.mass_kg for g in COPPER.lots]
    assert not match(COPPER, Fingerprint("X", goods("B", masses, commodity="aluminium-ingot")), Q).weight
    assert not match(COPPER, Fingerprint("X", goods("B", masses[:3])), Q).weight
    assert not match(COPPER, Fingerprint("X", goods("B", masses, dims=(1.1, 1.0, 0.55))), Q).weight
    # the same box lying on another face is the same box
    assert match(COPPER, Fingerprint("X", goods("B", masses, dims=(0.4, 1.1, 1.0))), Q).weight
    # unmeasured dimensions neither confirm nor contradict
    assert match(COPPER, Fingerprint("X", goods("B", masses, dims=None)), Q).weight


def test_lot_pairing_is_one_to_one():
    """Two light lots cannot both pair with the one light lot of the other receipt."""
    a = Fingerprint("X", goods("A", [1000.0, 1000.0, 1040.0]))
    b = Fingerprint("Y", goods("B", [1000.0, 1020.0, 1020.0]))
    assert abs(a.total_mass_kg - b.total_mass_kg) < 1e-9
    assert not match(a, b, Quantum(mass_rel_tol=0.01)).weight


def test_bad_fingerprints_are_refused_with_the_reason():
    with pytest.raises(FingerprintError, match="receipt WR-1: no lots"):
        Fingerprint("WR-1", ())
    with pytest.raises(FingerprintError, match="lot A-0: mass_kg must be a positive finite number, got nan"):
        LotGoods("A-0", "EPC-0", "copper-cathode", math.nan)
    with pytest.raises(FingerprintError, match="tag listed twice: EPC-1"):
        Fingerprint("WR-1", (LotGoods("A", "EPC-1", "c", 1.0), LotGoods("B", "EPC-1", "c", 1.0)))
    with pytest.raises(FingerprintError, match="lot B: dims_m"):
        LotGoods("B", "EPC-2", "c", 1.0, (1.0, 0.0, 1.0))
    with pytest.raises(FingerprintError, match="mass_rel_tol"):
        Quantum(mass_rel_tol=0.0)
    bad = b'{"receipt": "WR-1", "lots": [{"lot": "A", "tag": "", "commodity": "c", "mass_kg": 1.0}]}'
    with pytest.raises(msgspec.ValidationError, match=r"lot A: tag is empty - at `\$.lots\[0\]`"):
        msgspec.json.decode(bad, type=Fingerprint)


def test_fingerprint_from_the_collateral_book():
    book = CollateralBook()
    book.open_loan(Loan("LN-1", "bank-a", "acme", 1e6))
    for i, mass in enumerate([2500.0, 2510.0]):
        book.add_lot(Lot(f"B09-0{i}", f"EPC-B09-0{i}", "small", "copper-cathode", mass, "B09"))
    book.pledge("LN-1", ["B09-00", "B09-01"], "WR-7")
    fp = fingerprint_from_book(book, "WR-7", {"B09-00": (1.1, 1.0, 0.4)})
    assert fp.receipt == "WR-7" and fp.tags == ("EPC-B09-00", "EPC-B09-01")
    assert fp.lots[0].dims_m == (1.1, 1.0, 0.4) and fp.lots[1].dims_m is None
    with pytest.raises(FingerprintError, match="receipt WR-8 is not in the collateral book"):
        fingerprint_from_book(book, "WR-8")
    book.add_lot(Lot("G-1", "G-1", "small", "unregistered", 0.0, None))  # as the cloud adds unknown arrivals
    book.pledge("LN-1", ["G-1"], "WR-9")
    with pytest.raises(FingerprintError, match="lot G-1: mass_kg must be a positive finite number, got 0.0"):
        fingerprint_from_book(book, "WR-9")


lot_goods = st.builds(
    lambda mass, dims, commodity: (commodity, mass, dims),
    st.floats(500.0, 30000.0),
    st.none() | st.tuples(*[st.floats(0.2, 3.0)] * 3),
    st.sampled_from(["steel-coil", "copper-cathode"]),
)


def _fp(receipt: str, prefix: str, lots) -> Fingerprint:
    return Fingerprint(
        receipt, tuple(LotGoods(f"{prefix}{i}", f"T{prefix}{i}", c, m, d) for i, (c, m, d) in enumerate(lots))
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(lot_goods, min_size=1, max_size=6), st.lists(lot_goods, min_size=1, max_size=6), st.floats(0.001, 0.05))
def test_match_is_symmetric(a_lots, b_lots, tol):
    a, b = _fp("R1", "a", a_lots), _fp("R2", "a", b_lots)  # same prefix: some lot ids and tags coincide
    q = Quantum(mass_rel_tol=tol)
    assert match(a, b, q) == match(b, a, q)


@settings(max_examples=150, deadline=None)
@given(st.lists(lot_goods, min_size=1, max_size=6), st.data(), st.floats(0.001, 0.05))
def test_reweighed_and_relabelled_goods_match_and_distant_goods_do_not(lots, data, tol):
    q = Quantum(mass_rel_tol=tol, dim_tol_m=0.05)
    original = _fp("R1", "a", lots)
    # each lot re-weighed within the tolerance, re-measured within dim_tol, lots reordered
    within = st.floats(1 / (1 + tol * 0.999), 1 + tol * 0.999)
    factors = data.draw(st.lists(within, min_size=len(lots), max_size=len(lots)))
    shift = data.draw(st.floats(-0.0499, 0.0499))
    moved = [(c, m * f, None if d is None else tuple(x + shift for x in d)) for (c, m, d), f in zip(lots, factors)]
    moved = data.draw(st.permutations(moved))
    assert match(original, _fp("R2", "b", moved), q).components == ("weight",)
    # goods heavier by more than a ratio (1 + tol)² never match (their totals are too far apart)
    far = [(c, m * (1 + tol) ** 2 * 1.0001, d) for c, m, d in lots]
    assert not match(original, _fp("R3", "c", far), q).weight


# The registry

def filing(reg: str, at: float, fp: Fingerprint = COPPER, bank: str = "bank-a", site: str = "qd-1",
           pledgor: str = "acme") -> Filing:
    return Filing(reg, bank, pledgor, site, fp.receipt, fp, at)


def test_filings_become_public_after_the_lag_and_are_handed_out_once_in_order():
    reg = PledgeRegistry(lag_s=600)
    reg.file(filing("G2", 50.0, relabel(COPPER, "WR-2", "B")))
    reg.file(filing("G1", 0.0))
    assert reg.search(599.0, tag="EPC-A-0") == () and reg.status("G1", 599.0) == "pending"
    assert [e.registration for e in reg.events_until(620.0)] == ["G1"]
    assert reg.search(620.0, tag="EPC-A-0")[0].visible_at == 600.0
    reg.cancel(Cancellation("G1", "bank-a", 100.0))
    reg.transfer(Transfer("T1", "acme", "other", 60.0, registration="G2"))
    late = reg.events_until(800.0)
    assert [type(e) for e in late] == [RegistrationVisible, TransferVisible, CancellationVisible]
    assert [e.visible_at for e in late] == [650.0, 660.0, 700.0]
    assert reg.events_until(800.0) == () and len(reg.visible(800.0)) == 4
    assert reg.status("G1", 699.0) == "active" and reg.status("G1", 700.0) == "cancelled"
    assert [e.registration for e in reg.active(800.0)] == ["G2"]


def test_within_one_instant_a_registration_precedes_what_refers_to_it():
    reg = PledgeRegistry(lag_s=60)
    reg.file(filing("G1", 0.0))
    reg.cancel(Cancellation("G1", "bank-a", 0.0))  # withdrawn at once, e.g. a mistaken filing
    reg.transfer(Transfer("T1", "acme", "buyer", 0.0, registration="G1"))
    assert [type(e) for e in reg.events_until(60.0)] == [RegistrationVisible, TransferVisible, CancellationVisible]


def test_search_by_each_component_sees_only_what_is_visible():
    reg = PledgeRegistry(lag_s=10)
    reg.file(filing("G1", 0.0))
    reg.file(filing("G2", 0.0, relabel(COPPER, "WR-2", "B", 1.002), bank="bank-b", site="qd-2"))
    reg.file(filing("G3", 0.0, Fingerprint("WR-3", goods("C", [2480.0, 2530.0, 2555.0, 2590.0], "steel-coil"))))
    ids = lambda found: [e.registration for e in found]  # noqa: E731
    assert ids(reg.search(10, lot="A-2")) == ["G1"]
    assert ids(reg.search(10, receipt="WR-2")) == ["G2"]
    assert ids(reg.search(10, weight_of=COPPER)) == ["G1", "G2"]  # steel of equal weight is not copper
    assert ids(reg.search(9.9, weight_of=COPPER)) == []
    reg.cancel(Cancellation("G1", "bank-a", 5.0))
    assert ids(reg.search(15, tag="EPC-A-1")) == []
    assert ids(reg.search(15, tag="EPC-A-1", include_cancelled=True)) == ["G1"]
    with pytest.raises(RegistryError, match="exactly one of tag, lot, receipt or weight_of"):
        reg.search(15, tag="EPC-A-1", lot="A-1")


def test_invalid_filings_are_refused_with_clear_errors():
    reg = PledgeRegistry(lag_s=60)
    reg.file(filing("G1", 0.0))
    cases = [
        (lambda: reg.file(filing("G1", 5.0)), "registration G1: already filed"),
        (lambda: reg.cancel(Cancellation("G9", "bank-a", 5.0)), "cancellation of G9: unknown registration"),
        (lambda: reg.cancel(Cancellation("G1", "bank-b", 5.0)), "only the registering bank bank-a may cancel"),
        (lambda: reg.cancel(Cancellation("G1", "bank-a", -1.0)), "precedes the registration"),
        (lambda: reg.transfer(Transfer("T1", "acme", "x", 5.0, registration="G9")), "unknown registration G9"),
        (lambda: reg.transfer(Transfer("T1", "acme", "x", 5.0, registration="G1", receipt="WR-2")),
         "receipt WR-2 is not the receipt of G1"),
        (lambda: Transfer("T1", "acme", "acme", 5.0, receipt="WR-1"), "from_owner and to_owner are both acme"),
        (lambda: Transfer("T1", "acme", "x", 5.0), "names no goods"),
        (lambda: Filing("G2", "bank-a", "acme", "qd-1", "WR-2", COPPER, 0.0),
         "fingerprint is of receipt WR-1, not WR-2"),
        (lambda: Filing("G2", "", "acme", "qd-1", "WR-1", COPPER, 0.0), "registration G2: bank is empty"),
        (lambda: Filing("G2", "bank-a", "acme", "qd-1", "WR-1", COPPER, math.inf), "filed_at must be a finite time"),
        (lambda: PledgeRegistry(lag_s=-1), "lag_s must be"),
    ]
    for action, message in cases:
        with pytest.raises(RegistryError, match=message):
            action()
    reg.cancel(Cancellation("G1", "bank-a", 5.0))
    with pytest.raises(RegistryError, match="already cancelled"):
        reg.cancel(Cancellation("G1", "bank-a", 6.0))
    reg.events_until(100.0)
    with pytest.raises(RegistryError, match="back-dated filings are refused"):
        reg.file(filing("G3", 40.0, relabel(COPPER, "WR-3", "C")))  # visible at 100, already published
    with pytest.raises(RegistryError, match="before the published horizon"):
        reg.events_until(99.0)
    assert reg.visible(100.0)[-1].registration == "G1"  # refusals changed nothing
    with pytest.raises(LookupError, match=r"extra\['registry'\]"):
        registry_of(CloudContext(book=None, shadows={}, edge_last_heard={}))


filing_times = st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=80, deadline=None)
@given(filing_times, st.floats(0, 900), st.randoms(use_true_random=False))
def test_visibility_is_filed_at_plus_lag_whatever_the_filing_order(times, lag, rnd):
    def build(order):
        reg = PledgeRegistry(lag_s=lag)
        for i in order:
            reg.file(filing(f"G{i}", times[i], relabel(COPPER, f"WR-{i}", f"L{i}")))
        return reg

    order = list(range(len(times)))
    first = build(order)
    rnd.shuffle(order)
    second = build(order)
    end = max(times) + lag
    assert first.visible(end) == second.visible(end)
    events = first.events_until(end)
    assert len(events) == len(times)
    assert all(e.visible_at == e.filed_at + lag for e in events)
    assert [event_key(e) for e in events] == sorted(event_key(e) for e in events)


class RegistryMachine(RuleBasedStateMachine):
    """Filings, transfers, cancellations and time against a plain model of what is due when."""

    @initialize(lag=st.floats(0.5, 120))
    def start(self, lag):
        self.reg = PledgeRegistry(lag_s=lag)
        self.lag = lag
        self.now = 0.0
        self.filed: dict[str, float] = {}  # registration → filed_at
        self.cancelled: dict[str, float] = {}  # registration → cancellation filed_at
        self.due: dict[tuple[str, str], float] = {}  # (kind, id) → visible_at
        self.handed_out: list = []

    @rule(delay=st.floats(0, 200))
    def file(self, delay):
        reg_id = f"G{len(self.filed)}"
        at = self.now + delay
        fp = relabel(COPPER, f"WR-{reg_id}", reg_id)
        self.reg.file(filing(reg_id, at, fp, bank=f"bank-{len(self.filed) % 3}"))
        self.filed[reg_id] = at
        self.due[("registration", reg_id)] = at + self.lag

    @precondition(lambda self: any(r not in self.cancelled for r in self.filed))
    @rule(data=st.data(), delay=st.floats(0, 200))
    def cancel(self, data, delay):
        reg_id = data.draw(st.sampled_from(sorted(r for r in self.filed if r not in self.cancelled)))
        at = max(self.now, self.filed[reg_id]) + delay
        bank = self.reg.registration(reg_id).bank
        self.reg.cancel(Cancellation(reg_id, bank, at))
        self.cancelled[reg_id] = at
        self.due[("cancellation", reg_id)] = at + self.lag

    @precondition(lambda self: self.filed)
    @rule(data=st.data(), delay=st.floats(0, 200))
    def transfer(self, data, delay):
        reg_id = data.draw(st.sampled_from(sorted(self.filed)))
        at = max(self.now, self.filed[reg_id]) + delay
        t_id = f"T{sum(1 for k in self.due if k[0] == 'transfer')}"
        self.reg.transfer(Transfer(t_id, "acme", "buyer", at, registration=reg_id))
        self.due[("transfer", t_id)] = at + self.lag

    @rule()
    def backdated_filing_is_refused(self):
        if self.now == 0.0:
            return
        with pytest.raises(RegistryError, match="back-dated"):
            self.reg.file(filing("late", self.now - self.lag - 1.0, relabel(COPPER, "WR-late", "late")))

    @rule(step=st.floats(0, 300))
    def advance(self, step):
        self.now += step
        fresh = self.reg.events_until(self.now)
        self.handed_out.extend(fresh)
        expected = {k for k, v in self.due.items() if v <= self.now}
        got = [self._ident(e) for e in self.handed_out]
        assert len(got) == len(set(got)), "an event was handed out twice"
        assert set(got) == expected

    @staticmethod
    def _ident(event) -> tuple[str, str]:
        if isinstance(event, TransferVisible):
            return ("transfer", event.transfer)
        kind = "registration" if isinstance(event, RegistrationVisible) else "cancellation"
        return (kind, event.registration)

    @invariant()
    def handed_out_in_visibility_order(self):
        keys = [event_key(e) for e in self.handed_out]
        assert keys == sorted(keys)
        assert all(e.visible_at == e.filed_at + self.lag and e.visible_at <= self.now for e in self.handed_out)

    @invariant()
    def status_follows_the_model(self):
        active = {e.registration for e in self.reg.active(self.now)}
        for reg_id, at in self.filed.items():
            cancel = self.cancelled.get(reg_id)
            status = self.reg.status(reg_id, self.now)
            if at + self.lag > self.now:
                assert status == "pending"
            elif cancel is not None and cancel + self.lag <= self.now:
                assert status == "cancelled" and reg_id not in active
            else:
                assert status == "active" and reg_id in active


RegistryMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestRegistryMachine = RegistryMachine.TestCase
