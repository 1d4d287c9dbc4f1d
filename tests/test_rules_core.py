"""The spine's rules: outbound-unauthorized and message-integrity, and gate fusion."""

from __future__ import annotations

from cangtwin.platform.edge.fusion import GateFusion, Passage
from cangtwin.platform.records import GateEvent, Rejection
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.context import EdgeContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.ruleset import load_ruleset


def _context() -> EdgeContext:
    book = BookView()
    book.pledged = {"B01-01": "LN-1", "B01-02": "LN-1"}
    book.lot_by_tag = {"EPC-B01-01": "B01-01", "EPC-B01-02": "B01-02", "EPC-B07-01": "B07-01"}
    return EdgeContext("small", book, devices={})


def _gate(lots, direction="out", gid="G-1") -> GateEvent:
    return GateEvent(id=gid, site="small", gate="G1", direction=direction, lots=tuple(lots), unknown_tags=(),
                     event_time=10.0, received_at=10.01)


def test_outbound_of_a_pledged_lot_without_release_fires_once_per_gate_event():
    engine, ctx = RuleEngine(load_ruleset(), "small"), _context()
    [alert] = engine.evaluate(_gate(["B01-01", "B07-01"]), ctx, raised_at=10.5)
    assert alert.rule == "outbound-unauthorized" and alert.targets == ("lot:B01-01",)
    assert alert.event_time == 10.0 and alert.observed_at == 10.01 and alert.raised_at == 10.5
    assert alert.severity == "critical" and alert.section == "4.5 出入库监管"
    assert engine.evaluate(_gate(["B01-01"]), ctx, raised_at=11) == []  # the same event again


def test_honest_near_misses_are_silent():
    engine, ctx = RuleEngine(load_ruleset(), "small"), _context()
    ctx.book.released = {"B01-02"}
    del ctx.book.pledged["B01-02"]  # an authorized release
    assert engine.evaluate(_gate(["B01-02"], gid="G-2"), ctx, 1.0) == []
    assert engine.evaluate(_gate(["B07-01"], gid="G-3"), ctx, 1.0) == []  # unpledged goods
    assert engine.evaluate(_gate(["B01-01"], direction="in", gid="G-4"), ctx, 1.0) == []  # coming in


def test_integrity_alerts_once_per_device_and_reason_per_window():
    engine, ctx = RuleEngine(load_ruleset(), "small"), _context()
    first = engine.evaluate(Rejection("bad-signature", "x", "scale-wb1", 100.0), ctx, 100.0)
    assert [a.targets for a in first] == [("device:scale-wb1",)]
    assert engine.evaluate(Rejection("bad-signature", "x", "scale-wb1", 150.0), ctx, 150.0) == []
    assert len(engine.evaluate(Rejection("replayed-seq", "x", "scale-wb1", 150.0), ctx, 150.0)) == 1
    assert len(engine.evaluate(Rejection("bad-signature", "x", "scale-wb1", 401.0), ctx, 401.0)) == 1
    [anon] = engine.evaluate(Rejection("malformed", "x", None, 1.0), ctx, 1.0)
    assert anon.targets == ("device:unidentified",)


def test_fusion_takes_the_reads_around_a_passage_and_uses_each_read_once():
    fusion, ctx = GateFusion("small", window_s=20.0, grace_s=0.5), _context()
    fusion.add_read("G1", "EPC-B01-01", 95.0)
    fusion.add_read("G1", "EPC-B01-01", 96.0)  # read twice: one lot
    fusion.add_read("G1", "EPC-XXXX", 97.0)
    fusion.add_read("G1", "EPC-B01-02", 70.0)  # an earlier truck's read, outside the window
    event = fusion.close(Passage("G1", "out", 100.0, 100.01), ctx.book)
    assert event.lots == ("B01-01",) and event.unknown_tags == ("EPC-XXXX",)
    assert event.event_time == 100.0 and event.direction == "out"
    again = fusion.close(Passage("G1", "out", 101.0, 101.01), ctx.book)
    assert again.lots == () and again.id != event.id
