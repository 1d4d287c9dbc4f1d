"""evidence-tamper: lost buffer ranges at the edge, and an edited ledger at rest."""

from __future__ import annotations

from pathlib import Path

import simpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.cloud.evidence import EvidenceRecorder
from cangtwin.platform.ledger.tree_head import PARTIES
from cangtwin.platform.records import OutboxGap
from cangtwin.platform.rules.context import CloudContext
from cangtwin.platform.rules.evidence_tamper import Entry as GapEntry, EvidenceTamper
from cangtwin.platform.rules.ledger_audit import Entry as AuditEntry, LedgerAudit
from cangtwin.platform.rules.ruleset import load_ruleset
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import run_scenario
from cangtwin.scenarios.spec import load_scenario

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"


def _gap(reason: str, count: int) -> OutboxGap:
    return OutboxGap("small", 10, 10 + count - 1, count, reason, "d", b"cp", 5.0)


def test_gap_rule_alerts_on_losses_beyond_tolerance_and_always_on_corruption():
    rule = EvidenceTamper(GapEntry(id="evidence-tamper", kind="evidence-tamper", category="integrity",
                                   severity="critical", section="5 数字化能力要求",
                                   params={"tolerated_evictions": 5}))
    assert rule.evaluate(_gap("ttl", 5), None) == []  # within what the bank tolerates
    [finding] = rule.evaluate(_gap("overflow", 6), None)
    assert finding.targets == ("edge:small",) and finding.detail["count"] == 6
    assert len(rule.evaluate(_gap("corrupt", 1), None)) == 1


def test_an_edited_ledger_fails_the_cloud_audit(tmp_path):
    env = simpy.Environment(initial_time=1000.0)
    parties = {name: Ed25519PrivateKey.generate() for name in PARTIES}
    recorder = EvidenceRecorder(SimPyClock(env), tmp_path / "ledger.log", parties)
    recorder.ruleset_activated(load_ruleset(), env.now)
    for n in range(20):
        env.timeout(n * 0.05).callbacks.append(lambda _e: recorder.ruleset_activated(load_ruleset(), env.now))
    env.run(until=1010.0)
    assert recorder.heads and recorder.audit().ok
    rule = LedgerAudit(AuditEntry(id="evidence-tamper-ledger", kind="ledger-audit", category="integrity",
                                  severity="critical", section="5 数字化能力要求"))
    ctx = CloudContext(book=None, shadows={}, edge_last_heard={}, extra={"evidence": recorder})
    assert rule.on_time(1010.0, ctx) == []
    data = bytearray((tmp_path / "ledger.log").read_bytes())
    data[len(data) // 2] ^= 0x20  # someone edits stored evidence
    (tmp_path / "ledger.log").write_bytes(bytes(data))
    assert rule.on_time(1030.0, ctx) == []  # not yet due: audits run every audit_every_s
    [finding] = rule.on_time(1071.0, ctx)
    assert finding.targets == ("ledger:evidence",) and "first bad entry" in finding.summary
    recorder.close()


def test_overflowing_outbox_reports_every_evicted_range_and_alerts_still_arrive(tmp_path):
    outcome = run_scenario(load_scenario(LIBRARY / "outbox-overflow.yaml"), tmp_path)
    result = build_result(outcome, "n/a")
    gaps = [a for a in result["alerts"] if a["rule"] == "evidence-tamper"]
    assert gaps and sum(a["detail"]["count"] for a in gaps) == outcome.messages["outbox_evicted"] > 0
    assert outcome.messages["records_lost"] == outcome.messages["outbox_evicted"]  # nothing lost unreported
    assert result["detections"]["theft-1"]["bank_latency_s"] is not None
    assert result["status"] == "SUCCESS"
