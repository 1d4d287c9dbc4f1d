"""Offline verification of what a bank receives: an evidence package, or a whole ledger log.

Reads files, checks them with the ledger's own functions, and returns rows for a report. Bad
files are `VerifyInputError`s naming the file; a file that decodes but fails a check is a
verification result, not an error.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from cangtwin.platform.ledger.log import audit_log
from cangtwin.platform.ledger.package import verify_package
from cangtwin.platform.ledger.tree_head import HeadVerifier, SignedTreeHead

Row = tuple[str, bool, str]


class VerifyInputError(Exception):
    """A file that cannot be read or is not what it claims to be."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VerifyInputError(f"{path}: file not found") from None
    except OSError as exc:
        raise VerifyInputError(f"{path}: cannot read: {exc}") from None


def _decode(path: Path, data: bytes, kind: type):
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise VerifyInputError(f"{path}: not a valid {kind!s}: {exc}") from None


def verify_path(path: Path, keys: Path | None, heads: Path | None, quorum: int) -> tuple[str, list[Row], bool]:
    trusted = _decode(keys, _read(keys), dict[str, bytes]) if keys else None
    if path.suffix == ".json":
        report = verify_package(_read(path), quorum, trusted_keys=trusted)
        rows = [(c.name, c.ok, c.detail) for c in report.checks]
        if trusted is None:
            rows.append(("keys pinned", False, "pass --keys with the parties' keys you trust; a producer can sign its own history"))
        return f"evidence package {path}", rows, report.ok and trusted is not None
    heads_path = heads or path.with_name("ledger-heads.json")
    published = _decode(heads_path, _read(heads_path), list[SignedTreeHead])
    keys_path = keys or path.with_name("parties.json")
    party_keys = trusted if trusted is not None else _decode(keys_path, _read(keys_path), dict[str, bytes])
    _read(path)
    try:
        report = audit_log(path, published, verifier=HeadVerifier(party_keys, quorum))
    except ValueError as exc:
        raise VerifyInputError(f"{path}: {exc}") from None
    rows = [("entries intact", report.size > 0 or not published, f"{report.size} entries verified in the file"),
            ("attested by heads", report.attested_size == max((h.head.size for h in published), default=0),
             f"matches published heads up to size {report.attested_size}")]
    rows += [(f.kind, False, f.detail + (f" (first bad entry {f.first_index})" if f.first_index is not None else ""))
             for f in report.findings]
    return f"ledger {path}", rows, report.ok
