"""Evidence packages: everything a bank or court needs to check an alert's evidence offline.

A package holds the alert, its ledger entries with inclusion proofs, the signed tree heads they
are proven against with consistency proofs chaining those heads, and the parties' public keys.
`verify_package` trusts nothing in it: it re-hashes, re-verifies every proof and signature, and
says which check failed. Pass `trusted_keys` to pin the parties' keys; without it, the keys in
the package are used and the report says they were not pinned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import msgspec

from cangtwin.platform.ledger.log import EvidenceLog
from cangtwin.platform.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from cangtwin.platform.ledger.tree_head import HeadVerifier, QuorumError, SignedTreeHead

FORMAT = "cangtwin-evidence-package/v1"


class PackageEntry(msgspec.Struct, frozen=True):
    """One ledger entry and its inclusion proof in the tree head of size `tree_size`."""

    index: int
    data: bytes
    tree_size: int
    inclusion: list[bytes]


class ConsistencyLink(msgspec.Struct, frozen=True):
    """Proof that the tree of `old_size` is a prefix of the tree of `new_size`."""

    old_size: int
    new_size: int
    proof: list[bytes]


class EvidencePackage(msgspec.Struct, frozen=True):
    format: str
    alert: dict[str, Any]
    entries: list[PackageEntry]
    heads: list[SignedTreeHead]  # ascending size
    consistency: list[ConsistencyLink]  # one per pair of consecutive heads
    public_keys: dict[str, bytes]


class Check(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    detail: str = ""


class VerificationReport(msgspec.Struct, frozen=True):
    checks: list[Check]
    keys_pinned: bool

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


class PackageError(ValueError):
    """A package cannot be built from what was given."""


def build_package(log: EvidenceLog, alert: Mapping[str, Any], indices: Iterable[int],
                  heads: Sequence[SignedTreeHead], public_keys: Mapping[str, bytes]) -> bytes:
    """Encode an evidence package for `alert` over log entries `indices`.

    Each entry is proven against the first given head that includes it (dating its
    integration); the latest head is always included, and consistent heads chain to it.
    """
    wanted = sorted(set(indices))
    by_size = {h.head.size: h for h in heads}
    if not by_size:
        raise PackageError("no signed tree heads to prove entries against")
    sizes = sorted(by_size)
    if sizes[-1] > log.size:
        raise PackageError(f"a head at size {sizes[-1]} is beyond the log's {log.size} entries")
    chosen = {sizes[-1]}
    entries = []
    for index in wanted:
        size = next((s for s in sizes if s > index), None)
        if size is None:
            raise PackageError(f"entry {index} is not covered by any signed tree head "
                               f"(latest size {sizes[-1]})")
        chosen.add(size)
        entries.append(PackageEntry(index, log.entry(index), size,
                                    log.inclusion_proof(index, size)))
    ordered = sorted(chosen)
    links = [ConsistencyLink(a, b, log.consistency_proof(a, b))
             for a, b in pairwise(ordered)]
    package = EvidencePackage(FORMAT, dict(alert), entries, [by_size[s] for s in ordered], links,
                              dict(public_keys))
    return msgspec.json.encode(package)


def _check_keys(package: EvidencePackage,
                trusted_keys: Mapping[str, bytes] | None) -> tuple[Check, dict[str, bytes]]:
    if trusted_keys is None:
        return (Check("keys", True, "keys taken from the package itself (not pinned)"),
                dict(package.public_keys))
    differing = sorted(name for name, key in package.public_keys.items()
                       if trusted_keys.get(name) != key)
    if differing:
        return (Check("keys", False, f"package keys differ from trusted keys for: "
                      f"{', '.join(differing)}"), dict(trusted_keys))
    return Check("keys", True, "package keys match the trusted keys"), dict(trusted_keys)


def _check_heads(package: EvidencePackage, verifier: HeadVerifier) -> list[Check]:
    checks = []
    sizes = [h.head.size for h in package.heads]
    if not sizes:
        checks.append(Check("heads", False, "the package has no signed tree heads"))
    elif sizes != sorted(set(sizes)):
        checks.append(Check("heads", False, f"head sizes {sizes} are not strictly ascending "
                            "(two heads of one size may be a fork)"))
    for sth in package.heads:
        try:
            valid = verifier.verify(sth)
            checks.append(Check(f"signatures@{sth.head.size}", True,
                                f"valid: {', '.join(valid)}"))
        except (QuorumError, ValueError) as exc:
            checks.append(Check(f"signatures@{sth.head.size}", False, str(exc)))
    return checks


def _check_consistency(package: EvidencePackage) -> list[Check]:
    heads = {h.head.size: h.head for h in package.heads}
    links = {(link.old_size, link.new_size): link for link in package.consistency}
    ordered = sorted(heads)
    checks = []
    for a, b in pairwise(ordered):
        name = f"consistency {a}->{b}"
        link = links.get((a, b))
        if link is None:
            checks.append(Check(name, False, "no consistency proof between these heads"))
        elif not verify_consistency(a, b, heads[a].root, heads[b].root, link.proof):
            checks.append(Check(name, False, "proof does not verify: the heads are not "
                                "one append-only history"))
        else:
            checks.append(Check(name, True))
    return checks


def _check_entries(package: EvidencePackage) -> list[Check]:
    if not package.entries:
        return [Check("entries", False, "the package proves no entries")]
    heads = {h.head.size: h.head for h in package.heads}
    checks = []
    for entry in package.entries:
        name = f"inclusion #{entry.index}@{entry.tree_size}"
        head = heads.get(entry.tree_size)
        if head is None:
            checks.append(Check(name, False, f"no signed head of size {entry.tree_size}"))
        elif not verify_inclusion(leaf_hash(entry.data), entry.index, entry.tree_size,
                                  entry.inclusion, head.root):
            checks.append(Check(name, False, "entry or proof does not match the signed root"))
        else:
            checks.append(Check(name, True))
    return checks


def _check_alert(package: EvidencePackage) -> Check:
    """The package's readable copy of the alert must be the one its proven entry holds, or an
    edited copy would ride along with valid proofs."""
    for entry in package.entries:
        try:
            proven = msgspec.json.decode(entry.data)
        except msgspec.DecodeError:
            continue
        if isinstance(proven, dict) and proven.get("type") == "alert" and proven.get("id") == package.alert.get("id"):
            proven.pop("visible_at", None)
            same = proven == package.alert
            return Check("alert", same, "" if same else "the alert copy differs from its proven ledger entry")
    return Check("alert", False, f"no proven entry holds alert {package.alert.get('id')!r}")


def verify_package(package_bytes: bytes, required_signatures: int, *,
                   trusted_keys: Mapping[str, bytes] | None = None) -> VerificationReport:
    """Check a package offline: keys, head signatures (N of M), consistency, inclusion."""
    try:
        package = msgspec.json.decode(package_bytes, type=EvidencePackage)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return VerificationReport([Check("decode", False, str(exc))], trusted_keys is not None)
    checks = [Check("decode", True)]
    checks.append(Check("format", package.format == FORMAT,
                        "" if package.format == FORMAT else f"unknown format {package.format!r}"))
    key_check, keys = _check_keys(package, trusted_keys)
    checks.append(key_check)
    try:
        verifier = HeadVerifier(keys, required_signatures)
    except ValueError as exc:
        return VerificationReport([*checks, Check("quorum", False, str(exc))],
                                  trusted_keys is not None)
    checks += _check_heads(package, verifier)
    checks += _check_consistency(package)
    checks += _check_entries(package)
    checks.append(_check_alert(package))
    return VerificationReport(checks, trusted_keys is not None)
