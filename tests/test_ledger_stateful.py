"""Stateful property test of the evidence log against a plain list model.

Through any sequence of appends and reopens the roots stay consistent and every proof verifies;
any single-bit flip, any truncation and any fork of a copy of the file is detected and located.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cangtwin.platform.ledger.log import MAGIC, EvidenceLog, LogCorruptError, audit_log
from cangtwin.platform.ledger.merkle import (
    leaf_hash,
    leaf_hashes,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from cangtwin.platform.ledger.tree_head import TreeHead

RECORD_OVERHEAD, COMMIT_SIZE = 4 + 32, 4 + 8 + 32


def model_root(entries: list[bytes]) -> bytes:
    return root_from_leaf_hashes(leaf_hashes(entries))


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-state-"))
        self.path = self.dir / "evidence.log"
        self.log = EvidenceLog.open(self.path, create=True)
        self.blocks: list[list[bytes]] = []
        self.heads: list[TreeHead] = []
        self.copies = 0

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.dir)

    @property
    def entries(self) -> list[bytes]:
        return [e for block in self.blocks for e in block]

    def layout(self) -> list[tuple[int, int, str, int, int]]:
        """(start, end, kind, first entry, last entry + 1) for every record, from the format."""
        records = [(0, len(MAGIC), "header", 0, 0)]
        pos, index = len(MAGIC), 0
        for block in self.blocks:
            first = index
            for e in block:
                records.append((pos, pos + RECORD_OVERHEAD + len(e), "entry", index, index + 1))
                pos += RECORD_OVERHEAD + len(e)
                index += 1
            records.append((pos, pos + COMMIT_SIZE, "commit", first, index))
            pos += COMMIT_SIZE
        return records

    def copy(self) -> Path:
        self.copies += 1
        target = self.dir / f"copy-{self.copies}.log"
        shutil.copyfile(self.path, target)
        return target

    @rule(block=st.lists(st.binary(max_size=40), min_size=1, max_size=6))
    def append_block(self, block: list[bytes]) -> None:
        first, head = self.log.append_block(block, timestamp=float(len(self.heads)))
        assert first == len(self.entries)
        self.blocks.append(block)
        assert head.size == len(self.entries) and head.root == model_root(self.entries)
        self.heads.append(head)

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = EvidenceLog.open(self.path)

    @precondition(lambda self: self.heads)
    @rule(data=st.data())
    def inclusion_proofs_verify(self, data: st.DataObject) -> None:
        head = data.draw(st.sampled_from(self.heads))
        index = data.draw(st.integers(0, head.size - 1))
        proof = self.log.inclusion_proof(index, head.size)
        assert verify_inclusion(leaf_hash(self.entries[index]), index, head.size, proof, head.root)

    @rule(data=st.data())
    def consistency_proofs_verify_between_any_two_sizes(self, data: st.DataObject) -> None:
        new = data.draw(st.integers(0, len(self.entries)))
        old = data.draw(st.integers(0, new))
        proof = self.log.consistency_proof(old, new)
        assert verify_consistency(old, new, model_root(self.entries[:old]),
                                  model_root(self.entries[:new]), proof)

    @rule(data=st.data())
    def any_bit_flip_is_detected_and_located(self, data: st.DataObject) -> None:
        target = self.copy()
        blob = bytearray(target.read_bytes())
        offset = data.draw(st.integers(0, len(blob) - 1))
        blob[offset] ^= 1 << data.draw(st.integers(0, 7))
        target.write_bytes(bytes(blob))
        start, _, kind, first, end = next(r for r in self.layout() if r[0] <= offset < r[1])

        with pytest.raises(LogCorruptError) as err:
            EvidenceLog.open(target).close()
        damage = err.value.damage
        assert damage.offset == start, (kind, damage)

        report = audit_log(target, self.heads)
        assert not report.ok and report.location is not None
        if kind == "entry":
            assert damage.entry_index == first and report.location == (first, first + 1)
        elif kind == "header":
            assert report.location == (0, 1)
        else:  # a commit record: pinned to its block, or to the position just after it
            assert first <= report.location[0] <= end

        with EvidenceLog.open(target, strict=False) as damaged:
            assert damaged.size == damage.intact_size <= report.location[0]
            assert damaged.root() == model_root(self.entries[:damaged.size])

    @rule(data=st.data())
    def any_truncation_is_detected_and_located(self, data: st.DataObject) -> None:
        target = self.copy()
        blob = target.read_bytes()
        cut = data.draw(st.integers(0, len(blob) - 1))
        target.write_bytes(blob[:cut])
        layout = self.layout()
        complete = sum(1 for r in layout if r[2] == "entry" and r[1] <= cut)
        committed = max([r[4] for r in layout if r[2] == "commit" and r[1] <= cut], default=0)

        report = audit_log(target, self.heads)
        assert not report.ok and report.location is not None
        assert report.location[0] == complete
        with EvidenceLog.open(target, strict=False) as damaged:
            assert damaged.size == committed
            assert damaged.root() == model_root(self.entries[:committed])

    @precondition(lambda self: self.heads)
    @rule(data=st.data())
    def any_fork_is_detected_and_located(self, data: st.DataObject) -> None:
        entries = self.entries
        fork_at = data.draw(st.integers(0, len(entries) - 1))
        forked = entries[:fork_at] + [e + b"\x00forked" for e in entries[fork_at:]]
        self.copies += 1
        target = self.dir / f"fork-{self.copies}.log"
        with EvidenceLog.open(target, create=True) as fork:
            pos = 0
            for block in self.blocks:  # same block sizes: an internally perfect forged history
                fork.append_block(forked[pos:pos + len(block)])
                pos += len(block)

        report = audit_log(target, self.heads)
        assert [f.kind for f in report.findings] == ["edited"]
        start, end = report.location
        assert start <= fork_at < end
        assert report.attested_size <= fork_at
        exact = audit_log(target, self.heads, reference=self.log)
        assert exact.location == (fork_at, fork_at + 1)

    @invariant()
    def log_matches_model(self) -> None:
        assert self.log.size == len(self.entries)
        assert self.log.root() == model_root(self.entries)


LedgerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=25,
                                           deadline=None)
TestLedgerStateful = LedgerMachine.TestCase
