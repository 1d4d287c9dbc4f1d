"""Edits of bytes at rest: a ledger entry, an outbox row. Each caught by its integrity rule."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.fraud.edge_db_edit import edit_row
from cangtwin.fraud.ledger_edit import edit_entry
from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.cloud.evidence import EvidenceRecorder
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.ledger.log import scan_log
from cangtwin.platform.ledger.tree_head import PARTIES
from cangtwin.platform.rules.ruleset import load_ruleset

from injector_runs import latency, run_library


@pytest.fixture
def ledger(tmp_path):
    env = simpy.Environment(initial_time=1000.0)
    parties = {name: Ed25519PrivateKey.generate() for name in PARTIES}
    recorder = EvidenceRecorder(SimPyClock(env), tmp_path / "ledger.log", parties)
    for n in range(12):
        env.timeout(n * 0.5).callbacks.append(lambda _e: recorder.ruleset_activated(load_ruleset(), env.now))
    env.run(until=1010.0)
    assert recorder.audit().ok and recorder.log.size > 5
    yield recorder
    recorder.close()


@pytest.mark.parametrize("entry", [0, 3, 7])
def test_a_naive_edit_breaks_the_file_itself(ledger, entry):
    edit_entry(ledger.log.path, entry, rehash=False)
    damage = scan_log(ledger.log.path).damage
    assert damage is not None and damage.kind == "leaf_hash_mismatch" and damage.entry_index == entry
    assert not ledger.audit().ok


@pytest.mark.parametrize("entry", [0, 3, 7])
def test_a_rehashed_edit_passes_the_files_checks_but_not_the_signed_heads(ledger, entry):
    edit_entry(ledger.log.path, entry, rehash=True)
    assert scan_log(ledger.log.path).damage is None  # the forger fixed every unsigned hash
    report = ledger.audit()
    assert not report.ok and report.location[0] <= entry < report.location[1]


def test_editing_an_entry_that_does_not_exist_is_an_error(ledger):
    with pytest.raises(ValueError, match="no entry"):
        edit_entry(ledger.log.path, 10_000, rehash=True)


def test_an_edited_outbox_row_is_dropped_as_corrupt_when_the_outbox_reopens(tmp_path):
    path, key = tmp_path / "outbox.sqlite", Ed25519PrivateKey.generate()
    config = OutboxConfig(max_bytes=1 << 20, segment_bytes=1 << 16)
    outbox = Outbox(path, config, key)
    for n in range(20):
        outbox.append(b"record %d" % n, priority=1, now=float(n))
    outbox.close()
    seq = edit_row(path, np.random.default_rng(3))
    reopened = Outbox(path, config, key)
    [gap] = reopened.take_gaps()
    assert gap.reason == "corrupt" and gap.first_seq == seq == gap.last_seq
    reopened.close()


def test_ledger_edit_is_caught_by_the_cloud_audit_within_its_period():
    _, result = run_library("ledger-edit")
    assert result["status"] == "SUCCESS", result["criteria"]
    assert result["detections"]["edited"]["rule"] == "evidence-tamper-ledger"
    assert latency(result, "edited") <= 60.0 + 1.0  # audit_every_s, plus the tick
    [alert] = result["alerts"]
    assert "first bad entry in [2, 3)" in alert["summary"]


def test_edge_database_edit_is_caught_at_the_restart_and_reaches_the_bank_after_the_outage():
    outcome, result = run_library("edge-db-edit")
    assert result["status"] == "SUCCESS", result["criteria"]
    detection = result["detections"]["row-edited"]
    assert detection["rule"] == "evidence-tamper"
    assert detection["edge_latency_s"] <= 60.0 + 1.0  # the edge reopens its outbox 60 s after the edit
    assert outcome.messages["records_lost"] == 1  # exactly the altered row, reported as a gap
    assert result["false_alarms"] == []
