"""ledger-edit: someone with access to the evidence store alters a committed entry's bytes.

Acts on bytes at rest, as only a data edit may: one byte of entry `entry`'s data in the cloud's
ledger file is changed in place. With `rehash` the forger also rewrites the entry's leaf hash and
every later commit record's root, so the file's own checks pass; only the tree heads the
parties signed can then tell (ledger-audit, id `evidence-tamper-ledger`). Minimum magnitude:
one byte, either way; the audit runs every `audit_every_s` (60 s by default), which bounds the
detection latency.
"""

from __future__ import annotations

import struct
from hashlib import sha256
from pathlib import Path
from typing import Callable

from cangtwin.fraud.label import Label
from cangtwin.platform.ledger.log import COMMIT_MARK, MAGIC
from cangtwin.platform.ledger.merkle import HASH_SIZE, MerkleTree

_LEN = struct.Struct(">I")
_COMMIT = struct.Struct(">IQ32s")


def edit_entry(path: Path, entry: int, rehash: bool) -> int:
    """Flip one bit in the middle of entry `entry`'s data; returns the byte offset changed."""
    blob = bytearray(path.read_bytes())
    pos, index, tree, pending, changed = len(MAGIC), 0, MerkleTree(), [], None
    while pos < len(blob):
        (length,) = _LEN.unpack_from(blob, pos)
        if length == COMMIT_MARK:
            tree.append_leaf_hashes(pending)
            pending = []
            if rehash and changed is not None:
                _, size, _ = _COMMIT.unpack_from(blob, pos)
                _COMMIT.pack_into(blob, pos, COMMIT_MARK, size, tree.root())
            pos += _COMMIT.size
            continue
        start = pos + _LEN.size + HASH_SIZE
        if index == entry:
            changed = start + length // 2
            blob[changed] ^= 0x01
            if rehash:
                blob[pos + _LEN.size:start] = sha256(b"\x00" + blob[start:start + length]).digest()
        pending.append(bytes(blob[pos + _LEN.size:start]))
        index += 1
        pos = start + length
    if changed is None:
        raise ValueError(f"{path}: no entry {entry} (the ledger holds {index})")
    with open(path, "r+b") as file:  # in place: the ledger's own writer keeps appending after it
        file.write(blob)
    return changed


def inject_ledger_edit(
    label_id: str, at: float, path: Path, entry: int, rehash: bool,
    schedule: Callable[[float, Callable[[], None]], None], record: Callable[[Label], None],
) -> Label:
    label = Label(
        id=label_id, kind="ledger-edit", fault=False, targets=["ledger:evidence"], injected_at=at, onset=at,
        magnitude=1, magnitude_unit="bytes", primary_rules=["evidence-tamper-ledger"], window_s=600.0,
        detail={"entry": entry, "rehash": rehash, "minimum_magnitude": 1},
    )

    def act() -> None:
        label.detail["offset"] = edit_entry(path, entry, rehash)
        record(label)

    schedule(at, act)
    return label
