"""Outbox benchmark: batched appends and outage drain, in memory and in a WAL file.

Run: python bench/bench_outbox.py  (about 30-45 s on one core; each figure is a median of 3 repeats).
Files go in a temporary folder under the current directory, so fsync hits a real disk rather than a
tmpfs /tmp.

Prints `name: measured (baseline: X, target: Y)`:
- appends/s in batches of 1,000 entries of 200 bytes over 3 priorities, memory (200k entries) and
  file (100k entries; WAL, exclusive lock, synchronous=FULL, one commit per batch); the baseline is
  raw sqlite3 `executemany` of the very same rows (chains precomputed) into the same schema with the
  same settings, one transaction per 1,000: the storage floor.
- drain entries/s: `next_batch(1000)` + `ack` until empty from a full outbox; the baseline is raw
  sqlite3 `SELECT ... LIMIT 1000` + `DELETE` of those rows per batch on the same schema.
Targets from the brief: ≥ 100k appends/s batched (the platform ingest path), outage drain ≥ 20k msg/s.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.edge.outbox import GENESIS, Outbox, OutboxConfig, chain_link

ENTRY_BYTES = 200
BATCH = 1000
ENTRIES = 200_000
FILE_ENTRIES = 100_000  # fewer on disk, to keep the run under a minute
REPEATS = 3
APPEND_TARGET = 100_000
DRAIN_TARGET = 20_000
CONFIG = OutboxConfig(max_bytes=1 << 32, segment_bytes=1 << 22, ttl_s=86_400.0, priorities=3)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
SCHEMA = (
    "CREATE TABLE entries (seq INTEGER PRIMARY KEY, priority INTEGER NOT NULL, segment INTEGER NOT NULL, "
    "created REAL NOT NULL, payload BLOB, chain BLOB)",
    "CREATE INDEX live ON entries (priority, seq) WHERE payload IS NOT NULL",
)


def make_items(n: int, seed: int) -> list[tuple[bytes, int]]:
    rng = random.Random(seed)
    return [(rng.randbytes(ENTRY_BYTES), rng.choices((0, 1, 2), (1, 3, 6))[0]) for _ in range(n)]


def batches(items: list) -> list[list]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def outbox_appends(items: list[tuple[bytes, int]], path: Path | None) -> float:
    with Outbox(path, CONFIG, KEY) as box:
        start = time.perf_counter()
        for i, batch in enumerate(batches(items)):
            box.append_many(batch, now=float(i))
        return len(items) / (time.perf_counter() - start)


def raw_connection(path: Path | None) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
    if path is not None:  # the same settings the outbox uses
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    for statement in SCHEMA:
        db.execute(statement)
    return db


def raw_rows(items: list[tuple[bytes, int]]) -> list[tuple[int, int, int, float, bytes, bytes]]:
    rows, chain = [], GENESIS
    for seq, (payload, priority) in enumerate(items, start=1):
        chain = chain_link(chain, seq, priority, payload)
        rows.append((seq, priority, priority, 0.0, payload, chain))
    return rows


def raw_appends(rows: list, path: Path | None) -> float:
    db = raw_connection(path)
    start = time.perf_counter()
    for batch in batches(rows):
        db.execute("BEGIN")
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", batch)
        db.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - start)
    db.close()
    return rate


def outbox_drain(items: list[tuple[bytes, int]], path: Path | None) -> float:
    with Outbox(path, CONFIG, KEY) as box:
        for i, batch in enumerate(batches(items)):
            box.append_many(batch, now=float(i))
        drained = 0
        start = time.perf_counter()
        while batch := box.next_batch(BATCH, now=1000.0):
            drained += box.ack([entry.seq for entry in batch])
        rate = drained / (time.perf_counter() - start)
        assert drained == len(items) and box.counters.pending == 0
        return rate


def raw_drain(rows: list, path: Path | None) -> float:
    db = raw_connection(path)
    db.execute("BEGIN")
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    drained = 0
    start = time.perf_counter()
    while batch := db.execute(
        "SELECT seq, priority, payload, created, chain FROM entries WHERE payload IS NOT NULL "
        "ORDER BY priority, seq LIMIT ?",
        (BATCH,),
    ).fetchall():
        db.execute("BEGIN")
        db.executemany("DELETE FROM entries WHERE seq = ?", [(row[0],) for row in batch])
        db.execute("COMMIT")
        drained += len(batch)
    rate = drained / (time.perf_counter() - start)
    db.close()
    return rate


def median_rate(run: Callable[[Path | None], float], workdir: Path | None) -> float:
    rates = []
    for repeat in range(REPEATS):
        path = None if workdir is None else workdir / f"bench-{repeat}-{time.perf_counter_ns()}.sqlite"
        rates.append(run(path))
        if path is not None:
            for leftover in workdir.glob(path.name + "*"):
                leftover.unlink()
    return statistics.median(rates)


def main() -> None:
    all_items = make_items(ENTRIES, seed=1)
    all_rows = raw_rows(all_items)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-", dir=".") as tmp:
        workdir = Path(tmp)
        cases = (("memory", None, ENTRIES), ("file WAL", workdir, FILE_ENTRIES))
        for label, where, n in cases:
            items, rows = all_items[:n], all_rows[:n]
            ours = median_rate(lambda p: outbox_appends(items, p), where)
            raw = median_rate(lambda p: raw_appends(rows, p), where)
            print(
                f"appends/s, batches of {BATCH}, {label}: {ours:,.0f} "
                f"(baseline raw sqlite executemany: {raw:,.0f}, target: >= {APPEND_TARGET:,})"
            )
        for label, where, n in cases:
            items, rows = all_items[:n], all_rows[:n]
            ours = median_rate(lambda p: outbox_drain(items, p), where)
            raw = median_rate(lambda p: raw_drain(rows, p), where)
            print(
                f"drain entries/s, next_batch({BATCH}) + ack, {label}: {ours:,.0f} "
                f"(baseline raw sqlite select + delete: {raw:,.0f}, target: >= {DRAIN_TARGET:,})"
            )


if __name__ == "__main__":
    main()
