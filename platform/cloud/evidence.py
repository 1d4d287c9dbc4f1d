"""What the cloud writes into the evidence ledger (联盟链), and evidence packages per alert.

Entries are canonical JSON records: the rule set when it takes effect, every gate event, and
every alert when the cloud first holds it. An alert's evidence is its own entry plus the entries
of the events it cites, each proven against signed tree heads, so a bank can check it offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.clock import Clock
from cangtwin.platform.ledger.log import AuditReport, EvidenceLog, audit_log
from cangtwin.platform.ledger.package import build_package
from cangtwin.platform.ledger.pipeline import EvidencePipeline, PipelineConfig, Receipt
from cangtwin.platform.ledger.tree_head import HeadVerifier, SignedTreeHead, public_key_bytes
from cangtwin.platform.records import Alert, EvidenceClip, GateEvent
from cangtwin.platform.rules.ruleset import RuleSet

_encoder = msgspec.json.Encoder(order="sorted")
REQUIRED_SIGNATURES = 3  # of the four parties: bank, warehouse, platform, regulator


class EvidenceRecorder:
    def __init__(self, clock: Clock, path: Path, parties: Mapping[str, Ed25519PrivateKey],
                 config: PipelineConfig | None = None) -> None:
        self.log = EvidenceLog.open(path, create=True)
        self.parties = dict(parties)
        self.pipeline = EvidencePipeline(clock, self.log, self.parties, config)
        self.index: dict[str, int] = {}  # record key → ledger index, once integrated
        self.clips: dict[str, list[str]] = {}  # alert id → its evidence clips' record keys
        self.receipts: list[Receipt] = []

    def _submit(self, key: str, record: dict) -> None:
        def integrated(receipt: Receipt) -> None:
            self.index[key] = receipt.index
            self.receipts.append(receipt)

        self.pipeline.submit(_encoder.encode(record), integrated)

    def ruleset_activated(self, ruleset: RuleSet, at: float) -> None:
        """A rule set's hash goes into the ledger when it takes effect."""
        self._submit(f"ruleset:{ruleset.sha256}", {"type": "ruleset", "name": ruleset.name,
                     "version": ruleset.version, "sha256": ruleset.sha256, "effective_at": at})

    def gate_event(self, event: GateEvent) -> None:
        self._submit(f"gate:{event.id}", msgspec.to_builtins(event))  # tagged: "type": "gate"

    def clip(self, clip: EvidenceClip) -> None:
        key = f"clip:{clip.alert}:{clip.device}"
        self.clips.setdefault(clip.alert, []).append(key)
        self._submit(key, msgspec.to_builtins(clip))

    def alert(self, alert: Alert, visible_at: float) -> None:
        self._submit(f"alert:{alert.id}", {"visible_at": visible_at, **msgspec.to_builtins(alert)})

    @property
    def heads(self) -> list[SignedTreeHead]:
        return self.pipeline.heads

    def public_keys(self) -> dict[str, bytes]:
        return public_key_bytes(self.parties)

    def package(self, alert: Alert) -> bytes | None:
        """The alert's evidence package, or None while its entry is not yet integrated."""
        keys = [f"alert:{alert.id}"]
        if "gate_event" in alert.detail:
            keys.append(f"gate:{alert.detail['gate_event']}")
        keys += [key for key in self.clips.get(alert.id, []) if key in self.index]  # clips that made it in
        if any(key not in self.index for key in keys):
            return None
        return build_package(self.log, msgspec.to_builtins(alert), [self.index[k] for k in keys],
                             self.heads, self.public_keys())

    def audit(self) -> AuditReport:
        """Check the stored log against every head the parties signed (an edit at rest shows here)."""
        return audit_log(self.log.path, self.heads, verifier=HeadVerifier(self.public_keys(), REQUIRED_SIGNATURES))

    def close(self) -> None:
        self.log.close()
