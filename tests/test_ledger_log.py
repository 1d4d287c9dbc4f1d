"""The durable evidence log (open, append, damage, audit) and the endorse-order-commit pipeline."""

from __future__ import annotations

import struct
from itertools import pairwise

import pytest
import simpy

from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.ledger.log import (
    MAGIC,
    EvidenceLog,
    LogBusyError,
    LogCorruptError,
    audit_log,
)
from cangtwin.platform.ledger.merkle import (
    leaf_hashes,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from cangtwin.platform.ledger.pipeline import EvidencePipeline, PipelineConfig, Receipt
from cangtwin.platform.ledger.tree_head import (
    HeadVerifier,
    QuorumError,
    TreeHead,
    add_signatures,
    generate_party_keys,
    public_key_bytes,
    sign_tree_head,
    verify_quorum,
)

BLOCKS = [[b"weigh ticket %d" % i for i in range(b * 10, b * 10 + 3 + b)] for b in range(4)]
RECORD = 4 + 32
COMMIT = 4 + 8 + 32


def make_log(path, blocks=BLOCKS):
    heads = []
    with EvidenceLog.open(path, create=True) as log:
        for t, block in enumerate(blocks):
            heads.append(log.append_block(block, timestamp=float(t))[1])
    return heads


def record_offsets(blocks=BLOCKS):
    """Byte offset of every entry record and commit record, from the documented format."""
    entries, commits, pos = [], [], len(MAGIC)
    for block in blocks:
        for e in block:
            entries.append(pos)
            pos += RECORD + len(e)
        commits.append(pos)
        pos += COMMIT
    return entries, commits, pos


def all_entries(blocks=BLOCKS):
    return [e for b in blocks for e in b]


def test_append_returns_first_index_and_the_rfc6962_head(tmp_path):
    with EvidenceLog.open(tmp_path / "log", create=True) as log:
        assert log.size == 0
        first, head = log.append_block([b"a", b"b", b"c"], timestamp=5.0)
        assert (first, head.size, head.timestamp) == (0, 3, 5.0)
        first, head = log.append_block([b"d"], timestamp=6.0)
        assert first == 3
        assert head.root == root_from_leaf_hashes(leaf_hashes([b"a", b"b", b"c", b"d"]))
        assert [log.entry(i) for i in range(4)] == [b"a", b"b", b"c", b"d"]
        with pytest.raises(ValueError, match="at least one entry"):
            log.append_block([])


def test_reopen_restores_entries_roots_and_proofs(tmp_path):
    heads = make_log(tmp_path / "log")
    _, _, file_size = record_offsets()
    assert (tmp_path / "log").stat().st_size == file_size
    with EvidenceLog.open(tmp_path / "log") as log:
        assert log.size == len(all_entries())
        assert [log.entry(i) for i in range(log.size)] == all_entries()
        for h in heads:
            assert log.root(h.size) == h.root
        proof = log.inclusion_proof(4, heads[2].size)
        assert verify_inclusion(log.tree.leaf_hash(4), 4, heads[2].size, proof, heads[2].root)
        proof = log.consistency_proof(heads[0].size, heads[3].size)
        assert verify_consistency(heads[0].size, heads[3].size, heads[0].root, heads[3].root, proof)
        first, _ = log.append_block([b"more"])
        assert first == len(all_entries())


def test_a_second_writer_is_refused(tmp_path):
    make_log(tmp_path / "log")
    with EvidenceLog.open(tmp_path / "log"), pytest.raises(LogBusyError, match="another writer"):
        EvidenceLog.open(tmp_path / "log")


def test_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no evidence log"):
        EvidenceLog.open(tmp_path / "absent")


def corrupt(path, offset, xor=0x01):
    blob = bytearray(path.read_bytes())
    blob[offset] ^= xor
    path.write_bytes(bytes(blob))


def test_flipped_data_byte_names_entry_and_offset_and_keeps_the_intact_prefix(tmp_path):
    path = tmp_path / "log"
    make_log(path)
    entries, _, _ = record_offsets()
    victim = 8  # in block 2 (entries 7..11)
    corrupt(path, entries[victim] + RECORD + 2)
    with pytest.raises(LogCorruptError) as err:
        EvidenceLog.open(path)
    damage = err.value.damage
    assert (damage.kind, damage.entry_index, damage.offset) == ("leaf_hash_mismatch", victim,
                                                                entries[victim])
    assert f"entry {victim}" in str(err.value) and f"offset {entries[victim]}" in str(err.value)
    with EvidenceLog.open(path, strict=False) as log:
        assert log.size == damage.intact_size == 7
        assert log.root() == root_from_leaf_hashes(leaf_hashes(all_entries()[:7]))
        with pytest.raises(LogCorruptError):
            log.append_block([b"refused while damaged"])
        sidecar = log.recover()
        assert sidecar.read_bytes()[:4] == struct.pack(">I", len(all_entries()[7]))
        log.append_block([b"after recovery"])
    with EvidenceLog.open(path) as log:
        assert log.size == 8 and log.entry(7) == b"after recovery"


def test_torn_tail_is_reported_as_an_interrupted_append(tmp_path):
    path = tmp_path / "log"
    make_log(path)
    _, commits, _ = record_offsets()
    blob = path.read_bytes()
    path.write_bytes(blob[:commits[2]])  # block 2's entries without its commit record
    with pytest.raises(LogCorruptError) as err:
        EvidenceLog.open(path)
    damage = err.value.damage
    assert damage.kind == "uncommitted_tail" and damage.intact_size == 7
    assert damage.entry_index == 12 and damage.offset == commits[2]


def test_record_cut_short_is_reported_where_it_starts(tmp_path):
    path = tmp_path / "log"
    make_log(path)
    entries, _, _ = record_offsets()
    path.write_bytes(path.read_bytes()[:entries[5] + 10])
    with pytest.raises(LogCorruptError) as err:
        EvidenceLog.open(path)
    assert (err.value.damage.kind, err.value.damage.entry_index) == ("truncated", 5)
    assert err.value.damage.offset == entries[5]


def test_not_a_log_is_reported_at_offset_zero(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"hello world")
    with pytest.raises(LogCorruptError, match="bad_header at entry 0, byte offset 0"):
        EvidenceLog.open(path)


def test_commit_record_edits_are_caught(tmp_path):
    path = tmp_path / "log"
    make_log(path)
    _, commits, _ = record_offsets()
    corrupt(path, commits[1] + 6)  # the size field of block 1's commit
    with pytest.raises(LogCorruptError) as err:
        EvidenceLog.open(path)
    assert err.value.damage.kind == "commit_size_mismatch" and err.value.damage.entry_index == 7
    corrupt(path, commits[1] + 6)
    corrupt(path, commits[1] + 20)  # its root
    with pytest.raises(LogCorruptError) as err:
        EvidenceLog.open(path)
    assert err.value.damage.kind == "commit_root_mismatch" and err.value.damage.entry_index == 3


def test_entry_edited_after_open_is_caught_on_read(tmp_path):
    path = tmp_path / "log"
    make_log(path)
    entries, _, _ = record_offsets()
    with EvidenceLog.open(path) as log:
        corrupt(path, entries[2] + RECORD)
        with pytest.raises(LogCorruptError, match="changed on disk"):
            log.entry(2)


def forged_rewrite(path, blocks):
    """What a capable insider does: rebuild the whole file so every hash and commit agrees."""
    path.unlink()
    make_log(path, blocks)


def test_audit_of_an_honest_log_finds_nothing(tmp_path):
    heads = make_log(tmp_path / "log")
    report = audit_log(tmp_path / "log", heads)
    assert report.ok and report.attested_size == heads[-1].size and report.location is None


def test_audit_locates_a_consistent_rewrite_within_a_block_and_exactly_with_a_replica(tmp_path):
    heads = make_log(tmp_path / "honest")
    make_log(tmp_path / "copy")
    forged = [list(b) for b in BLOCKS]
    forged[2][1] = b"weigh ticket 21 (edited)"  # entry 3 + 4 + 1 = 8
    forged_rewrite(tmp_path / "copy", forged)
    assert EvidenceLog.open(tmp_path / "copy").size == heads[-1].size  # internally consistent
    report = audit_log(tmp_path / "copy", heads)
    assert not report.ok and report.findings[0].kind == "edited"
    assert report.attested_size == heads[1].size == 7 and report.location == (7, 12)
    with EvidenceLog.open(tmp_path / "honest") as replica:
        report = audit_log(tmp_path / "copy", heads, reference=replica)
    assert report.location == (8, 9) and report.findings[0].first_index == 8


def test_audit_detects_truncation_at_a_block_boundary(tmp_path):
    heads = make_log(tmp_path / "log")
    _, commits, _ = record_offsets()
    path = tmp_path / "log"
    path.write_bytes(path.read_bytes()[:commits[1] + COMMIT])
    EvidenceLog.open(path).close()  # a shorter log is still well formed
    report = audit_log(path, heads)
    assert [f.kind for f in report.findings] == ["truncated"]
    assert report.findings[0].first_index == 7 and report.location == (7, heads[2].size)


def test_audit_locates_byte_damage_exactly(tmp_path):
    heads = make_log(tmp_path / "log")
    entries, _, _ = record_offsets()
    corrupt(tmp_path / "log", entries[10] + RECORD + 1)
    report = audit_log(tmp_path / "log", heads)
    assert report.location == (10, 11)
    assert {f.kind for f in report.findings} == {"damage", "truncated"}


def test_audit_flags_split_view_heads_and_heads_without_quorum(tmp_path):
    heads = make_log(tmp_path / "log")
    keys = generate_party_keys()
    verifier = HeadVerifier(public_key_bytes(keys), required=3)
    signed = [sign_tree_head(h, keys) for h in heads]
    rogue = sign_tree_head(TreeHead(heads[1].size, b"\x07" * 32, 9.0),
                           {"platform": keys["platform"]})
    report = audit_log(tmp_path / "log", [*signed, rogue], verifier=verifier)
    assert [f.kind for f in report.findings] == ["bad_head"]
    both = sign_tree_head(rogue.head, keys)
    report = audit_log(tmp_path / "log", [*signed, both], verifier=verifier)
    assert [f.kind for f in report.findings] == ["heads_conflict"]


def run_pipeline(tmp_path, arrivals, config=None):
    env = simpy.Environment()
    clock = SimPyClock(env)
    keys = generate_party_keys()
    log = EvidenceLog.open(tmp_path / "pipe.log", create=True)
    pipeline = EvidencePipeline(clock, log, keys, config)
    receipts: list[Receipt] = []
    for i, at in enumerate(arrivals):
        clock.call_later(at, lambda i=i: pipeline.submit(b"evidence %d" % i, receipts.append))
    env.run()
    log.close()
    return pipeline, receipts, keys


def test_pipeline_single_submission_waits_for_the_block_timeout(tmp_path):
    cfg = PipelineConfig(endorse_time=0.01, block_timeout=0.2, commit_base=0.05,
                         commit_per_entry=0.0, sign_time=0.003)
    pipeline, receipts, _ = run_pipeline(tmp_path, [1.0], cfg)
    (r,) = receipts
    assert (r.index, r.tree_size) == (0, 1)
    assert r.endorsed_at == pytest.approx(1.01) and r.ordered_at == pytest.approx(1.21)
    assert r.time_to_integrate == pytest.approx(0.01 + 0.2 + 0.05 + 0.003)
    assert pipeline.in_flight == 0 and len(pipeline.heads) == 1


def test_pipeline_cuts_full_blocks_and_signs_consistent_heads(tmp_path):
    cfg = PipelineConfig(max_block_entries=50, block_timeout=0.5)
    arrivals = [i * 0.001 for i in range(230)]  # 1000/s: size cuts, then one timeout cut
    pipeline, receipts, keys = run_pipeline(tmp_path, arrivals, cfg)
    assert sorted(r.index for r in receipts) == list(range(230))
    assert [h.head.size for h in pipeline.heads] == [50, 100, 150, 200, 230]
    public = public_key_bytes(keys)
    for sth in pipeline.heads:
        assert verify_quorum(sth, public, required=4) == sorted(keys)
    with EvidenceLog.open(tmp_path / "pipe.log") as log:
        for a, b in pairwise(pipeline.heads):
            proof = log.consistency_proof(a.head.size, b.head.size)
            assert verify_consistency(a.head.size, b.head.size, a.head.root, b.head.root, proof)
        for r in receipts[::17]:
            assert log.entry(r.index) == b"evidence %d" % r.index
            assert r.index < r.tree_size
    assert max(r.time_to_integrate for r in receipts) < 1.0
    assert all(r.submitted_at <= r.endorsed_at <= r.ordered_at < r.integrated_at
               for r in receipts)


def test_pipeline_queues_when_endorsers_are_saturated(tmp_path):
    cfg = PipelineConfig(endorsers=2, endorse_time=0.1, max_block_entries=1000, block_timeout=1.0)
    _, receipts, _ = run_pipeline(tmp_path, [0.0] * 6, cfg)
    assert sorted(r.endorsed_at for r in receipts) == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])


def test_pipeline_is_deterministic_under_simpy(tmp_path):
    arrivals = [(i * 7919 % 1000) / 400 for i in range(300)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, first, _ = run_pipeline(tmp_path / "a", arrivals)
    _, second, _ = run_pipeline(tmp_path / "b", arrivals)
    key = [(r.index, r.submitted_at, r.integrated_at) for r in first]
    assert key == [(r.index, r.submitted_at, r.integrated_at) for r in second]


def test_a_reference_shorter_than_the_failing_head_leaves_the_range(tmp_path):
    heads = make_log(tmp_path / "honest")
    forged = [list(b) for b in BLOCKS]
    forged[3][0] = b"weigh ticket 30 (edited)"
    make_log(tmp_path / "copy", forged)
    make_log(tmp_path / "short", BLOCKS[:2])
    with EvidenceLog.open(tmp_path / "short") as replica:
        report = audit_log(tmp_path / "copy", heads, reference=replica)
    assert report.location == (12, 18) and report.findings[0].first_index is None


def test_parties_co_sign_a_head_until_it_reaches_quorum(tmp_path):
    head = make_log(tmp_path / "log")[-1]
    keys = generate_party_keys()
    public = public_key_bytes(keys)
    sth = sign_tree_head(head, {"platform": keys["platform"]})
    with pytest.raises(QuorumError, match="1 valid signatures of 3") as err:
        verify_quorum(sth, public, required=3)
    assert err.value.valid == ["platform"]
    sth = add_signatures(sth, {n: keys[n] for n in ("bank", "regulator")})
    assert verify_quorum(sth, public, required=3) == ["bank", "platform", "regulator"]
