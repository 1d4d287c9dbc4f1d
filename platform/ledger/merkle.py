"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs, and their verification.

Hand-written because no maintained Python library implements the RFC 9162 proof algorithms
(the Go transparency-dev/merkle module is the reference; these functions follow its shape).
`MerkleTree` caches every complete subtree hash so that appends cost amortised O(1) hashes and a
root or proof for any earlier size costs O(log n), with hashes kept in flat bytearrays rather than
one Python object per node.
"""

from __future__ import annotations

from hashlib import sha256
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1 leaf hash: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1 interior node hash: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """Leaf hashes of many entries in one pass (the append path's batch hashing)."""
    return [sha256(b"\x00" + e).digest() for e in entries]


def split_point(n: int) -> int:
    """RFC 6962's k: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) by pairing level by level; an unpaired last node moves up unchanged.

    That bottom-up pairing builds exactly RFC 6962's left-heavy tree, in O(n).
    """
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _inclusion_path(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(index, D[0:size]), bottom hash first."""
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()
    return path


def _consistency_path(old_size: int, new_size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(old_size, D[0:new_size], true), bottom hash first."""
    path: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        k = split_point(end - start)
        if m <= k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        path.append(subtree(start, end))
    path.reverse()
    return path


def _check_sizes_for_consistency(old_size: int, new_size: int, have: int) -> None:
    if not 0 <= old_size <= new_size <= have:
        raise ValueError(f"consistency proof needs 0 <= old_size <= new_size <= {have}, "
                         f"got {old_size} and {new_size}")


def _check_index(index: int, size: int, have: int) -> None:
    if not 0 <= index < size <= have:
        raise ValueError(f"inclusion proof needs 0 <= index < size <= {have}, got index {index}, "
                         f"size {size}")


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Audit path for leaf `index` in the tree of the first `size` leaf hashes."""
    _check_index(index, size, len(leaf_hashes))
    return _inclusion_path(index, size, lambda s, e: root_from_leaf_hashes(leaf_hashes[s:e]))


def consistency_proof(old_size: int, new_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Proof that the tree of `old_size` leaves is a prefix of the tree of `new_size` leaves."""
    _check_sizes_for_consistency(old_size, new_size, len(leaf_hashes))
    if old_size in (0, new_size):
        return []
    return _consistency_path(old_size, new_size,
                             lambda s, e: root_from_leaf_hashes(leaf_hashes[s:e]))


def _all_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, (bytes, bytearray)) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf hash `leaf` at `index` in the tree `root`?"""
    if not 0 <= index < size or not _all_hashes(leaf, root, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is tree (`old_size`, `old_root`) a prefix of (`new_size`, `new_root`)?"""
    if not 0 <= old_size <= new_size or not _all_hashes(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class RootSource(Protocol):
    """Anything that can state the root of each of its prefixes (a tree, a remote replica)."""

    def root(self, size: int | None = None) -> bytes: ...


def first_divergence(a: RootSource, b: RootSource, size: int, known_equal: int = 0) -> int | None:
    """First leaf index below `size` where two logs differ, by binary search on prefix roots.

    Prefix roots agree exactly while the prefixes agree (collision resistance), so O(log n) root
    queries locate a fork without shipping leaves. `known_equal` is a size already agreed on.
    """
    if a.root(size) == b.root(size):
        return None
    lo, hi = known_equal, size  # roots agree at lo, differ at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a.root(mid) == b.root(mid):
            lo = mid
        else:
            hi = mid
    return hi - 1


class MerkleTree:
    """Append-only RFC 6962 tree that stores every complete subtree hash, level by level.

    Level L holds the hashes of the `size >> L` complete subtrees of 2**L leaves, contiguous
    in one bytearray. Any range hash is then a lookup or, on the right edge, O(log n) hashes.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append_leaf_hashes(self, hashes: bytes | Sequence[bytes]) -> None:
        """Append leaf hashes (a list, or their 32-byte concatenation) and extend every level."""
        joined = hashes if isinstance(hashes, (bytes, bytearray)) else b"".join(hashes)
        if len(joined) % HASH_SIZE:
            raise ValueError(f"leaf hashes must be {HASH_SIZE} bytes each, got {len(joined)} bytes")
        levels = self._levels
        levels[0] += joined
        level = 0
        while len(levels[level]) >= 2 * HASH_SIZE:
            if level + 1 == len(levels):
                levels.append(bytearray())
            src, dst = levels[level], levels[level + 1]
            have, want = len(dst) // HASH_SIZE, len(src) // (2 * HASH_SIZE)
            if have == want:
                break
            step = 2 * HASH_SIZE
            dst += b"".join([sha256(b"\x01" + src[j:j + step]).digest()
                             for j in range(have * step, want * step, step)])
            level += 1

    def truncate(self, size: int) -> None:
        """Forget leaves from `size` on (used only to drop a damaged or unwritten block)."""
        if not 0 <= size <= self.size:
            raise ValueError(f"cannot truncate a tree of {self.size} leaves to {size}")
        for level, hashes in enumerate(self._levels):
            del hashes[(size >> level) * HASH_SIZE:]

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is outside a tree of size {self.size}")
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _subtree(self, start: int, end: int) -> bytes:
        """Hash of leaves [start, end): a stored node when complete, else split at RFC 6962's k."""
        n = end - start
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            i = (start >> level) * HASH_SIZE
            return bytes(self._levels[level][i:i + HASH_SIZE])
        k = split_point(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"no root for size {size}: the tree has {self.size} leaves")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        _check_index(index, size, self.size)
        return _inclusion_path(index, size, self._subtree)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.size if new_size is None else new_size
        _check_sizes_for_consistency(old_size, new_size, self.size)
        if old_size in (0, new_size):
            return []
        return _consistency_path(old_size, new_size, self._subtree)
