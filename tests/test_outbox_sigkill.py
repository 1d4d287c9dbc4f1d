"""Crash test: SIGKILL a separate writer process at random points, then check nothing committed is lost.

The writer prints a seq range only after its commit returned. Killing it (often mid-transaction,
since batches of up to 4,000 entries take milliseconds to write) must leave every printed seq in the
file, the seqs contiguous from 1, and a hash chain that verifies from the genesis value. The same
holds in group-commit mode (the live edge's), where a committer thread fsyncs while appends go on.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.edge.outbox import GENESIS, Outbox, OutboxConfig

WRITER = Path(__file__).with_name("outbox_writer_proc.py")
CONFIG = OutboxConfig(max_bytes=1 << 34, segment_bytes=1 << 20, priorities=3)  # as the writer's
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))


def run_and_kill(path: Path, seed: int, delay: float, mode: list[str]) -> list[tuple[int, int]]:
    """Start the writer, SIGKILL it `delay` s after it opened the outbox; return the announced ranges."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed), *mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "open\n", "writer failed to open the outbox"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    lines = out.split("\n")[:-1]  # the last piece is unterminated (cut by the kill) or empty
    return [(int(a), int(b)) for a, b in (line.split() for line in lines)]


@pytest.mark.parametrize("mode", [[], ["group"]], ids=["commit-fsync", "group-commit"])
def test_sigkill_never_loses_a_committed_entry(tmp_path: Path, mode: list[str]) -> None:
    rng = random.Random(20240601)
    path = tmp_path / "outbox.sqlite"
    delays = [0.0, 0.003, 0.02, 0.07, 0.15, 0.3, 0.6, 1.0]
    rng.shuffle(delays)
    committed_high = 0
    for round_no, delay in enumerate(delays):
        ranges = run_and_kill(path, seed=round_no, delay=delay, mode=mode)
        if ranges:
            assert ranges[0][0] == committed_high + 1, f"round {round_no}: seqs did not continue"
        with Outbox(path, CONFIG, KEY) as box:
            assert box.take_gaps() == [], f"round {round_no}: the reopened file has gaps"
            entries = box.next_batch(10**8, now=0.0)
            c = box.counters
            head_seq, head_chain = box.head
        present = sorted(entries, key=lambda e: e.seq)
        assert [e.seq for e in present] == list(range(1, head_seq + 1)), f"round {round_no}: seqs not contiguous"
        assert c.pending == c.appended == head_seq
        for first, last in ranges:
            assert 1 <= first <= last <= head_seq, f"round {round_no} (kill after {delay}s): {first}..{last} lost"
        chain = GENESIS
        for e in present:
            chain = hashlib.sha256(chain + e.seq.to_bytes(8, "big") + bytes([e.priority]) + e.payload).digest()
            assert chain == e.chain, f"round {round_no}: chain broken at seq {e.seq}"
        assert chain == head_chain
        committed_high = head_seq
    assert committed_high > 0
