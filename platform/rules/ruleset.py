"""Versioned rule files: load strictly, hash for the ledger, and instantiate the rule kinds.

Adding a rule kind means one module with `Entry` (its file schema) and one `Rule` subclass,
listed in `KINDS` below.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Union

import pydantic

from cangtwin.platform.config_file import StrictModel, parse_yaml, read_text
from cangtwin.platform.rules import (
    camera_tamper,
    device_offline,
    duplicate_pledge,
    edge_offline,
    environment,
    evidence_tamper,
    geofence,
    inventory_mismatch,
    ledger_audit,
    lidar_tamper,
    ltv_band,
    message_integrity,
    outbound_unauthorized,
    ownership_change,
    price_stale,
    substitution_or_hollow,
    weighbridge_anomaly,
)
from cangtwin.platform.rules.base import Rule

KINDS = {
    "outbound-unauthorized": (outbound_unauthorized.Entry, outbound_unauthorized.OutboundUnauthorized),
    "message-integrity": (message_integrity.Entry, message_integrity.MessageIntegrity),
    "ltv-band": (ltv_band.Entry, ltv_band.LtvBand),
    "price-stale": (price_stale.Entry, price_stale.PriceStale),
    "duplicate-pledge": (duplicate_pledge.Entry, duplicate_pledge.DuplicatePledge),
    "ownership-change": (ownership_change.Entry, ownership_change.OwnershipChange),
    "device-offline": (device_offline.Entry, device_offline.DeviceOffline),
    "edge-offline": (edge_offline.Entry, edge_offline.EdgeOffline),
    "environment": (environment.Entry, environment.Environment),
    "geofence": (geofence.Entry, geofence.Geofence),
    "weighbridge-anomaly": (weighbridge_anomaly.Entry, weighbridge_anomaly.WeighbridgeAnomaly),
    "evidence-tamper": (evidence_tamper.Entry, evidence_tamper.EvidenceTamper),
    "ledger-audit": (ledger_audit.Entry, ledger_audit.LedgerAudit),
    "substitution-or-hollow": (substitution_or_hollow.Entry, substitution_or_hollow.SubstitutionOrHollow),
    "camera-tamper": (camera_tamper.Entry, camera_tamper.CameraTamper),
    "inventory-mismatch": (inventory_mismatch.Entry, inventory_mismatch.InventoryMismatch),
    "lidar-tamper": (lidar_tamper.Entry, lidar_tamper.LidarTamper),
}

AnyEntry = Annotated[
    Union[tuple(entry for entry, _ in KINDS.values())],  # type: ignore[misc]
    pydantic.Field(discriminator="kind"),
]


class RuleSetFile(StrictModel):
    ruleset: str
    version: int = pydantic.Field(ge=1)
    rules: list[AnyEntry]

    @pydantic.field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list) -> list:
        ids = [r.id for r in rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule id(s): {', '.join(dupes)}")
        return rules


@dataclass(frozen=True)
class RuleSet:
    """A loaded rule file; `label` (name@version#hash) is what alerts and the ledger cite."""

    name: str
    version: int
    sha256: str
    source: str
    entries: tuple
    text: str = ""  # the file as written, so the very same rules can be sent to every edge

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}#{self.sha256[:12]}"

    def instantiate(self) -> list[Rule]:
        """Fresh rule objects (rules keep windowed state, so each engine gets its own)."""
        return [KINDS[e.kind][1](e) for e in self.entries if e.enabled]


def default_ruleset_path() -> Path:
    return Path(__file__).parent / "default.yaml"


def parse_ruleset(text: str, source: str) -> RuleSet:
    """A rule set from its file's text (as it travels to the edges); InputError if it is bad."""
    parsed = parse_yaml(text, RuleSetFile, source)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return RuleSet(parsed.ruleset, parsed.version, digest, source, tuple(parsed.rules), text)


def load_ruleset(path: str | Path | None = None) -> RuleSet:
    """Load a rule file; raises InputError (file, line, field) and changes nothing on failure."""
    path = Path(path) if path else default_ruleset_path()
    return parse_ruleset(read_text(path), str(path))
