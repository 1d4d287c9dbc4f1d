"""Evidence-ledger benchmark: durable appends, time-to-integrate, proof verification.

Run: python bench/bench_ledger.py  (10-15 s on one core; each figure is a median of repeats).
Files go in a temporary folder under the current directory, so fsync hits a real disk
rather than a tmpfs /tmp.

Prints `name: measured (baseline: X, target: Y)`:
- durable appends/s, one write + fsync per block of 1000 entries of 200 bytes; the baseline is
  the raw floor: SHA-256 of the same entries plus one write + fsync per block.
- time-to-integrate p99 of the endorse → order → commit → sign pipeline in SimPy virtual time,
  Poisson arrivals at 5000/s; the baseline is the service-time floor with no batching wait.
- inclusion proofs verified/s against signed tree heads whose signatures were checked once
  (cached); the baseline verifies the heads' signatures (3 of 4) again for every proof.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path

import simpy

from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.ledger.log import EvidenceLog
from cangtwin.platform.ledger.merkle import leaf_hash, verify_inclusion
from cangtwin.platform.ledger.pipeline import EvidencePipeline, PipelineConfig
from cangtwin.platform.ledger.tree_head import (
    HeadVerifier,
    generate_party_keys,
    public_key_bytes,
    sign_tree_head,
    verify_quorum,
)

ENTRY_BYTES = 200
BLOCK = 1000
ENTRIES = 200_000
REPEATS = 3


def make_entries(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(ENTRY_BYTES) for _ in range(n)]


def appends_per_second(entries: list[bytes], workdir: Path) -> float:
    path = workdir / f"bench-{time.perf_counter_ns()}.log"
    with EvidenceLog.open(path, create=True) as log:
        start = time.perf_counter()
        for i in range(0, len(entries), BLOCK):
            log.append_block(entries[i:i + BLOCK], timestamp=0.0)
        elapsed = time.perf_counter() - start
    path.unlink()
    return len(entries) / elapsed


def raw_floor_per_second(entries: list[bytes], workdir: Path) -> float:
    path = workdir / f"raw-{time.perf_counter_ns()}.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for i in range(0, len(entries), BLOCK):
            block = entries[i:i + BLOCK]
            digests = [sha256(e).digest() for e in block]
            os.write(fd, b"".join(block) + b"".join(digests))
            os.fsync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    path.unlink()
    return len(entries) / elapsed


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def integrate_p99(workdir: Path, seed: int, rate: float = 5000.0, duration: float = 10.0) -> float:
    env = simpy.Environment()
    clock = SimPyClock(env)
    rng = random.Random(seed)
    latencies: list[float] = []
    path = workdir / f"pipe-{seed}-{time.perf_counter_ns()}.log"
    with EvidenceLog.open(path, create=True) as log:
        pipeline = EvidencePipeline(clock, log, generate_party_keys())
        payload = rng.randbytes(ENTRY_BYTES)

        def arrive() -> None:
            pipeline.submit(payload, lambda r: latencies.append(r.time_to_integrate))
            if clock.now() < duration:
                clock.call_later(rng.expovariate(rate), arrive)

        clock.call_later(0.0, arrive)
        env.run()
    path.unlink()
    return p99(latencies)


def proof_rates(workdir: Path, seed: int, n_entries: int = 100_000,
                n_proofs: int = 20_000) -> tuple[float, float]:
    """(proofs/s with heads cached, proofs/s re-verifying head signatures each time)."""
    keys = generate_party_keys()
    public = public_key_bytes(keys)
    entries = make_entries(n_entries, seed)
    path = workdir / f"proofs-{seed}.log"
    with EvidenceLog.open(path, create=True) as log:
        heads = []
        for i in range(0, n_entries, BLOCK):
            heads.append(sign_tree_head(log.append_block(entries[i:i + BLOCK], 0.0)[1], keys))
        rng = random.Random(seed)
        jobs = []
        for _ in range(n_proofs):
            sth = rng.choice(heads)
            index = rng.randrange(sth.head.size)
            jobs.append((entries[index], index, sth, log.inclusion_proof(index, sth.head.size)))
    path.unlink()

    verifier = HeadVerifier(public, required=3)
    start = time.perf_counter()
    for data, index, sth, proof in jobs:
        verifier.verify(sth)
        assert verify_inclusion(leaf_hash(data), index, sth.head.size, proof, sth.head.root)
    cached = len(jobs) / (time.perf_counter() - start)

    uncached_jobs = jobs[:2000]
    start = time.perf_counter()
    for data, index, sth, proof in uncached_jobs:
        verify_quorum(sth, public, 3)
        assert verify_inclusion(leaf_hash(data), index, sth.head.size, proof, sth.head.root)
    uncached = len(uncached_jobs) / (time.perf_counter() - start)
    return cached, uncached


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-", dir=Path.cwd()) as tmp:
        workdir = Path(tmp)
        entries = make_entries(ENTRIES, 1)
        appends = statistics.median(appends_per_second(entries, workdir) for _ in range(REPEATS))
        floor = statistics.median(raw_floor_per_second(entries, workdir) for _ in range(REPEATS))
        print(f"durable appends/s (fsync per {BLOCK}-entry block, {ENTRY_BYTES} B entries): "
              f"{appends:,.0f} (baseline: {floor:,.0f} raw sha256 + write + fsync, "
              f"target: >= 100,000)")

        tti = statistics.median(integrate_p99(workdir, seed) for seed in range(REPEATS))
        cfg = PipelineConfig()
        service_floor = cfg.endorse_time + cfg.commit_base + cfg.sign_time
        print(f"time-to-integrate p99 (SimPy, 5000 submissions/s, block cut "
              f"{cfg.max_block_entries} entries or {cfg.block_timeout} s): {tti:.3f} s "
              f"(baseline: {service_floor:.3f} s service floor without batching, target: <= 1 s)")

        rates = [proof_rates(workdir, seed) for seed in range(REPEATS)]
        cached = statistics.median(r[0] for r in rates)
        uncached = statistics.median(r[1] for r in rates)
        print(f"inclusion proofs verified/s (signed tree heads cached): {cached:,.0f} "
              f"(baseline: {uncached:,.0f} re-verifying 3-of-4 signatures per proof, "
              f"target: >= 20,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
