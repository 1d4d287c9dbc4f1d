"""Durable store-and-forward outbox (断网续传) between the edge and the cloud.

Modelled on AWS Greengrass stream manager's explicit knobs: a size cap split into segments, a time to
live, a policy when full, persistence across restarts, and priority classes. On top of that the buffer
is evidence: entries are hash-chained, and nothing leaves it unacknowledged without a signed
checkpoint and a `Gap` that the edge turns into an `evidence-tamper` alert.

Storage is stdlib SQLite (WAL on disk, or `:memory:` for simulations). One table holds the entries;
an acknowledged or evicted entry keeps its row as a *tombstone* (payload NULL, chain kept) until every
entry before it is gone too, so that deleted rows stay detectable and the chain can be re-verified at
open from a trusted anchor (`base_seq`, `base_chain`) up to the recorded head.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)

GENESIS = bytes(32)
"""The chain value before seq 1."""

_LINK = struct.Struct(">QB")  # seq, priority as hashed into the chain
_CHECKPOINT = struct.Struct(">QQQ32s")  # first_seq, last_seq, head_seq, head_chain
_CHECKPOINT_DOMAIN = b"cangtwin/outbox/checkpoint/v1\x00"
_APPLICATION_ID = 0x4F555442  # "OUTB" in the SQLite header: tells an outbox from any other database
_SCHEMA_VERSION = 1
_MAX_PRIORITIES = 256  # the priority is hashed as one byte
_MAX_DETAILS = 5  # problems spelled out per corrupt gap; the rest are counted

_SCHEMA = (
    """CREATE TABLE entries (
        seq INTEGER PRIMARY KEY,
        priority INTEGER NOT NULL,
        segment INTEGER NOT NULL,
        created REAL NOT NULL,
        payload BLOB,            -- NULL once acknowledged or evicted (a tombstone)
        chain BLOB
    )""",
    # Live entries in send order, which also finds each priority's oldest segment and expired prefix.
    "CREATE INDEX live ON entries (priority, seq) WHERE payload IS NOT NULL",
    """CREATE TABLE state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        base_seq INTEGER NOT NULL, base_chain BLOB NOT NULL,
        head_seq INTEGER NOT NULL, head_chain BLOB NOT NULL,
        last_created REAL, next_segment INTEGER NOT NULL,
        appended INTEGER NOT NULL, acked INTEGER NOT NULL, evicted INTEGER NOT NULL,
        rejected INTEGER NOT NULL, corrupt INTEGER NOT NULL
    )""",
    """CREATE TABLE gaps (
        id INTEGER PRIMARY KEY,
        first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, reason TEXT NOT NULL,
        priority INTEGER, count INTEGER NOT NULL, detail TEXT NOT NULL, checkpoint BLOB NOT NULL
    )""",
)
_STATE_COLUMNS = (
    "base_seq, base_chain, head_seq, head_chain, last_created, next_segment, "
    "appended, acked, evicted, rejected, corrupt"
)


class OutboxError(Exception):
    """The outbox cannot be opened or used as asked."""


class OutboxFull(OutboxError):
    """An append did not fit; nothing of it was stored."""


class OutboxConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The knobs, as in Greengrass stream manager; `ttl_s=None` keeps entries until acknowledged."""

    max_bytes: int
    segment_bytes: int
    ttl_s: float | None = None
    when_full: Literal["reject", "overwrite_oldest"] = "reject"
    priorities: int = 3

    def __post_init__(self) -> None:
        def positive_int(name: str, value: object, upper: int | None = None) -> None:
            if type(value) is not int or value <= 0 or (upper is not None and value > upper):
                bound = f" and at most {upper}" if upper is not None else ""
                raise ValueError(f"OutboxConfig.{name} must be a positive integer{bound}, got {value!r}")

        positive_int("max_bytes", self.max_bytes)
        positive_int("segment_bytes", self.segment_bytes, self.max_bytes)
        positive_int("priorities", self.priorities, _MAX_PRIORITIES)
        if self.ttl_s is not None and (
            type(self.ttl_s) not in (int, float) or not 0 < self.ttl_s < float("inf")
        ):
            raise ValueError(f"OutboxConfig.ttl_s must be None or a positive number, got {self.ttl_s!r}")
        if self.when_full not in ("reject", "overwrite_oldest"):
            raise ValueError(
                f"OutboxConfig.when_full must be 'reject' or 'overwrite_oldest', got {self.when_full!r}"
            )


class Checkpoint(msgspec.Struct, frozen=True):
    """A signed statement of the chain head taken just before seqs first..last were given up."""

    first_seq: int
    last_seq: int
    head_seq: int
    head_chain: bytes
    signature: bytes


class Gap(msgspec.Struct, frozen=True):
    """Entries that left the outbox unacknowledged.

    Every not-yet-acknowledged entry with seq in [first_seq, last_seq] and this priority (any priority
    when `priority` is None) is gone. `count` is how many (for "corrupt": rows dropped plus rows found
    missing, some of which may have been acknowledged already). `detail` says what was wrong and where.
    """

    first_seq: int
    last_seq: int
    reason: Literal["ttl", "overflow", "corrupt"]
    checkpoint: Checkpoint
    priority: int | None
    count: int
    detail: str


class Entry(msgspec.Struct, frozen=True):
    """One unacknowledged entry as handed to the uplink."""

    seq: int
    priority: int
    payload: bytes
    created: float
    chain: bytes


class Counters(msgspec.Struct, frozen=True):
    """Lifetime counts; `appended == acked + evicted + corrupt + pending` always holds."""

    appended: int
    acked: int
    evicted: int
    rejected: int
    corrupt: int
    pending: int
    bytes_in_use: int


def chain_link(prev_chain: bytes, seq: int, priority: int, payload: bytes) -> bytes:
    """`sha256(prev_chain || seq || priority || payload)`, seq as 8 bytes and priority as 1, big-endian."""
    return hashlib.sha256(prev_chain + _LINK.pack(seq, priority) + payload).digest()


def checkpoint_message(first_seq: int, last_seq: int, head_seq: int, head_chain: bytes) -> bytes:
    """The exact bytes a checkpoint signs."""
    return _CHECKPOINT_DOMAIN + _CHECKPOINT.pack(first_seq, last_seq, head_seq, head_chain)


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """True if `checkpoint` was signed by the private half of `public_key` and is unaltered."""
    if len(checkpoint.head_chain) != 32:
        return False
    message = checkpoint_message(
        checkpoint.first_seq, checkpoint.last_seq, checkpoint.head_seq, checkpoint.head_chain
    )
    try:
        public_key.verify(checkpoint.signature, message)
    except InvalidSignature:
        return False
    return True


class _Rejected(Exception):
    """Internal: unwinds an append's transaction so the rejection can be counted in a fresh one."""


@dataclass
class _State:
    """Everything the outbox keeps in memory; copied before each transaction, restored on rollback."""

    base_seq: int
    base_chain: bytes
    head_seq: int
    head_chain: bytes
    last_created: float | None
    next_segment: int
    appended: int
    acked: int
    evicted: int
    rejected: int
    corrupt: int
    pending: int
    bytes_in_use: int
    open_segments: list[list[int] | None]  # per priority: [segment id, bytes appended to it]

    def copy(self) -> _State:
        return replace(self, open_segments=[None if s is None else list(s) for s in self.open_segments])


def _is_chain(value: object) -> bool:
    return type(value) is bytes and len(value) == 32


class Outbox:
    """The durable outbox. Single-threaded; one process per file (the file is locked while open).

    `path=None` keeps everything in an in-memory SQLite database (simulations); a path gives an SQLite
    file in WAL mode that survives restarts and is verified against its hash chain when opened.

    By default every transaction is durable when it returns (one fsync per commit). With
    `group_commit=True` commits only write the WAL, and `make_durable()` (safe to call from another
    thread) fsyncs it: one fsync then covers every transaction committed before it, so a committer
    thread can take the fsyncs off the caller's loop. The caller must treat nothing as durable,
    i.e. acknowledge nothing upstream and send nothing on, until `make_durable()` has returned.
    """

    def __init__(
        self, path: str | Path | None, config: OutboxConfig, checkpoint_key: Ed25519PrivateKey,
        group_commit: bool = False,
    ) -> None:
        if not isinstance(config, OutboxConfig):
            raise TypeError(f"config must be an OutboxConfig, got {type(config).__name__}")
        self.config = config
        self.path = None if path is None else Path(path)
        self._where = "in-memory outbox" if path is None else str(path)
        self._key = checkpoint_key
        self._group_commit = group_commit and path is not None
        self._wal_fd: int | None = None
        self._db = self._connect()
        try:
            self._s = self._load()
            self._verify_and_repair()
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------------ open, verify, repair

    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else str(self.path)
        try:
            db = sqlite3.connect(target, isolation_level=None, timeout=1.0)
            if self.path is not None:
                # One writer only: a second process opening the same file gets "database is locked".
                db.execute("PRAGMA locking_mode=EXCLUSIVE")
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise OutboxError(f"{self._where}: SQLite refused WAL mode (got {mode!r})")
                # FULL, not NORMAL: with WAL, NORMAL syncs only at WAL checkpoints, so a power cut can
                # roll back commits that had returned (the file stays consistent, the data is not
                # durable). FULL fsyncs the WAL in every COMMIT, so "committed" means "durable".
                # Under group commit, make_durable() does that fsync for many commits at once; NORMAL
                # still fsyncs the WAL before each checkpoint copies it into the database file.
                db.execute(f"PRAGMA synchronous={'NORMAL' if self._group_commit else 'FULL'}")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise OutboxError(f"{self._where}: in use by another process ({exc})") from exc
            raise OutboxError(f"{self._where}: cannot open ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{self._where}: not an SQLite database ({exc})") from exc
        return db

    def _load(self) -> _State:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == 0 and not tables:
            with self._raw_txn():
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                db.execute(
                    f"INSERT INTO state (id, {_STATE_COLUMNS}) "
                    "VALUES (1, 0, ?, 0, ?, NULL, 0, 0, 0, 0, 0, 0)",
                    (GENESIS, GENESIS),
                )
        elif app_id != _APPLICATION_ID:
            raise OutboxError(
                f"{self._where}: not an outbox file (application_id {app_id:#x}, tables {sorted(tables)})"
            )
        else:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != _SCHEMA_VERSION:
                raise OutboxError(
                    f"{self._where}: outbox schema version {version}, expected {_SCHEMA_VERSION}"
                )
            missing = {"entries", "state", "gaps"} - tables
            if missing:
                raise OutboxError(f"{self._where}: corrupt outbox, table(s) {sorted(missing)} missing")
        row = db.execute(f"SELECT {_STATE_COLUMNS} FROM state WHERE id = 1").fetchone()
        if row is None:
            raise OutboxError(f"{self._where}: corrupt outbox, the state row is missing")
        (base_seq, base_chain, head_seq, head_chain, last_created, next_segment, *counts) = row
        for name, value in (("base_chain", base_chain), ("head_chain", head_chain)):
            if not _is_chain(value):
                raise OutboxError(f"{self._where}: corrupt outbox, state.{name} is not a 32-byte blob")
        for name, value in zip(_STATE_COLUMNS.split(", "), row):
            if name not in ("base_chain", "head_chain", "last_created") and type(value) is not int:
                raise OutboxError(f"{self._where}: corrupt outbox, state.{name} is {value!r}, not an integer")
        if not 0 <= base_seq <= head_seq:
            raise OutboxError(
                f"{self._where}: corrupt outbox, state base_seq {base_seq} > head_seq {head_seq}"
            )
        return _State(
            base_seq, base_chain, head_seq, head_chain, last_created, next_segment, *counts,
            pending=0, bytes_in_use=0, open_segments=[None] * self.config.priorities,
        )

    def _verify_and_repair(self) -> None:
        """Re-walk the chain from the base anchor; tombstone what fails, fill holes, report gaps."""
        s, db, where = self._s, self._db, self._where
        too_high = db.execute(
            "SELECT seq, priority FROM entries WHERE payload IS NOT NULL AND typeof(priority) = 'integer' "
            "AND priority >= ? ORDER BY seq LIMIT 1",
            (self.config.priorities,),
        ).fetchone()
        if too_high is not None:
            raise OutboxError(
                f"{where}: entry seq {too_high[0]} has priority {too_high[1]} but config.priorities is "
                f"{self.config.priorities}; open with priorities >= {too_high[1] + 1} (or the row is corrupt)"
            )
        problems: list[tuple[int, int, int, str]] = []  # (first, last, entries lost, what)
        drop: list[int] = []  # live rows that fail verification
        holes: list[tuple[int, int]] = []  # seq ranges with no row at all
        below_base = 0
        pending = used = 0
        prev: bytes | None = s.base_chain
        expect = s.base_seq + 1
        head_row: tuple[bytes | None, bool] | None = None  # (chain, verified live) of the row at head_seq
        for seq, priority, payload, chain in db.execute(
            "SELECT seq, priority, payload, chain FROM entries ORDER BY seq"
        ):
            if seq <= s.base_seq:
                below_base += 1
                what = f"seq {seq}: unexpected row at or below the verified base {s.base_seq}"
                problems.append((seq, seq, 0, what))
                continue
            if seq > expect:
                holes.append((expect, seq - 1))
                problems.append((expect, seq - 1, seq - expect, f"seqs {expect}..{seq - 1}: rows deleted"))
                prev = None
            live = payload is not None
            what = None
            if seq > s.head_seq:
                what = f"seq {seq}: row beyond the recorded head seq {s.head_seq}"
            elif not live:
                pass
            elif type(payload) is not bytes:
                what = f"seq {seq}: payload is {type(payload).__name__}, not a blob"
            elif not _is_chain(chain):
                what = f"seq {seq}: chain is not a 32-byte blob"
            elif type(priority) is not int or not 0 <= priority < self.config.priorities:
                what = f"seq {seq}: priority {priority!r} out of range"
            elif prev is None:
                what = f"seq {seq}: cannot be verified, the row before it is missing or unreadable"
            elif chain_link(prev, seq, priority, payload) != chain:
                what = (
                    f"seq {seq}: stored chain != sha256(previous chain || seq || priority || payload); "
                    "the payload, priority or chain was altered"
                )
            if what is not None:
                problems.append((seq, seq, 1 if live else 0, what))
                if live:
                    drop.append(seq)
            elif live:
                pending += 1
                used += len(payload)
            if seq == s.head_seq:
                head_row = (chain, live and what is None)
            prev = chain if _is_chain(chain) else None
            expect = seq + 1
        last = expect - 1
        if last < s.head_seq:
            holes.append((last + 1, s.head_seq))
            what = f"seqs {last + 1}..{s.head_seq}: rows deleted"
            problems.append((last + 1, s.head_seq, s.head_seq - last, what))
        distrust_all = head_row is not None and head_row[1] and head_row[0] != s.head_chain
        if distrust_all:
            problems.append((
                s.base_seq + 1, s.head_seq, pending,
                f"seq {s.head_seq}: chain head differs from the recorded head; "
                "rows were rewritten with a recomputed chain, none can be trusted",
            ))
            pending = used = 0
        elif head_row is not None and not head_row[1] and head_row[0] != s.head_chain:
            what = f"seq {s.head_seq}: tombstone chain differs from the recorded head"
            problems.append((s.head_seq, s.head_seq, 0, what))
        s.pending, s.bytes_in_use = pending, used
        if not problems:
            return
        with self._txn():
            db.executemany("UPDATE entries SET payload = NULL WHERE seq = ?", [(q,) for q in drop])
            if distrust_all:
                db.execute("UPDATE entries SET payload = NULL WHERE payload IS NOT NULL")
            for first, last_missing in holes:
                db.executemany(
                    "INSERT INTO entries (seq, priority, segment, created, payload, chain) "
                    "VALUES (?, 0, -1, 0, NULL, NULL)",
                    ((q,) for q in range(first, last_missing + 1)),
                )
            if below_base:
                db.execute("DELETE FROM entries WHERE seq <= ?", (s.base_seq,))
            # Rows beyond the recorded head keep their seqs (now tombstones) so no seq is ever reused;
            # the head row carries the head chain so the next append links to a verifiable row.
            s.head_seq = max(s.head_seq, last)
            db.execute(
                "UPDATE entries SET chain = ? WHERE seq = ? AND payload IS NULL", (s.head_chain, s.head_seq)
            )
            lost = s.appended - s.acked - s.evicted - s.corrupt - s.pending
            s.corrupt += max(lost, 0)
            for first, last_seq, count, whats in _merge(problems):
                detail = "; ".join(whats[:_MAX_DETAILS])
                if len(whats) > _MAX_DETAILS:
                    detail += f"; and {len(whats) - _MAX_DETAILS} more"
                log.warning("%s: corrupt range %d..%d: %s", where, first, last_seq, detail)
                self._record_gap(first, last_seq, "corrupt", None, count, detail)
            self._compact()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _raw_txn(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _txn(self) -> Iterator[None]:
        """One atomic step: the SQL and the in-memory state both commit, or both roll back."""
        saved = self._s.copy()
        try:
            with self._raw_txn():
                yield
                s = self._s
                self._db.execute(
                    "UPDATE state SET base_seq=?, base_chain=?, head_seq=?, head_chain=?, last_created=?, "
                    "next_segment=?, appended=?, acked=?, evicted=?, rejected=?, corrupt=? WHERE id = 1",
                    (s.base_seq, s.base_chain, s.head_seq, s.head_chain, s.last_created, s.next_segment,
                     s.appended, s.acked, s.evicted, s.rejected, s.corrupt),
                )
        except BaseException:
            self._s = saved
            raise

    # ------------------------------------------------------------------ append

    def append(self, payload: bytes, priority: int, now: float) -> int:
        """Store one entry; returns its seq. See `append_many`."""
        return self.append_many([(payload, priority)], now)[0]

    def append_many(self, items: list[tuple[bytes, int]], now: float) -> list[int]:
        """Store `(payload, priority)` items in one transaction; returns their seqs, increasing.

        `now` is clamped so stored timestamps never decrease. If the batch does not fit, expired entries
        are evicted first; then "reject" raises `OutboxFull` with nothing stored, and "overwrite_oldest"
        evicts whole segments, oldest first from the lowest priority present, as each item needs room.
        """
        if not items:
            return []
        cfg = self.config
        try:
            total = sum(len(payload) for payload, _ in items)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"items must be (payload: bytes, priority: int) pairs ({exc})") from None
        try:
            with self._txn():
                s = self._s
                if s.bytes_in_use + total > cfg.max_bytes:
                    self._evict_expired(now)
                    if cfg.when_full == "reject" and s.bytes_in_use + total > cfg.max_bytes:
                        raise _Rejected(
                            f"batch of {len(items)} entries ({total} bytes) does not fit: "
                            f"{s.bytes_in_use} of max_bytes {cfg.max_bytes} in use"
                        )
                self._append_rows(items, now)
        except _Rejected as rejected:
            with self._txn():
                self._s.rejected += len(items)
            raise OutboxFull(f"{self._where}: {rejected}") from None
        return list(range(self._s.head_seq - len(items) + 1, self._s.head_seq + 1))

    def _append_rows(self, items: list[tuple[bytes, int]], now: float) -> None:
        # The hot loop: hashing, segment assignment and the row tuple per item, then one executemany.
        s, cfg, db = self._s, self.config, self._db
        created = now if s.last_created is None else max(now, s.last_created)
        s.last_created = created
        max_bytes, segment_bytes, priorities = cfg.max_bytes, cfg.segment_bytes, cfg.priorities
        segments = s.open_segments
        sha256, pack = hashlib.sha256, _LINK.pack
        insert = (
            "INSERT INTO entries (seq, priority, segment, created, payload, chain) VALUES (?, ?, ?, ?, ?, ?)"
        )
        seq, chain, used = s.head_seq, s.head_chain, s.bytes_in_use
        rows: list[tuple[int, int, int, float, bytes, bytes]] = []
        for index, (payload, priority) in enumerate(items):
            if type(payload) is not bytes:
                raise TypeError(f"item {index}: payload must be bytes, got {type(payload).__name__}")
            if type(priority) is not int or not 0 <= priority < priorities:
                raise ValueError(
                    f"item {index}: priority must be an int in [0, {priorities}), got {priority!r}"
                )
            size = len(payload)
            if used + size > max_bytes:  # only "overwrite_oldest" gets here: "reject" checked the batch
                if size > max_bytes:
                    raise _Rejected(f"a payload of {size} bytes exceeds max_bytes {max_bytes}")
                db.executemany(insert, rows)
                s.appended += len(rows)
                s.pending += len(rows)
                s.head_seq, s.head_chain, s.bytes_in_use = seq, chain, used
                rows.clear()
                while s.bytes_in_use + size > max_bytes:
                    self._evict_oldest_segment()
                used = s.bytes_in_use
            segment = segments[priority]
            if segment is None or (segment[1] and segment[1] + size > segment_bytes):
                segment = segments[priority] = [s.next_segment, 0]
                s.next_segment += 1
            segment[1] += size
            seq += 1
            chain = sha256(chain + pack(seq, priority) + payload).digest()
            rows.append((seq, priority, segment[0], created, payload, chain))
            used += size
        db.executemany(insert, rows)
        s.appended += len(rows)
        s.pending += len(rows)
        s.head_seq, s.head_chain, s.bytes_in_use = seq, chain, used

    # ------------------------------------------------------------------ eviction

    def _oldest_live(self, priority: int) -> tuple[int, int, float] | None:
        return self._db.execute(
            "SELECT seq, segment, created FROM entries WHERE priority = ? AND payload IS NOT NULL "
            "ORDER BY seq LIMIT 1",
            (priority,),
        ).fetchone()

    def _expired(self, now: float) -> list[tuple[int, int]]:
        """(priority, oldest live seq) of each priority whose oldest live entry has expired."""
        if self.config.ttl_s is None or self._s.pending == 0:
            return []
        cutoff = now - self.config.ttl_s
        found = []
        for priority in range(self.config.priorities):
            oldest = self._oldest_live(priority)
            if oldest is not None and oldest[2] <= cutoff:
                found.append((priority, oldest[0]))
        return found

    def _evict_expired(self, now: float) -> None:
        # Timestamps never decrease, so each priority's expired entries are a prefix in seq order.
        for priority, first in self._expired(now):
            boundary = self._db.execute(
                "SELECT seq FROM entries WHERE priority = ? AND payload IS NOT NULL AND created > ? "
                "ORDER BY seq LIMIT 1",
                (priority, now - self.config.ttl_s),
            ).fetchone()
            last = self._s.head_seq if boundary is None else boundary[0] - 1
            detail = f"expired: older than ttl_s={self.config.ttl_s} at t={now}"
            self._evict_range(priority, first, last, "ttl", detail)

    def _evict_oldest_segment(self) -> None:
        for priority in reversed(range(self.config.priorities)):
            oldest = self._oldest_live(priority)
            if oldest is not None:
                break
        first, segment, _ = oldest
        boundary = self._db.execute(
            "SELECT seq FROM entries WHERE priority = ? AND payload IS NOT NULL AND seq > ? AND segment != ? "
            "ORDER BY seq LIMIT 1",
            (priority, first, segment),
        ).fetchone()
        last = self._s.head_seq if boundary is None else boundary[0] - 1
        detail = f"full: evicted segment {segment} of priority {priority}"
        self._evict_range(priority, first, last, "overflow", detail)

    def _evict_range(self, priority: int, first: int, last: int, reason: str, detail: str) -> None:
        """Checkpoint, record the gap, then tombstone the live entries of `priority` in first..last."""
        where = "priority = ? AND payload IS NOT NULL AND seq BETWEEN ? AND ?"
        count, size, lowest, highest = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0), min(seq), max(seq) "
            f"FROM entries WHERE {where}",
            (priority, first, last),
        ).fetchone()
        self._record_gap(lowest, highest, reason, priority, count, detail)
        self._db.execute(f"UPDATE entries SET payload = NULL WHERE {where}", (priority, first, last))
        s = self._s
        s.evicted += count
        s.pending -= count
        s.bytes_in_use -= size
        self._compact()

    def _record_gap(
        self, first: int, last: int, reason: str, priority: int | None, count: int, detail: str
    ) -> None:
        s = self._s
        signature = self._key.sign(checkpoint_message(first, last, s.head_seq, s.head_chain))
        checkpoint = Checkpoint(first, last, s.head_seq, s.head_chain, signature)
        self._db.execute(
            "INSERT INTO gaps (first_seq, last_seq, reason, priority, count, detail, checkpoint) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (first, last, reason, priority, count, detail, msgspec.msgpack.encode(checkpoint)),
        )

    def _compact(self) -> None:
        """Drop the tombstone prefix and move the trusted anchor up to the last dropped row."""
        s, db = self._s, self._db
        successor = db.execute(
            "SELECT payload IS NULL FROM entries WHERE seq = ?", (s.base_seq + 1,)
        ).fetchone()
        if successor is None or not successor[0]:
            return
        firsts = [oldest[0] for p in range(self.config.priorities) if (oldest := self._oldest_live(p))]
        new_base = min(firsts) - 1 if firsts else s.head_seq
        (chain,) = db.execute("SELECT chain FROM entries WHERE seq = ?", (new_base,)).fetchone()
        db.execute("DELETE FROM entries WHERE seq <= ?", (new_base,))
        s.base_seq, s.base_chain = new_base, chain

    # ------------------------------------------------------------------ read, ack, report

    def next_batch(self, max_items: int, now: float) -> list[Entry]:
        """Up to `max_items` unacknowledged entries: priority 0 first, by seq within a priority.

        Expired entries are evicted first (each with its gap) and never returned. Calling again
        without `ack` returns the same entries (at-least-once).
        """
        if type(max_items) is not int or max_items < 0:
            raise ValueError(f"max_items must be a non-negative int, got {max_items!r}")
        if self._expired(now):
            with self._txn():
                self._evict_expired(now)
        rows = self._db.execute(
            "SELECT seq, priority, payload, created, chain FROM entries WHERE payload IS NOT NULL "
            "ORDER BY priority, seq LIMIT ?",
            (max_items,),
        )
        return [Entry(*row) for row in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove delivered entries; returns how many were still pending (others are ignored)."""
        wanted = json.dumps([int(seq) for seq in seqs])
        where = "seq IN (SELECT value FROM json_each(?)) AND payload IS NOT NULL"
        with self._txn():
            count, size = self._db.execute(
                f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM entries WHERE {where}", (wanted,)
            ).fetchone()
            if count:
                self._db.execute(f"UPDATE entries SET payload = NULL WHERE {where}", (wanted,))
                s = self._s
                s.acked += count
                s.pending -= count
                s.bytes_in_use -= size
                self._compact()
        return count

    def take_gaps(self) -> list[Gap]:
        """Hand over the gaps recorded since the last call (they persist across restarts until taken)."""
        rows = self._db.execute(
            "SELECT id, first_seq, last_seq, reason, priority, count, detail, checkpoint FROM gaps ORDER BY id"
        ).fetchall()
        if not rows:
            return []
        gaps = []
        for gap_id, first, last, reason, priority, count, detail, blob in rows:
            try:
                checkpoint = msgspec.msgpack.decode(blob, type=Checkpoint)
                gaps.append(Gap(first, last, reason, checkpoint, priority, count, detail))
            except (msgspec.DecodeError, TypeError) as exc:
                raise OutboxError(f"{self._where}: gap record {gap_id} is unreadable ({exc})") from exc
        with self._txn():
            self._db.execute("DELETE FROM gaps WHERE id <= ?", (rows[-1][0],))
        return gaps

    @property
    def counters(self) -> Counters:
        s = self._s
        return Counters(s.appended, s.acked, s.evicted, s.rejected, s.corrupt, s.pending, s.bytes_in_use)

    @property
    def head(self) -> tuple[int, bytes]:
        """(seq, chain) of the newest entry ever appended; (0, GENESIS) when none."""
        return self._s.head_seq, self._s.head_chain

    def make_durable(self) -> None:
        """Group commit: fsync the WAL, so every transaction committed before this call survives a
        power cut (a `kill -9` loses no committed transaction in either mode). Thread-safe: it only
        touches the WAL file's own descriptor. A no-op without group commit (each commit synced)."""
        if not self._group_commit:
            return
        if self._wal_fd is None:
            try:  # the WAL exists from the first write; SQLite keeps its inode until the last close
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            except FileNotFoundError:
                return  # nothing written yet
        os.fsync(self._wal_fd)

    def close(self) -> None:
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _merge(problems: list[tuple[int, int, int, str]]) -> list[tuple[int, int, int, list[str]]]:
    """Join overlapping or adjacent problem ranges into one gap each."""
    merged: list[tuple[int, int, int, list[str]]] = []
    for first, last, count, what in sorted(problems, key=lambda p: (p[0], p[1])):
        if merged and first <= merged[-1][1] + 1:
            m_first, m_last, m_count, whats = merged[-1]
            merged[-1] = (m_first, max(m_last, last), m_count + count, whats + [what])
        else:
            merged.append((first, last, count, [what]))
    return merged
