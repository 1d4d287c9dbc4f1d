"""Stateful property test: the outbox against a plain-dict model, across appends, drains, time and restarts.

The model knows every entry appended and not yet acknowledged. The outbox may drop an entry only by
reporting a gap that covers it, so after each drain the model minus reported gaps must equal exactly
what the outbox hands out, in priority-then-seq order, with the chain values the spec prescribes.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cangtwin.platform.edge.outbox import Gap, Outbox, OutboxConfig, OutboxFull, verify_checkpoint

KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
PUB = KEY.public_key()

configs = st.builds(
    lambda max_bytes, seg_fraction, ttl_s, when_full, priorities: OutboxConfig(
        max_bytes=max_bytes,
        segment_bytes=max(1, int(max_bytes * seg_fraction)),
        ttl_s=ttl_s,
        when_full=when_full,
        priorities=priorities,
    ),
    max_bytes=st.integers(40, 160),
    seg_fraction=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
    ttl_s=st.one_of(st.none(), st.sampled_from([5.0, 20.0, 60.0])),
    when_full=st.sampled_from(["reject", "overwrite_oldest"]),
    priorities=st.integers(1, 4),
)


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-sm-"))
        self.box: Outbox | None = None

    def teardown(self) -> None:
        if self.box is not None:
            self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(cfg=configs)
    def open_outbox(self, cfg: OutboxConfig) -> None:
        self.cfg = cfg
        self.box = Outbox(self.dir / "outbox.sqlite", cfg, KEY)
        self.now = self.latest = 0.0  # latest: the furthest the clock has been, bounds any TTL eviction
        self.last_created: float | None = None
        self.model: dict[int, tuple[int, bytes, float, bytes]] = {}  # seq -> priority, payload, created, chain
        self.head = (0, bytes(32))
        self.expect = dict(appended=0, acked=0, evicted=0, rejected=0)

    # ------------------------------------------------------------ helpers

    def expired(self, created: float, at: float | None = None) -> bool:
        at = self.now if at is None else at
        return self.cfg.ttl_s is not None and created <= at - self.cfg.ttl_s

    def apply_gaps(self, gaps: list[Gap]) -> None:
        """Each gap must be signed, and cover exactly the model entries it says it evicted."""
        for gap in gaps:
            assert verify_checkpoint(gap.checkpoint, PUB)
            cp = gap.checkpoint
            assert (cp.first_seq, cp.last_seq) == (gap.first_seq, gap.last_seq)
            assert gap.last_seq <= cp.head_seq <= self.head[0]
            assert gap.reason in ("ttl", "overflow")
            event(f"gap: {gap.reason}")
            covered = [
                seq for seq, (priority, *_) in self.model.items()
                if gap.first_seq <= seq <= gap.last_seq and priority == gap.priority
            ]
            assert len(covered) == gap.count > 0
            assert {gap.first_seq, gap.last_seq} <= set(covered)
            # FIFO: nothing older of the same priority survives a gap.
            assert not any(
                s < gap.first_seq and p == gap.priority for s, (p, *_) in self.model.items()
            ), "evicted out of order"
            if gap.reason == "ttl":
                assert all(self.expired(self.model[seq][2], at=self.latest) for seq in covered)
            else:
                assert self.cfg.when_full == "overwrite_oldest"
                # Lowest priority first: when this gap was taken, no lower class had live entries.
                assert not any(
                    p > gap.priority and s <= cp.head_seq for s, (p, *_) in self.model.items()
                ), "evicted a higher priority while a lower one was present"
                sizes = [len(self.model[seq][1]) for seq in covered]
                assert sum(sizes) <= max(self.cfg.segment_bytes, max(sizes)), "more than one segment"
            for seq in covered:
                del self.model[seq]
            self.expect["evicted"] += gap.count

    # ------------------------------------------------------------ rules

    @rule(
        items=st.lists(st.tuples(st.binary(max_size=40), st.integers(0, 3)), min_size=1, max_size=8),
    )
    def append(self, items: list[tuple[bytes, int]]) -> None:
        assert self.box is not None
        self.apply_gaps(self.box.take_gaps())  # in step with the outbox, so "full" is predictable
        items = [(payload, priority % self.cfg.priorities) for payload, priority in items]
        total = sum(len(p) for p, _ in items)
        live_unexpired = sum(len(p) for _, p, c, _ in self.model.values() if not self.expired(c))
        try:
            seqs = self.box.append_many(items, self.now)
        except OutboxFull:
            assert self.cfg.when_full == "reject" and live_unexpired + total > self.cfg.max_bytes
            self.expect["rejected"] += len(items)
            event("rejected")
            return
        assert not (self.cfg.when_full == "reject" and live_unexpired + total > self.cfg.max_bytes)
        assert seqs == list(range(self.head[0] + 1, self.head[0] + 1 + len(items)))
        created = self.now if self.last_created is None else max(self.now, self.last_created)
        self.last_created = created
        chain = self.head[1]
        for seq, (payload, priority) in zip(seqs, items):
            chain = hashlib.sha256(chain + seq.to_bytes(8, "big") + bytes([priority]) + payload).digest()
            self.model[seq] = (priority, payload, created, chain)
        self.head = (seqs[-1], chain)
        self.expect["appended"] += len(items)

    @rule(dt=st.sampled_from([0.0, 1.0, 4.0, 15.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.latest = max(self.latest, self.now)

    @rule(dt=st.sampled_from([1.0, 10.0]))
    def clock_steps_back(self, dt: float) -> None:
        self.now = max(0.0, self.now - dt)

    @rule(n=st.integers(1, 40), data=st.data())
    def drain(self, n: int, data: st.DataObject) -> None:
        assert self.box is not None
        batch = self.box.next_batch(n, self.now)
        self.apply_gaps(self.box.take_gaps())
        assert not any(self.expired(c) for _, _, c, _ in self.model.values()), "expired entry not evicted"
        want = sorted(self.model.items(), key=lambda kv: (kv[1][0], kv[0]))[:n]
        got = [(e.seq, (e.priority, e.payload, e.created, e.chain)) for e in batch]
        assert got == want
        self.check_counters()
        if batch:
            chosen = data.draw(st.lists(st.sampled_from([e.seq for e in batch]), max_size=len(batch)))
            extra = data.draw(st.lists(st.integers(0, self.head[0] + 5), max_size=2))
            newly = set(chosen) | {s for s in extra if s in self.model}
            assert self.box.ack(chosen + extra) == len(newly)
            for seq in newly:
                del self.model[seq]
            self.expect["acked"] += len(newly)

    @rule()
    def take_gaps(self) -> None:
        assert self.box is not None
        self.apply_gaps(self.box.take_gaps())
        self.check_counters()

    @rule()
    def reopen(self) -> None:
        assert self.box is not None
        before = (self.box.counters, self.box.head)
        self.box.close()
        self.box = Outbox(self.dir / "outbox.sqlite", self.cfg, KEY)
        assert (self.box.counters, self.box.head) == before

    # ------------------------------------------------------------ invariants

    def check_counters(self) -> None:
        """Call only right after all gaps were taken, when the model is in step with the outbox."""
        assert self.box is not None
        c = self.box.counters
        assert (c.appended, c.acked, c.evicted, c.rejected) == tuple(self.expect.values())
        assert c.corrupt == 0
        assert c.pending == len(self.model)
        assert c.bytes_in_use == sum(len(p) for _, p, _, _ in self.model.values())
        assert c.appended == c.acked + c.evicted + c.corrupt + c.pending

    @invariant()
    def within_limits(self) -> None:
        if self.box is not None:
            c = self.box.counters
            assert 0 <= c.bytes_in_use <= self.cfg.max_bytes
            assert self.box.head == self.head
            assert c.appended == c.acked + c.evicted + c.corrupt + c.pending


OutboxMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxMachine = OutboxMachine.TestCase
