"""Latency model of a Fabric-like endorse → order → commit pipeline in front of the evidence log.

The model is clock-agnostic: it only calls `clock.now()` and `clock.call_later()`, so it runs in
SimPy virtual time for tests and sweeps and in wall time as a live service. Service times are
modelled; the commit really appends to the `EvidenceLog` and the parties really sign, so the
tree heads it publishes are genuine.

- Endorse: `endorsers` peers in parallel, FIFO, `endorse_time` each.
- Order: endorsed submissions join a batch; the batch is cut into a block when it holds
  `max_block_entries` or `block_timeout` after its first submission (Fabric's BatchSize and
  BatchTimeout), whichever is first.
- Commit: one committer, blocks in order, `commit_base + commit_per_entry * n`; then the parties
  sign the new tree head (`sign_time`, in parallel with the next commit).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.clock import Clock
from cangtwin.platform.ledger.log import EvidenceLog
from cangtwin.platform.ledger.tree_head import SignedTreeHead, sign_tree_head


class PipelineConfig(msgspec.Struct, frozen=True):
    """Service times in seconds; defaults sized so time-to-integrate p99 stays under 1 s."""

    endorsers: int = 64  # peers × concurrent endorsements each: ~16k/s at 4 ms
    endorse_time: float = 0.004
    max_block_entries: int = 500
    block_timeout: float = 0.2
    commit_base: float = 0.015
    commit_per_entry: float = 0.00002
    sign_time: float = 0.002

    def __post_init__(self) -> None:
        if self.endorsers < 1 or self.max_block_entries < 1:
            raise ValueError("a pipeline needs at least one endorser and one entry per block")
        if min(self.endorse_time, self.block_timeout, self.commit_base, self.commit_per_entry,
               self.sign_time) < 0:
            raise ValueError("service times cannot be negative")


class Receipt(msgspec.Struct, frozen=True):
    """When one submission passed each stage, and where it landed in the log."""

    index: int
    tree_size: int  # size of the first signed tree head that includes it
    submitted_at: float
    endorsed_at: float
    ordered_at: float
    integrated_at: float

    @property
    def time_to_integrate(self) -> float:
        return self.integrated_at - self.submitted_at


class _Submission:
    __slots__ = ("endorsed_at", "entry", "on_receipt", "submitted_at")

    def __init__(self, entry: bytes, on_receipt: Callable[[Receipt], None] | None,
                 submitted_at: float) -> None:
        self.entry = entry
        self.on_receipt = on_receipt
        self.submitted_at = submitted_at
        self.endorsed_at = 0.0


class EvidencePipeline:
    """Submissions in, durable log entries and signed tree heads out, with modelled latency."""

    def __init__(self, clock: Clock, log: EvidenceLog, signers: Mapping[str, Ed25519PrivateKey],
                 config: PipelineConfig | None = None,
                 on_head: Callable[[SignedTreeHead], None] | None = None) -> None:
        self.clock = clock
        self.log = log
        self.signers = dict(signers)
        self.config = config or PipelineConfig()
        self.on_head = on_head
        self.heads: list[SignedTreeHead] = []
        self._endorser_free = [0.0] * self.config.endorsers
        self._batch: list[_Submission] = []
        self._batch_generation = 0
        self._committer_free = 0.0
        self.in_flight = 0

    def submit(self, entry: bytes, on_receipt: Callable[[Receipt], None] | None = None) -> None:
        now = self.clock.now()
        sub = _Submission(entry, on_receipt, now)
        self.in_flight += 1
        start = max(now, heapq.heappop(self._endorser_free))
        done = start + self.config.endorse_time
        heapq.heappush(self._endorser_free, done)
        self.clock.call_later(done - now, lambda: self._endorsed(sub))

    def _endorsed(self, sub: _Submission) -> None:
        sub.endorsed_at = self.clock.now()
        self._batch.append(sub)
        if len(self._batch) >= self.config.max_block_entries:
            self.cut()
        elif len(self._batch) == 1:
            generation = self._batch_generation
            self.clock.call_later(self.config.block_timeout, lambda: self._timeout(generation))

    def _timeout(self, generation: int) -> None:
        if generation == self._batch_generation and self._batch:
            self.cut()

    def cut(self) -> None:
        """Cut the pending batch into a block now (also used to drain at shutdown)."""
        if not self._batch:
            return
        block, self._batch = self._batch, []
        self._batch_generation += 1
        now = self.clock.now()
        start = max(now, self._committer_free)
        self._committer_free = (start + self.config.commit_base
                                + self.config.commit_per_entry * len(block))
        self.clock.call_later(self._committer_free - now, lambda: self._commit(block, now))

    def _commit(self, block: list[_Submission], ordered_at: float) -> None:
        first, head = self.log.append_block([s.entry for s in block], timestamp=self.clock.now())
        sth = sign_tree_head(head, self.signers)
        self.clock.call_later(self.config.sign_time, lambda: self._publish(sth, block, first,
                                                                           ordered_at))

    def _publish(self, sth: SignedTreeHead, block: list[_Submission], first: int,
                 ordered_at: float) -> None:
        now = self.clock.now()
        self.heads.append(sth)
        self.in_flight -= len(block)
        if self.on_head is not None:
            self.on_head(sth)
        for offset, sub in enumerate(block):
            if sub.on_receipt is not None:
                sub.on_receipt(Receipt(first + offset, sth.head.size, sub.submitted_at,
                                       sub.endorsed_at, ordered_at, now))
