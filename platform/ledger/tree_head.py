"""Tree heads signed by the alliance's parties, and N-of-M quorum checks over them.

Each party (bank, warehouse, platform, regulator) holds an Ed25519 key and signs a canonical
byte encoding of a tree head. A head is trusted once `required` distinct parties signed it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cangtwin.platform.ledger.merkle import HASH_SIZE

PARTIES = ("bank", "warehouse", "platform", "regulator")

# Domain separation: a signature over a tree head can never be replayed as one over other data.
_SIGNING_CONTEXT = b"cangtwin/ledger/tree-head/v1\x00"
_HEAD_LAYOUT = struct.Struct(">Q32sd")


class TreeHead(msgspec.Struct, frozen=True):
    """The state of the log after `size` entries: its RFC 6962 root and when it was cut."""

    size: int
    root: bytes
    timestamp: float


class SignedTreeHead(msgspec.Struct, frozen=True):
    """A tree head with Ed25519 signatures keyed by party name."""

    head: TreeHead
    signatures: dict[str, bytes]


class QuorumError(Exception):
    """Fewer than the required parties signed a tree head validly."""

    def __init__(self, message: str, valid: list[str], invalid: dict[str, str]) -> None:
        super().__init__(message)
        self.valid = valid
        self.invalid = invalid


def signing_bytes(head: TreeHead) -> bytes:
    """The bytes parties sign: context || u64 size || root || f64 timestamp, big-endian."""
    if len(head.root) != HASH_SIZE:
        raise ValueError(f"tree head root must be {HASH_SIZE} bytes, got {len(head.root)}")
    if not 0 <= head.size < 1 << 64:
        raise ValueError(f"tree head size {head.size} is out of range")
    return _SIGNING_CONTEXT + _HEAD_LAYOUT.pack(head.size, head.root, head.timestamp)


def generate_party_keys(parties: tuple[str, ...] = PARTIES) -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in parties}


def public_key_bytes(keys: Mapping[str, Ed25519PrivateKey]) -> dict[str, bytes]:
    """Raw 32-byte public keys by party, the form shipped in evidence packages."""
    return {name: key.public_key().public_bytes_raw() for name, key in keys.items()}


def sign_tree_head(head: TreeHead, keys: Mapping[str, Ed25519PrivateKey]) -> SignedTreeHead:
    message = signing_bytes(head)
    return SignedTreeHead(head, {name: key.sign(message) for name, key in keys.items()})


def add_signatures(sth: SignedTreeHead, keys: Mapping[str, Ed25519PrivateKey]) -> SignedTreeHead:
    """Co-sign: parties that check the head later add their signatures to it."""
    message = signing_bytes(sth.head)
    return SignedTreeHead(sth.head, {**sth.signatures,
                                     **{name: key.sign(message) for name, key in keys.items()}})


def check_signatures(sth: SignedTreeHead,
                     public_keys: Mapping[str, bytes]) -> tuple[list[str], dict[str, str]]:
    """Which parties signed validly, and why each other signature was rejected."""
    try:
        message = signing_bytes(sth.head)
    except (ValueError, struct.error) as exc:
        return [], {name: f"malformed tree head: {exc}" for name in sth.signatures}
    valid: list[str] = []
    invalid: dict[str, str] = {}
    for name, signature in sorted(sth.signatures.items()):
        raw = public_keys.get(name)
        if raw is None:
            invalid[name] = "not a known party"
            continue
        try:
            public_key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            invalid[name] = "malformed public key"
            continue
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            invalid[name] = "bad signature"
            continue
        valid.append(name)
    return valid, invalid


def verify_quorum(sth: SignedTreeHead, public_keys: Mapping[str, bytes],
                  required: int) -> list[str]:
    """Parties that signed `sth` validly; raises QuorumError when fewer than `required` did."""
    if required < 1:
        raise ValueError("a quorum needs at least one signature")
    valid, invalid = check_signatures(sth, public_keys)
    if len(valid) < required:
        why = ", ".join(f"{name}: {reason}" for name, reason in invalid.items()) or "none signed"
        raise QuorumError(f"tree head at size {sth.head.size} has {len(valid)} valid signatures "
                          f"of {required} required ({why})", valid, invalid)
    return valid


class HeadVerifier:
    """Verifies signed tree heads once and remembers them, so proofs against a known head
    cost only hashing (Ed25519 verification runs at ~10k/s here, proofs must reach 20k/s)."""

    def __init__(self, public_keys: Mapping[str, bytes], required: int) -> None:
        if required < 1:
            raise ValueError("a quorum needs at least one signature")
        self.public_keys = dict(public_keys)
        self.required = required
        self._verified: dict[tuple[bytes, tuple[tuple[str, bytes], ...]], list[str]] = {}

    def verify(self, sth: SignedTreeHead) -> list[str]:
        """Same contract as `verify_quorum`, cached per (head, signatures)."""
        key = (signing_bytes(sth.head), tuple(sorted(sth.signatures.items())))
        valid = self._verified.get(key)
        if valid is None:
            valid = verify_quorum(sth, self.public_keys, self.required)
            self._verified[key] = valid
        return valid
