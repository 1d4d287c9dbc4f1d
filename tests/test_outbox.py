"""Unit tests of the outbox: each knob, the hash chain, checkpoints, persistence and corruption at open."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.edge.outbox import (
    GENESIS,
    Checkpoint,
    Outbox,
    OutboxConfig,
    OutboxError,
    OutboxFull,
    verify_checkpoint,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()


def config(**overrides: object) -> OutboxConfig:
    knobs: dict[str, object] = dict(max_bytes=10_000, segment_bytes=1_000, ttl_s=None, when_full="reject", priorities=3)
    knobs.update(overrides)
    return OutboxConfig(**knobs)  # type: ignore[arg-type]


def drain(box: Outbox, now: float = 0.0) -> list[tuple[int, int, bytes]]:
    return [(e.seq, e.priority, e.payload) for e in box.next_batch(1_000_000, now)]


def independent_chain(entries: list[tuple[int, int, bytes]], prev: bytes = bytes(32)) -> list[bytes]:
    """The chain as the spec states it, written out without the module's helpers."""
    out = []
    for seq, priority, payload in entries:
        prev = hashlib.sha256(prev + seq.to_bytes(8, "big") + bytes([priority]) + payload).digest()
        out.append(prev)
    return out


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_bytes", 0),
        ("max_bytes", 1.5),
        ("segment_bytes", 0),
        ("segment_bytes", 20_000),
        ("ttl_s", 0),
        ("ttl_s", -1.0),
        ("ttl_s", float("inf")),
        ("when_full", "drop"),
        ("priorities", 0),
        ("priorities", 257),
    ],
)
def test_config_rejects_bad_knob_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"OutboxConfig.{field}"):
        config(**{field: value})


def test_config_defaults_are_valid() -> None:
    cfg = OutboxConfig(max_bytes=100, segment_bytes=10)
    assert (cfg.ttl_s, cfg.when_full, cfg.priorities) == (None, "reject", 3)


# ---------------------------------------------------------------- append, chain, order, ack


def test_seqs_increase_and_chain_follows_the_stated_formula() -> None:
    box = Outbox(None, config(), KEY)
    first = box.append(b"a", 1, now=0.0)
    rest = box.append_many([(b"b", 0), (b"", 2), (b"d", 1)], now=1.0)
    assert [first, *rest] == [1, 2, 3, 4]
    entries = sorted(box.next_batch(10, 1.0), key=lambda e: e.seq)
    expected = independent_chain([(e.seq, e.priority, e.payload) for e in entries])
    assert [e.chain for e in entries] == expected
    assert box.head == (4, expected[-1])


def test_priority_first_then_fifo_within_priority_and_at_least_once() -> None:
    box = Outbox(None, config(), KEY)
    box.append_many([(b"low1", 2), (b"hi1", 0), (b"mid1", 1), (b"hi2", 0), (b"low2", 2)], now=0.0)
    first = drain(box)
    assert [p for _, _, p in first] == [b"hi1", b"hi2", b"mid1", b"low1", b"low2"]
    assert drain(box) == first  # no ack: the same entries again
    assert [e.payload for e in box.next_batch(2, 0.0)] == [b"hi1", b"hi2"]


def test_ack_removes_delivered_entries_and_ignores_unknown_seqs() -> None:
    box = Outbox(None, config(), KEY)
    seqs = box.append_many([(b"x" * 10, 0)] * 5, now=0.0)
    assert box.ack([seqs[1], seqs[3], seqs[3], 999]) == 2
    assert box.ack([seqs[1]]) == 0
    assert [s for s, _, _ in drain(box)] == [seqs[0], seqs[2], seqs[4]]
    c = box.counters
    assert (c.appended, c.acked, c.pending, c.bytes_in_use) == (5, 2, 3, 30)


def test_bad_items_raise_clear_errors_and_store_nothing() -> None:
    box = Outbox(None, config(), KEY)
    with pytest.raises(ValueError, match=r"item 1: priority must be an int in \[0, 3\)"):
        box.append_many([(b"ok", 0), (b"bad", 3)], now=0.0)
    with pytest.raises(TypeError, match="item 0: payload must be bytes"):
        box.append_many([("text", 0)], now=0.0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_items"):
        box.next_batch(-1, 0.0)
    assert box.counters.appended == 0 and drain(box) == [] and box.head == (0, GENESIS)


# ---------------------------------------------------------------- TTL



def test_ttl_expired_entries_are_evicted_with_a_signed_gap_not_sent() -> None:
    box = Outbox(None, config(ttl_s=10.0), KEY)
    box.append_many([(b"old-a", 1), (b"old-b", 1), (b"old-hi", 0)], now=0.0)  # seqs 1, 2, 3
    box.append(b"young", 1, now=5.0)  # seq 4
    assert [s for s, _, _ in drain(box, now=9.5)] == [3, 1, 2, 4]
    assert box.take_gaps() == []
    assert [s for s, _, _ in drain(box, now=10.0)] == [4]  # expiry is at created + ttl_s
    gaps = box.take_gaps()
    assert [(g.reason, g.priority, g.first_seq, g.last_seq, g.count) for g in gaps] == [
        ("ttl", 0, 3, 3, 1),
        ("ttl", 1, 1, 2, 2),
    ]
    assert all(verify_checkpoint(g.checkpoint, PUB) and g.checkpoint.head_seq == 4 for g in gaps)
    assert box.take_gaps() == []  # handed over once
    c = box.counters
    assert (c.evicted, c.pending, c.bytes_in_use) == (3, 1, len(b"young"))


def test_timestamps_never_go_backwards() -> None:
    box = Outbox(None, config(ttl_s=10.0), KEY)
    box.append(b"a", 0, now=100.0)
    box.append(b"b", 0, now=50.0)  # a clock step back: stored as 100
    assert [e.created for e in box.next_batch(5, 100.0)] == [100.0, 100.0]
    assert drain(box, now=110.0) == [] and box.take_gaps()[0].count == 2


# ---------------------------------------------------------------- when full: reject


def test_reject_raises_and_stores_nothing() -> None:
    box = Outbox(None, config(max_bytes=100, segment_bytes=50), KEY)
    box.append_many([(b"a" * 40, 0), (b"b" * 40, 1)], now=0.0)
    before = drain(box)
    with pytest.raises(OutboxFull, match="does not fit"):
        box.append_many([(b"c" * 10, 0), (b"d" * 11, 0)], now=1.0)
    with pytest.raises(OutboxFull):
        box.append(b"e" * 101, 0, now=1.0)
    assert drain(box) == before and box.take_gaps() == []
    c = box.counters
    assert (c.appended, c.rejected, c.bytes_in_use) == (2, 3, 80)
    assert box.append(b"f" * 20, 0, now=1.0) == 3  # exactly full is fine


def test_reject_first_frees_expired_entries_and_rolls_that_back_if_still_full() -> None:
    box = Outbox(None, config(max_bytes=100, segment_bytes=50, ttl_s=5.0), KEY)
    box.append(b"A" * 60, 1, now=0.0)
    box.append(b"B" * 30, 1, now=3.0)
    with pytest.raises(OutboxFull):
        box.append(b"C" * 80, 0, now=6.0)  # freeing A (expired) leaves 30 + 80 > 100
    assert box.take_gaps() == [] and box.counters.evicted == 0 and box.counters.bytes_in_use == 90
    assert box.append(b"D" * 70, 0, now=6.0) == 3  # freeing A makes room
    (gap,) = box.take_gaps()
    assert (gap.reason, gap.first_seq, gap.last_seq, gap.priority) == ("ttl", 1, 1, 1)


# ---------------------------------------------------------------- when full: overwrite_oldest, segments


def test_overwrite_evicts_whole_oldest_segment_of_lowest_priority() -> None:
    box = Outbox(None, config(max_bytes=1000, segment_bytes=300, when_full="overwrite_oldest"), KEY)
    hundred = b"x" * 100
    box.append_many([(hundred, 2)] * 6 + [(hundred, 0)] * 2 + [(hundred, 1)] * 2, now=0.0)  # 1000 bytes
    assert box.take_gaps() == []
    box.append(hundred, 0, now=1.0)  # seq 11 needs 100 bytes: the whole 300-byte segment 1..3 goes
    (gap,) = box.take_gaps()
    assert (gap.reason, gap.priority, gap.first_seq, gap.last_seq, gap.count) == ("overflow", 2, 1, 3, 3)
    assert verify_checkpoint(gap.checkpoint, PUB) and gap.checkpoint.head_seq == 10
    assert [s for s, _, _ in drain(box)] == [7, 8, 11, 9, 10, 4, 5, 6]
    box.append_many([(hundred, 0)] * 4, now=2.0)  # the third needs room: segment 4..6 goes
    box.append_many([(hundred, 0)] * 3, now=3.0)  # priority 2 is gone: priority 1's segment 9..10 goes
    gaps = box.take_gaps()
    assert [(g.priority, g.first_seq, g.last_seq, g.checkpoint.head_seq) for g in gaps] == [(2, 4, 6, 13), (1, 9, 10, 16)]
    assert [p for _, p, _ in drain(box)] == [0] * 10
    c = box.counters
    assert (c.evicted, c.pending, c.bytes_in_use, c.rejected) == (8, 10, 1000, 0)


def test_overwrite_within_one_oversized_batch_keeps_the_newest() -> None:
    box = Outbox(None, config(max_bytes=300, segment_bytes=100, when_full="overwrite_oldest"), KEY)
    assert box.append_many([(b"y" * 100, 0)] * 5, now=0.0) == [1, 2, 3, 4, 5]
    assert [(g.first_seq, g.last_seq) for g in box.take_gaps()] == [(1, 1), (2, 2)]
    assert [s for s, _, _ in drain(box)] == [3, 4, 5]
    with pytest.raises(OutboxFull, match="exceeds max_bytes"):
        box.append(b"z" * 301, 0, now=0.0)
    assert box.counters.rejected == 1 and box.counters.appended == 5


def test_entries_fill_a_segment_up_to_segment_bytes() -> None:
    box = Outbox(None, config(max_bytes=1000, segment_bytes=250, when_full="overwrite_oldest", priorities=1), KEY)
    box.append_many([(b"s" * 100, 0)] * 10, now=0.0)  # segments of 2 entries (200 bytes): a third would overflow 250
    box.append(b"s" * 100, 0, now=0.0)
    (gap,) = box.take_gaps()
    assert (gap.first_seq, gap.last_seq, gap.count) == (1, 2, 2)


# ---------------------------------------------------------------- checkpoints


def test_verify_checkpoint_accepts_only_the_signed_statement() -> None:
    box = Outbox(None, config(max_bytes=100, segment_bytes=50, when_full="overwrite_oldest"), KEY)
    box.append_many([(b"q" * 50, 0)] * 3, now=0.0)
    (gap,) = box.take_gaps()
    cp = gap.checkpoint
    assert verify_checkpoint(cp, PUB)
    assert not verify_checkpoint(cp, Ed25519PrivateKey.generate().public_key())
    for change in ({"first_seq": 2}, {"last_seq": 9}, {"head_seq": cp.head_seq + 1}, {"head_chain": bytes(32)}, {"head_chain": b"short"}):
        forged = Checkpoint(**{**{f: getattr(cp, f) for f in Checkpoint.__struct_fields__}, **change})
        assert not verify_checkpoint(forged, PUB), change


# ---------------------------------------------------------------- persistence


def test_reopen_keeps_entries_counters_untaken_gaps_and_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    cfg = config(max_bytes=500, segment_bytes=200, when_full="overwrite_oldest")
    with Outbox(path, cfg, KEY) as box:
        box.append_many([(bytes([i]) * 100, i % 3) for i in range(7)], now=1.0)
        box.ack([1, 4])
        state = (drain(box), box.counters, box.head)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    with Outbox(path, cfg, KEY) as box:
        assert (drain(box), box.counters, box.head) == state
        gaps = box.take_gaps()
        assert [(g.reason, g.priority, g.first_seq) for g in gaps] == [("overflow", 2, 3), ("overflow", 2, 6)]
        seq = box.append(b"after", 0, now=2.0)
        assert seq == state[2][0] + 1
        (entry,) = [e for e in box.next_batch(100, 2.0) if e.seq == seq]
        assert entry.chain == independent_chain([(seq, 0, b"after")], prev=state[2][1])[0]
    with Outbox(path, cfg, KEY) as box:
        assert box.take_gaps() == []


def test_acked_prefix_is_compacted_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path, config(), KEY) as box:
        box.append_many([(b"p", 0)] * 10, now=0.0)
        box.ack(range(1, 11))
        head = box.head
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM entries").fetchone() == (0,)
    raw.close()
    with Outbox(path, config(), KEY) as box:
        assert box.take_gaps() == [] and box.head == head
        box.append(b"q", 0, now=0.0)
    with Outbox(path, config(), KEY) as box:
        assert box.take_gaps() == [] and drain(box) == [(11, 0, b"q")]


def test_a_second_process_cannot_open_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path, config(), KEY) as box:
        box.append(b"x", 0, now=0.0)
        with pytest.raises(OutboxError, match="in use"):
            Outbox(path, config(), KEY)


# ---------------------------------------------------------------- corruption at open


def _sample(path: Path) -> None:
    """Seqs 1..10 over three priorities; seq 2 acknowledged (a tombstone kept for the chain)."""
    with Outbox(path, config(), KEY) as box:
        box.append_many([(f"entry-{i}".encode(), i % 3) for i in range(1, 11)], now=0.0)
        box.ack([2])


def _tamper(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _reopen_report(path: Path) -> tuple[list, list[int]]:
    with Outbox(path, config(), KEY) as box:
        gaps = box.take_gaps()
        kept = sorted(s for s, _, _ in drain(box))
        c = box.counters
        assert c.appended == c.acked + c.evicted + c.corrupt + c.pending
        assert all(verify_checkpoint(g.checkpoint, PUB) for g in gaps)
    with Outbox(path, config(), KEY) as box:  # repaired once: a clean open after
        assert box.take_gaps() == [] and sorted(s for s, _, _ in drain(box)) == kept
    return gaps, kept


@pytest.mark.parametrize(
    ("statements", "first", "last", "kept", "says"),
    [
        (["UPDATE entries SET payload = x'00' WHERE seq = 5"], 5, 5, [1, 3, 4, 6, 7, 8, 9, 10], ["seq 5: stored chain"]),
        (["UPDATE entries SET priority = 0 WHERE seq = 5"], 5, 5, [1, 3, 4, 6, 7, 8, 9, 10], ["seq 5: stored chain"]),
        (["UPDATE entries SET payload = 'text' WHERE seq = 7"], 7, 7, [1, 3, 4, 5, 6, 8, 9, 10], ["seq 7: payload is str"]),
        (["UPDATE entries SET chain = randomblob(32) WHERE seq = 5"], 5, 6, [1, 3, 4, 7, 8, 9, 10], ["seq 5:", "seq 6:"]),
        (["DELETE FROM entries WHERE seq IN (4, 5)"], 4, 6, [1, 3, 7, 8, 9, 10], ["seqs 4..5: rows deleted", "seq 6: cannot be verified"]),
        (["DELETE FROM entries WHERE seq >= 9"], 9, 10, [1, 3, 4, 5, 6, 7, 8], ["seqs 9..10: rows deleted"]),
        (["DELETE FROM entries WHERE seq = 1"], 1, 1, [3, 4, 5, 6, 7, 8, 9, 10], ["seqs 1..1: rows deleted"]),
        (
            ["INSERT INTO entries VALUES (11, 0, 0, 0, x'01', randomblob(32))"],
            11, 11, list(range(1, 11))[:1] + list(range(3, 11)), ["seq 11: row beyond the recorded head seq 10"],
        ),
    ],
)
def test_corruption_is_found_located_and_the_intact_part_kept(
    tmp_path: Path, statements: list[str], first: int, last: int, kept: list[int], says: list[str]
) -> None:
    path = tmp_path / "outbox.sqlite"
    _sample(path)
    _tamper(path, *statements)
    gaps, still = _reopen_report(path)
    assert [(g.reason, g.first_seq, g.last_seq, g.priority) for g in gaps] == [("corrupt", first, last, None)]
    assert all(s in gaps[0].detail for s in says), gaps[0].detail
    assert still == kept


def test_a_rewritten_chain_is_caught_by_the_recorded_head(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    _sample(path)
    db = sqlite3.connect(path)
    rows = db.execute("SELECT seq, priority, payload, chain FROM entries ORDER BY seq").fetchall()
    prev = rows[3][3]  # seq 4's chain; rewrite seq 5 and recompute the chain after it
    for seq, priority, payload, _ in rows[4:]:
        payload = b"forged" if seq == 5 else payload
        prev = hashlib.sha256(prev + struct.pack(">QB", seq, priority) + payload).digest()
        db.execute("UPDATE entries SET payload = ?, chain = ? WHERE seq = ?", (payload, prev, seq))
    db.commit()
    db.close()
    gaps, kept = _reopen_report(path)
    assert [(g.first_seq, g.last_seq, g.count) for g in gaps] == [(1, 10, 9)]
    assert "chain head differs from the recorded head" in gaps[0].detail
    assert kept == []
    with Outbox(path, config(), KEY) as box:
        assert box.append(b"new", 0, now=1.0) == 11


def test_files_that_are_not_outboxes_get_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(OutboxError, match="garbage.sqlite: not an SQLite database"):
        Outbox(garbage, config(), KEY)
    other = tmp_path / "other.sqlite"
    _tamper(other, "CREATE TABLE t (x)")
    with pytest.raises(OutboxError, match=r"other.sqlite: not an outbox file .*\['t'\]"):
        Outbox(other, config(), KEY)
    broken = tmp_path / "broken.sqlite"
    _sample(broken)
    _tamper(broken, "DELETE FROM state")
    with pytest.raises(OutboxError, match="state row is missing"):
        Outbox(broken, config(), KEY)
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(tmp_path / "no-such-dir" / "x.sqlite", config(), KEY)


def test_reopening_with_fewer_priorities_than_stored_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    _sample(path)
    with pytest.raises(OutboxError, match=r"seq 5 has priority 2 but config.priorities is 2"):
        Outbox(path, config(priorities=2), KEY)


def test_group_commit_leaves_the_fsync_to_make_durable_and_survives_a_reopen(tmp_path: Path) -> None:
    """Each commit fsyncs (synchronous=FULL) unless group commit is asked for; then commits only
    write the WAL (NORMAL) and make_durable fsyncs it. Either way what was committed reopens intact."""
    path = tmp_path / "box.sqlite"
    with Outbox(tmp_path / "plain.sqlite", config(), KEY) as plain:
        assert plain._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        plain.make_durable()  # nothing to do: every commit was synced
    with Outbox(path, config(), KEY, group_commit=True) as box:
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 1
        box.append_many([(b"a", 0), (b"b", 2)], now=1.0)
        box.make_durable()
        box.ack([1])
        box.make_durable()
    with Outbox(path, config(), KEY) as reopened:
        assert drain(reopened) == [(2, 2, b"b")]
        assert reopened.take_gaps() == []
