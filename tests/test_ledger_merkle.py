"""RFC 6962 hashing and proofs: the published vectors, a naive reference, and tamper properties."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.platform.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    first_divergence,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency / transparency-dev RFC 6962 vectors (merkle testonly/constants.go and
# proof/verify_test.go), used as data.
LEAVES = [bytes.fromhex(h) for h in [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [bytes.fromhex(h) for h in [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]]
H = {name: bytes.fromhex(h) for name, h in {
    "96a2": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f08": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    "bc1a": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca85": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37e": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "fac5": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "6e34": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "0ebc": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "b086": "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
}.items()}
# (index, size, proof), with 0-based indices.
INCLUSION_VECTORS = [
    (0, 8, ["96a2", "5f08", "6b47"]),
    (5, 8, ["bc1a", "ca85", "d37e"]),
    (2, 3, ["fac5"]),
    (1, 5, ["6e34", "5f08", "bc1a"]),
]
CONSISTENCY_VECTORS = [
    (1, 8, ["96a2", "5f08", "6b47"]),
    (6, 8, ["0ebc", "ca85", "d37e"]),
    (2, 5, ["5f08", "bc1a"]),
    (6, 7, ["0ebc", "b086", "d37e"]),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# A literal transcription of RFC 6962 §2.1, independent of the module's iterative code.
def naive_mth(d: list[bytes]) -> bytes:
    if not d:
        return sha256(b"").digest()
    if len(d) == 1:
        return sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return naive_path(m, d[:k]) + [naive_mth(d[k:])]
    return naive_path(m - k, d[k:]) + [naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return naive_subproof(m, d[:k], b) + [naive_mth(d[k:])]
    return naive_subproof(m - k, d[k:], False) + [naive_mth(d[:k])]


def tree_of(entries: list[bytes], chunks: list[int] | None = None) -> MerkleTree:
    tree = MerkleTree()
    hashes = leaf_hashes(entries)
    pos = 0
    for n in chunks or [len(hashes)]:
        tree.append_leaf_hashes(hashes[pos:pos + n])
        pos += n
    tree.append_leaf_hashes(hashes[pos:])
    return tree


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def test_hash_prefixes_match_rfc6962():
    assert leaf_hash(b"") == ROOTS[1]
    assert ROOTS[0] == EMPTY_ROOT
    assert node_hash(leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])) == ROOTS[2]


def test_roots_match_the_published_vectors_for_every_size():
    hashes = leaf_hashes(LEAVES)
    tree = tree_of(LEAVES, chunks=[3, 1, 2])
    for size in range(9):
        assert root_from_leaf_hashes(hashes[:size]) == ROOTS[size]
        assert tree.root(size) == ROOTS[size]


@pytest.mark.parametrize("index,size,names", INCLUSION_VECTORS)
def test_inclusion_vectors(index, size, names):
    hashes = leaf_hashes(LEAVES)
    expected = [H[n] for n in names]
    assert inclusion_proof(index, size, hashes) == expected
    assert tree_of(LEAVES).inclusion_proof(index, size) == expected
    assert verify_inclusion(hashes[index], index, size, expected, ROOTS[size])


@pytest.mark.parametrize("old,new,names", CONSISTENCY_VECTORS)
def test_consistency_vectors(old, new, names):
    hashes = leaf_hashes(LEAVES)
    expected = [H[n] for n in names]
    assert consistency_proof(old, new, hashes) == expected
    assert tree_of(LEAVES).consistency_proof(old, new) == expected
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)


@pytest.mark.parametrize("index,size,names", INCLUSION_VECTORS)
def test_inclusion_vectors_reject_the_transparency_dev_corruptions(index, size, names):
    proof = [H[n] for n in names]
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size]
    probes = [
        (index - 1, size, leaf, proof, root), (index + 1, size, leaf, proof, root),
        (index ^ 2, size, leaf, proof, root), (index, size * 2, leaf, proof, root),
        (index, size // 2, leaf, proof, root), (index, size, b"WrongLeaf", proof, root),
        (index, size, leaf, proof, EMPTY_ROOT), (index, size, leaf, proof, SOME_HASH),
        (index, size, leaf, proof + [b""], root), (index, size, leaf, proof + [root], root),
        (index, size, leaf, [b""] + proof, root), (index, size, leaf, [root] + proof, root),
        (index, size, leaf, proof[:-1], root),
        (index, size, leaf, [proof[0], SOME_HASH] + proof[1:], root),
    ]
    probes += [(index, size, leaf, proof[:i] + [flip(proof[i], 3)] + proof[i + 1:], root)
               for i in range(len(proof))]
    for i, n, leaf_h, p, r in probes:
        assert not verify_inclusion(leaf_h, i, n, p, r), (i, n)


@pytest.mark.parametrize("old,new,names", CONSISTENCY_VECTORS)
def test_consistency_vectors_reject_the_transparency_dev_corruptions(old, new, names):
    proof = [H[n] for n in names]
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof), (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof), (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof), (old, new, r2, r1, proof), (old, new, r1, r2, []),
        (old, new, r1, r2, proof + [b""]), (old, new, r1, r2, proof + [r1]),
        (old, new, r1, r2, proof + [r2]), (old, new, r1, r2, [b""] + proof),
        (old, new, r1, r2, [r1] + proof), (old, new, r1, r2, [r2] + proof),
        (old, new, r1, r2, [proof[0]] + proof), (old, new, r1, r2, proof[:-1]),
    ]
    probes += [(old, new, r1, r2, proof[:i] + [flip(proof[i], 4)] + proof[i + 1:])
               for i in range(len(proof))]
    for o, n, a, b, p in probes:
        assert not verify_consistency(o, n, a, b, p), (o, n)


def test_degenerate_consistency_cases():
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    assert verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[3], [EMPTY_ROOT])
    assert not verify_consistency(4, 3, ROOTS[4], ROOTS[3], [])


def test_proof_requests_out_of_range_are_refused_with_a_clear_error():
    tree = tree_of(LEAVES)
    with pytest.raises(ValueError, match="index"):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ValueError, match="old_size"):
        tree.consistency_proof(5, 9)
    with pytest.raises(ValueError, match="size 9"):
        tree.root(9)
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append_leaf_hashes(b"short")


entries_st = st.lists(st.binary(max_size=12), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(entries=entries_st, chunks=st.lists(st.integers(0, 9), max_size=8))
def test_incremental_tree_matches_the_naive_rfc_definitions(entries, chunks):
    tree = tree_of(entries, chunks)
    hashes = leaf_hashes(entries)
    for size in range(len(entries) + 1):
        assert tree.root(size) == naive_mth(entries[:size]) == root_from_leaf_hashes(hashes[:size])
        for index in range(size):
            assert tree.inclusion_proof(index, size) == naive_path(index, entries[:size])
        if 0 < size < len(entries):
            assert tree.consistency_proof(size) == naive_subproof(size, entries, True)


@settings(max_examples=60, deadline=None)
@given(entries=entries_st, data=st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_bit_fails(entries, data):
    tree = tree_of(entries)
    size = data.draw(st.integers(1, len(entries)))
    index = data.draw(st.integers(0, size - 1))
    proof, root, leaf = tree.inclusion_proof(index, size), tree.root(size), tree.leaf_hash(index)
    assert verify_inclusion(leaf, index, size, proof, root)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(flip(leaf, bit), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, flip(root, bit))
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = proof[:i] + [flip(proof[i], bit)] + proof[i + 1:]
        assert not verify_inclusion(leaf, index, size, bad, root)
    other = data.draw(st.integers(0, size - 1))
    if other != index and tree.leaf_hash(other) != leaf:
        assert not verify_inclusion(leaf, other, size, proof, root)


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.binary(max_size=8), min_size=2, max_size=40), data=st.data())
def test_every_consistency_proof_verifies_and_any_flipped_bit_fails(entries, data):
    tree = tree_of(entries)
    new = data.draw(st.integers(2, len(entries)))
    old = data.draw(st.integers(1, new - 1))
    proof, r1, r2 = tree.consistency_proof(old, new), tree.root(old), tree.root(new)
    assert verify_consistency(old, new, r1, r2, proof)
    bit = data.draw(st.integers(0, 255))
    assert not verify_consistency(old, new, flip(r1, bit), r2, proof)
    assert not verify_consistency(old, new, r1, flip(r2, bit), proof)
    i = data.draw(st.integers(0, len(proof) - 1))
    bad = proof[:i] + [flip(proof[i], bit)] + proof[i + 1:]
    assert not verify_consistency(old, new, r1, r2, bad)


@settings(max_examples=40, deadline=None)
@given(entries=entries_st, data=st.data())
def test_truncate_equals_a_tree_built_from_the_prefix(entries, data):
    size = data.draw(st.integers(0, len(entries)))
    tree = tree_of(entries)
    tree.truncate(size)
    rebuilt = tree_of(entries[:size])
    assert tree.size == size and tree.root() == rebuilt.root()
    tree.append_leaf_hashes(leaf_hashes(entries[size:]))
    assert tree.root() == tree_of(entries).root()


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.binary(max_size=6), min_size=1, max_size=60), data=st.data())
def test_first_divergence_finds_the_first_differing_leaf(entries, data):
    fork_at = data.draw(st.integers(0, len(entries) - 1))
    forked = entries[:fork_at] + [entries[fork_at] + b"!"] + entries[fork_at + 1:]
    a, b = tree_of(entries), tree_of(forked)
    assert first_divergence(a, b, len(entries)) == fork_at
    assert first_divergence(a, a, len(entries)) is None
    assert first_divergence(a, b, fork_at) is None
