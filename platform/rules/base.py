"""What every rule kind shares: its file entry, its context, and the verdicts it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pydantic

from cangtwin.platform.config_file import StrictModel
from cangtwin.platform.registry.fingerprint import Quantum

Category = Literal["physical", "ownership", "value", "integrity"]
Severity = Literal["info", "warning", "major", "critical"]
# T/NIFA 10-2025 sections; only the table of contents is public, so each mapping is ours.
Section = Literal[
    "4.4 质物监管",
    "4.5 出入库监管",
    "4.6 质押变更与解除",
    "4.7 质物价值重估",
    "5 数字化能力要求",
    "6 风险控制",
]


class FingerprintTolerance(StrictModel):
    """How closely two goods fingerprints must agree; shared by the ownership rules."""

    # Relative tolerance of the weight signature: two legal weighings of the same goods must fit.
    mass_rel_tol: float = pydantic.Field(default=0.005, gt=0, le=0.1)
    dim_tol_m: float = pydantic.Field(default=0.05, gt=0, le=1.0)
    weight_min_lots: int = pydantic.Field(default=3, ge=1, le=10000)

    def quantum(self) -> Quantum:
        return Quantum(self.mass_rel_tol, self.dim_tol_m)


class RuleEntry(StrictModel):
    """Fields common to every rule in a rule file; each kind adds its own `params`."""

    id: str
    category: Category
    severity: Severity
    section: Section
    section_mapping: Literal["ours"] = "ours"
    enabled: bool = True


@dataclass(frozen=True)
class Finding:
    """A rule's verdict before the engine stamps identity, rule metadata and times on it."""

    targets: tuple[str, ...]
    event_time: float
    observed_at: float
    summary: str
    dedupe_key: str
    detail: dict[str, Any] = field(default_factory=dict)


class BookView:
    """The edge's copy of the collateral book, kept current by `BookSync` commands."""

    def __init__(self) -> None:
        self.version = -1
        self.pledged: dict[str, str] = {}
        self.released: set[str] = set()
        self.lot_by_tag: dict[str, str] = {}
        self.bay_by_lot: dict[str, str] = {}
        self.volume_by_lot: dict[str, float] = {}
        self.mass_by_lot: dict[str, float] = {}


class Rule:
    """One rule kind.

    `where` says which side runs it: the edge (autonomous while offline, sees device traffic)
    or the cloud (sees every warehouse, the registry and prices). A rule reacts to the event
    types in `consumes`; a rule that watches for silence (a missing heartbeat, a stale price)
    also sets `tick_s` and gets `on_time` calls. The context is the side's read-only view:
    at the edge an `EdgeContext`, at the cloud the cloud service's `CloudContext`.
    """

    kind: ClassVar[str]
    where: ClassVar[Literal["edge", "cloud"]] = "edge"
    consumes: ClassVar[tuple[type, ...]] = ()
    tick_s: ClassVar[float | None] = None

    def __init__(self, entry: RuleEntry) -> None:
        self.entry = entry
        self.params = entry.params  # type: ignore[attr-defined]

    def evaluate(self, event: Any, ctx: Any) -> list[Finding]:
        return []

    def on_time(self, now: float, ctx: Any) -> list[Finding]:
        return []
