"""Who may call the API: bearer tokens, stored only as SHA-256 hashes, each naming a principal.

A principal is a bank (sees and acts on its own pledges and alerts only), the platform operator
(sees and acts on everything, reads the audit log) or a regulator (reads everything, changes
nothing). Tokens are random 256-bit secrets, so a plain SHA-256 is enough to store them (no
password hashing needed); a presented token is hashed and compared against every stored hash
with `hmac.compare_digest`, without stopping at the first match.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import pydantic

from cangtwin.platform.config_file import StrictModel, load_yaml

Role = Literal["bank", "operator", "regulator"]
TOKEN_PREFIX = "ctw_"


def new_token() -> str:
    """A fresh bearer token (256 bits from the OS's CSPRNG)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The form a token is stored in: lowercase hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    bank: str | None = None  # set for (and only for) role "bank"

    @property
    def sees_all(self) -> bool:
        return self.role != "bank"

    @property
    def may_write(self) -> bool:
        return self.role != "regulator"

    def may_see(self, banks: frozenset[str] | set[str]) -> bool:
        """Whether a resource that concerns `banks` is visible to this principal."""
        return self.sees_all or self.bank in banks


class TokenEntry(StrictModel):
    name: str = pydantic.Field(min_length=1, max_length=100)
    role: Role
    bank: str | None = pydantic.Field(default=None, min_length=1)
    sha256: str = pydantic.Field(pattern=r"^[0-9a-f]{64}$")
    expires: Annotated[datetime, pydantic.Strict(False)] | None = None

    @pydantic.model_validator(mode="after")
    def _bank_iff_bank_role(self) -> TokenEntry:
        if self.role == "bank" and self.bank is None:
            raise ValueError("a token with role 'bank' must name its bank")
        if self.role != "bank" and self.bank is not None:
            raise ValueError(f"a token with role {self.role!r} sees every bank; remove 'bank'")
        if self.expires is not None and self.expires.tzinfo is None:
            raise ValueError("'expires' needs a time zone, e.g. 2026-12-31T00:00:00Z")
        return self


class AccessFile(StrictModel):
    tokens: list[TokenEntry] = pydantic.Field(min_length=1)

    @pydantic.field_validator("tokens")
    @classmethod
    def _unique(cls, tokens: list[TokenEntry]) -> list[TokenEntry]:
        for attr in ("name", "sha256"):
            values = [getattr(t, attr) for t in tokens]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate token {attr}: {', '.join(d[:16] for d in dupes)}")
        return tokens


class AuthError(Exception):
    """A request without a usable token; the message says why, never which tokens exist."""


class TokenRegistry:
    """Token hash → principal, with optional expiry per token."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries = [(bytes.fromhex(e.sha256), e) for e in entries]

    @classmethod
    def from_file(cls, path: str | Path) -> TokenRegistry:
        """Load an access file; a bad file is an InputError naming file, line and field."""
        return cls(load_yaml(path, AccessFile).tokens)

    @classmethod
    def from_mapping(cls, tokens: dict[str, Principal]) -> TokenRegistry:
        """From plain tokens (tests, embedded use); only their hashes are kept."""
        return cls([TokenEntry(name=p.name, role=p.role, bank=p.bank, sha256=hash_token(t))
                    for t, p in tokens.items()])

    def authenticate(self, token: str, now: datetime | None = None) -> Principal:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: TokenEntry | None = None
        for stored, entry in self._entries:  # no early exit: time does not depend on the match
            if hmac.compare_digest(stored, digest):
                found = entry
        if found is None:
            raise AuthError("unknown token")
        if found.expires is not None and (now or datetime.now(UTC)) >= found.expires:
            raise AuthError("token expired")
        return Principal(found.name, found.role, found.bank)
