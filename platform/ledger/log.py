"""A durable, append-only, file-backed Merkle log, and audits of a log against signed tree heads.

File format (all integers big-endian):

    header   b"CTWLEDG1"
    entry    u32 length (< 0xFFFFFFFF) | 32-byte RFC 6962 leaf hash | data
    commit   u32 0xFFFFFFFF | u64 tree size | 32-byte root after this block

A block is its entry records followed by one commit record, written with one write and one
fsync, so a crash leaves at most an uncommitted tail. Opening re-hashes every entry and checks
every commit; damage is reported with its kind, entry index and byte offset, and only the
committed intact prefix is kept. The unsigned commit roots catch accidents; deliberate edits
are caught by `audit_log` against tree heads the parties signed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from itertools import accumulate
from pathlib import Path

import msgspec

from cangtwin.platform.ledger.merkle import (
    HASH_SIZE,
    MerkleTree,
    RootSource,
    first_divergence,
    leaf_hashes,
)
from cangtwin.platform.ledger.tree_head import HeadVerifier, QuorumError, SignedTreeHead, TreeHead

MAGIC = b"CTWLEDG1"
COMMIT_MARK = 0xFFFFFFFF
MAX_ENTRY_BYTES = COMMIT_MARK - 1
_LEN = struct.Struct(">I")
_COMMIT = struct.Struct(">IQ32s")
_RECORD_OVERHEAD = _LEN.size + HASH_SIZE


class LogDamage(msgspec.Struct, frozen=True):
    """What is wrong with a log file and where: the first damaged record found by a scan."""

    # bad_header | truncated | leaf_hash_mismatch | commit_size_mismatch | commit_root_mismatch
    # | empty_block | uncommitted_tail
    kind: str
    detail: str
    # Position in the entry sequence where the file stops being right; for a commit root
    # mismatch, the first entry of the block whose root is wrong.
    entry_index: int
    offset: int  # byte offset of the damaged record (for a missing commit: where it belongs)
    intact_size: int  # entries in the committed, intact prefix that is kept
    intact_bytes: int  # byte length of that prefix

    def __str__(self) -> str:
        return (f"{self.kind} at entry {self.entry_index}, byte offset {self.offset}: "
                f"{self.detail} (intact prefix: {self.intact_size} entries, "
                f"{self.intact_bytes} bytes)")


class LogCorruptError(Exception):
    """A log file is damaged; `.damage` says what and where."""

    def __init__(self, path: Path, damage: LogDamage) -> None:
        super().__init__(f"evidence log {path}: {damage}")
        self.path = path
        self.damage = damage


class LogBusyError(Exception):
    """Another writer holds the log."""


@dataclass
class Scan:
    """A parsed log file: every entry whose leaf hash verified, and how far commits cover them."""

    tree: MerkleTree
    data_offsets: array
    lengths: array
    committed_size: int
    committed_bytes: int
    damage: LogDamage | None


def scan_log(path: str | os.PathLike[str]) -> Scan:
    """Parse and check a whole log file; stops at the first damaged record."""
    return _scan(Path(path).read_bytes())


def _scan(blob: bytes) -> Scan:
    # One pass over the file; per-record work is a slice and a hash, as in the append path.
    tree = MerkleTree()
    data_offsets, lengths = array("Q"), array("I")
    end = len(blob)
    committed_size, committed_bytes = 0, len(MAGIC)
    pending: list[bytes] = []

    def damaged(kind: str, detail: str, offset: int, index: int) -> Scan:
        tree.append_leaf_hashes(pending)
        intact_bytes = 0 if kind == "bad_header" else committed_bytes
        damage = LogDamage(kind, detail, index, offset, committed_size, intact_bytes)
        return Scan(tree, data_offsets, lengths, committed_size, intact_bytes, damage)

    if blob[:len(MAGIC)] != MAGIC:
        return damaged("bad_header", f"file does not start with {MAGIC!r}; not an evidence log",
                       0, 0)
    pos = len(MAGIC)
    while pos < end:
        index = committed_size + len(pending)
        if pos + _LEN.size > end:
            return damaged("truncated", f"record header cut short: {end - pos} of 4 bytes",
                           pos, index)
        (length,) = _LEN.unpack_from(blob, pos)
        if length == COMMIT_MARK:
            if pos + _COMMIT.size > end:
                return damaged("truncated", f"commit record cut short: {end - pos} of "
                               f"{_COMMIT.size} bytes", pos, index)
            _, size, root = _COMMIT.unpack_from(blob, pos)
            if not pending:
                return damaged("empty_block", "commit record with no entries before it",
                               pos, committed_size)
            if size != index:
                return damaged("commit_size_mismatch", f"commit record claims tree size "
                               f"{size} but {index} entries precede it", pos, index)
            tree.append_leaf_hashes(pending)
            pending = []
            if tree.root() != root:
                return damaged("commit_root_mismatch", f"root of entries {committed_size}.."
                               f"{index - 1} differs from the root their commit record states",
                               pos, committed_size)
            pos += _COMMIT.size
            committed_size, committed_bytes = index, pos
            continue
        data_start = pos + _RECORD_OVERHEAD
        data_end = data_start + length
        if data_end > end:
            return damaged("truncated", f"entry declares {length} data bytes but only "
                           f"{max(0, end - data_start)} remain", pos, index)
        stored = blob[pos + _LEN.size:data_start]
        if sha256(b"\x00" + blob[data_start:data_end]).digest() != stored:
            return damaged("leaf_hash_mismatch", "entry data does not hash to its stored leaf hash",
                           pos, index)
        pending.append(stored)
        data_offsets.append(data_start)
        lengths.append(length)
        pos = data_end
    if pending:
        index = committed_size + len(pending)
        return damaged("uncommitted_tail", f"entries {committed_size}..{index - 1} from byte "
                       f"offset {committed_bytes} have no commit record (an interrupted append)",
                       end, index)
    return Scan(tree, data_offsets, lengths, committed_size, committed_bytes, None)


def _write_all(fd: int, buf: bytes) -> None:
    view = memoryview(buf)
    while view:
        view = view[os.write(fd, view):]


def _write_new_file(path: Path, data: bytes) -> Path:
    """Durably write `data` to `path`, or to `path.N` if earlier recoveries took the name."""
    candidate, n = path, 0
    while True:
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}.{n}")
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(candidate)
    return candidate


def _fsync_dir(path: Path) -> None:
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class EvidenceLog:
    """Single-writer durable Merkle log; `append_block` is one write and one fsync per block."""

    def __init__(self, path: Path, fd: int, scan: Scan) -> None:
        self.path = path
        self._fd = fd
        self.tree = scan.tree
        self._data_offsets = scan.data_offsets
        self._lengths = scan.lengths
        self._end = scan.committed_bytes
        self.damage = scan.damage
        if scan.damage is not None:
            self._forget_beyond(scan.committed_size)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False,
             strict: bool = True) -> EvidenceLog:
        """Open (or with `create`, start) a log, verifying all of it.

        Damage raises LogCorruptError when `strict`; otherwise the log opens on its committed
        intact prefix with `.damage` set, refusing appends until `recover()`.
        """
        path = Path(path)
        if not path.exists():
            if not create:
                raise FileNotFoundError(f"no evidence log at {path}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, MAGIC)
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(path)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise LogBusyError(f"evidence log {path} is open by another writer") from exc
            raise
        scan = scan_log(path)
        if scan.damage is not None and strict:
            os.close(fd)
            raise LogCorruptError(path, scan.damage)
        return cls(path, fd, scan)

    def _forget_beyond(self, size: int) -> None:
        self.tree.truncate(size)
        del self._data_offsets[size:]
        del self._lengths[size:]

    @property
    def size(self) -> int:
        return self.tree.size

    def root(self, size: int | None = None) -> bytes:
        return self.tree.root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return self.tree.consistency_proof(old_size, new_size)

    def entry(self, index: int) -> bytes:
        """Entry `index`, re-checked against its leaf hash so later on-disk edits are caught."""
        if not 0 <= index < self.size:
            raise IndexError(f"entry {index} is outside a log of {self.size} entries")
        offset = self._data_offsets[index]
        data = os.pread(self._fd, self._lengths[index], offset)
        if sha256(b"\x00" + data).digest() != self.tree.leaf_hash(index):
            raise LogCorruptError(self.path, LogDamage(
                "leaf_hash_mismatch", "entry changed on disk after the log was opened", index,
                offset - _RECORD_OVERHEAD, index, offset - _RECORD_OVERHEAD))
        return data

    def append_block(self, entries: Sequence[bytes],
                     timestamp: float | None = None) -> tuple[int, TreeHead]:
        """Append a block durably; returns its first index and the tree head after it."""
        if self.damage is not None:
            raise LogCorruptError(self.path, self.damage)
        if not entries:
            raise ValueError("a block needs at least one entry")
        lengths = [len(e) for e in entries]
        if max(lengths) > MAX_ENTRY_BYTES:
            raise ValueError(f"an entry exceeds {MAX_ENTRY_BYTES} bytes")
        hashes = leaf_hashes(entries)
        first = self.size
        self.tree.append_leaf_hashes(hashes)
        root = self.tree.root()
        parts: list[bytes | None] = [None] * (3 * len(entries))
        parts[0::3] = map(_LEN.pack, lengths)
        parts[1::3] = hashes
        parts[2::3] = entries
        parts.append(_COMMIT.pack(COMMIT_MARK, self.size, root))
        buf = b"".join(parts)  # type: ignore[arg-type]
        try:
            _write_all(self._fd, buf)
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self._end)
            self.tree.truncate(first)
            raise
        self._data_offsets.extend(
            start + _RECORD_OVERHEAD
            for start in accumulate((_RECORD_OVERHEAD + n for n in lengths[:-1]),
                                    initial=self._end))
        self._lengths.extend(lengths)
        self._end += len(buf)
        return first, TreeHead(self.size, root, time.time() if timestamp is None else timestamp)

    def recover(self) -> Path | None:
        """Move the damaged tail to `<log>.damaged-<offset>` and truncate to the intact prefix.

        The tail is kept, not deleted: it may be evidence of tampering.
        """
        if self.damage is None:
            return None
        size = os.fstat(self._fd).st_size
        tail = os.pread(self._fd, size - self._end, self._end)
        sidecar = _write_new_file(self.path.with_name(f"{self.path.name}.damaged-{self._end}"),
                                  tail)
        if self._end == 0:
            os.ftruncate(self._fd, 0)
            _write_all(self._fd, MAGIC)
            self._end = len(MAGIC)
        else:
            os.ftruncate(self._fd, self._end)
        os.fsync(self._fd)
        self.damage = None
        return sidecar

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EvidenceLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AuditFinding(msgspec.Struct, frozen=True):
    """One problem an audit found.

    For findings about the file, the first deviating entry lies in [range_start, range_end),
    and `first_index` is set when the audit pinned it exactly. Findings about the heads
    themselves (a bad signature quorum, two roots for one size) carry no range.
    """

    kind: str  # damage | truncated | edited | bad_head | heads_conflict
    detail: str
    first_index: int | None = None
    range_start: int | None = None
    range_end: int | None = None


class AuditReport(msgspec.Struct, frozen=True):
    """Outcome of checking a log against published tree heads."""

    size: int  # entries whose leaf hashes verified in the file
    attested_size: int  # largest published size the log matches
    findings: list[AuditFinding]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def location(self) -> tuple[int, int] | None:
        """Bounds [start, end) on the first bad entry that all findings about the file agree
        on; if they disagree, the earliest finding's bounds."""
        ranges = [(f.range_start, f.range_end) for f in self.findings
                  if f.range_start is not None and f.range_end is not None]
        if not ranges:
            return None
        start, end = max(r[0] for r in ranges), min(r[1] for r in ranges)
        return (start, end) if start < end else min(ranges)


def _damage_finding(damage: LogDamage, size: int) -> AuditFinding:
    if damage.kind == "commit_root_mismatch":  # somewhere in the block the commit closes
        return AuditFinding("damage", str(damage), None, damage.entry_index,
                            max(size, damage.entry_index + 1))
    return AuditFinding("damage", str(damage), damage.entry_index, damage.entry_index,
                        damage.entry_index + 1)


def _trusted_roots(heads: Sequence[SignedTreeHead | TreeHead], verifier: HeadVerifier | None,
                   findings: list[AuditFinding]) -> dict[int, bytes]:
    roots: dict[int, bytes] = {}
    for item in heads:
        head = item.head if isinstance(item, SignedTreeHead) else item
        if verifier is not None and isinstance(item, SignedTreeHead):
            try:
                verifier.verify(item)
            except (QuorumError, ValueError) as exc:
                findings.append(AuditFinding("bad_head", str(exc)))
                continue
        known = roots.setdefault(head.size, head.root)
        if known != head.root:
            findings.append(AuditFinding(
                "heads_conflict", f"two published heads at size {head.size} have different "
                "roots: the log was forked (split view)"))
    return roots


def _root_or_none(source: RootSource, size: int) -> bytes | None:
    try:
        return source.root(size)
    except ValueError:  # the replica is shorter than `size`
        return None


def audit_log(path: str | os.PathLike[str], heads: Sequence[SignedTreeHead | TreeHead], *,
              verifier: HeadVerifier | None = None,
              reference: RootSource | None = None) -> AuditReport:
    """Check a log file (or a copy) against published tree heads: any edit, truncation or fork.

    Heads are checked in size order against roots recomputed from the file's data. A mismatch
    bounds the first bad entry between the last matching head and this one; given a
    `reference` replica that matches the head, a binary search on prefix roots pins it exactly.
    With a `verifier`, heads without a signature quorum are reported and not relied on.
    """
    scan = scan_log(path)
    tree = scan.tree
    findings: list[AuditFinding] = []
    if scan.damage is not None:
        findings.append(_damage_finding(scan.damage, tree.size))
    roots = _trusted_roots(heads, verifier, findings)
    attested = 0
    for size in sorted(roots):
        if size > tree.size:
            findings.append(AuditFinding(
                "truncated", f"a head was published at size {size} but the log has only "
                f"{tree.size} intact entries", tree.size, tree.size, size))
            break
        if tree.root(size) != roots[size]:
            exact = None
            if reference is not None and _root_or_none(reference, size) == roots[size]:
                agreed = attested if reference.root(attested) == tree.root(attested) else 0
                exact = first_divergence(tree, reference, size, known_equal=agreed)
            if exact is None:
                findings.append(AuditFinding(
                    "edited", f"root at size {size} differs from the published head; the first "
                    f"changed entry is in {attested}..{size - 1}", None, attested, size))
            else:
                findings.append(AuditFinding(
                    "edited", f"root at size {size} differs from the published head; entry "
                    f"{exact} is the first that differs from the reference replica",
                    exact, exact, exact + 1))
            break
        attested = size
    return AuditReport(tree.size, attested, findings)
