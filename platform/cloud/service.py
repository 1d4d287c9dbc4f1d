"""The cloud aggregation service: idempotent ingest from the edges, device registry and shadows,
book, alerts.

At-least-once on the wire becomes exactly-once in effect: each (site, outbox sequence) is
applied once, and the ack is sent only after the batch is applied.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from cangtwin.platform.clock import Clock
from cangtwin.platform.cloud.alert_desk import AlertDesk
from cangtwin.platform.cloud.book import CollateralBook, Lot
from cangtwin.platform.cloud.dedupe import SeenRanges
from cangtwin.platform.cloud.device_registry import DeviceRegistry
from cangtwin.platform.cloud.evidence import EvidenceRecorder
from cangtwin.platform.processing import ServiceQueue
from cangtwin.platform.registry.registry import PledgeRegistry
from cangtwin.platform.rules.context import CloudContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.ruleset import RuleSet, parse_ruleset
from cangtwin.platform.value.feed import PriceBook, PriceTick
from cangtwin.platform.records import (
    Alert,
    BookSync,
    CaptureEvidence,
    DeviceRetired,
    EdgeHeartbeat,
    EvidenceClip,
    GateEvent,
    Observation,
    Rejection,
    RuleSetUpdate,
    Telemetry,
    UplinkAck,
    batch_decoder,
    record_decoder,
    record_encoder,
)

Tap = Callable[[str, object], None]


@dataclass
class DeviceShadow:
    """The cloud's last word on a device: when it was heard and what it said last, per kind."""

    last_seen: float = float("-inf")
    last: dict[str, float] = field(default_factory=dict)  # kind → device clock


@dataclass(frozen=True)
class CloudTiming:
    per_batch_s: float = 0.002
    per_record_s: float = 0.00002


class CloudService:
    def __init__(
        self,
        clock: Clock,
        book: CollateralBook,
        ruleset: RuleSet,
        tap: Tap,
        timing: CloudTiming = CloudTiming(),
        evidence: EvidenceRecorder | None = None,
        registry: PledgeRegistry | None = None,
        registry_poll_s: float = 0.5,
        escalate_after_s: float = 900.0,
        devices: DeviceRegistry | None = None,
    ) -> None:
        self.clock = clock
        self.ruleset = ruleset
        self.evidence = evidence
        self.book = book
        self.tap = tap
        self.desk = AlertDesk()
        self.devices = devices if devices is not None else DeviceRegistry()
        self.shadows: dict[str, DeviceShadow] = {}
        self.unregistered_reports: Counter[str] = Counter()  # device → observations from outside the registry
        self.engine = RuleEngine(ruleset, "cloud", where="cloud")
        self.prices = PriceBook()
        self.registry = registry
        self.registry_poll_s = registry_poll_s
        self.escalate_after_s = escalate_after_s
        self.context = CloudContext(
            book, self.shadows, edge_last_heard={},
            extra={"prices": self.prices, "registry": registry, "evidence": evidence},
        )
        self.queue = ServiceQueue(clock, timing.per_batch_s, timing.per_record_s)
        self._seen: dict[str, SeenRanges] = {}
        self._downlinks: dict[str, Callable[[bytes], None]] = {}
        self._edge_book_version: dict[str, int] = {}
        self.records_applied = 0
        self.duplicates = 0
        self.rejections_reported: Counter[str] = Counter()

    def start(self) -> None:
        if self.evidence:
            self.evidence.ruleset_activated(self.ruleset, self.clock.now())
        if self.engine.tick_s:
            self._tick()
        if self.registry is not None:
            self._poll_registry()
        self._escalate()

    def activate_ruleset(self, text: str, source: str) -> RuleSet:
        """Put a bank's edited rule file in force everywhere, or raise InputError and change nothing.

        Its hash goes into the ledger when it takes effect; the edges get the file itself.
        """
        ruleset = parse_ruleset(text, source)
        self.ruleset = ruleset
        self.engine = self.engine.successor(ruleset)
        if self.evidence:
            self.evidence.ruleset_activated(ruleset, self.clock.now())
        self.tap("cloud.ruleset", {"ruleset": ruleset.label})
        for site in sorted(self._downlinks):
            self._send_ruleset(site)
        return ruleset

    def _send_ruleset(self, site: str) -> None:
        self._downlinks[site](record_encoder.encode(RuleSetUpdate(site, self.ruleset.sha256, self.ruleset.text)))

    def _escalate(self) -> None:
        """Alerts nobody acknowledged within `escalate_after_s` go up the bank's chain."""
        for case in self.desk.escalate_unacknowledged(self.clock.now(), self.escalate_after_s):
            self.tap("cloud.escalated", {"alert": case.alert.id, "rule": case.alert.rule})
        self.clock.call_later(60.0, self._escalate)

    def _poll_registry(self) -> None:
        """Read what the national registry has made public since the last poll (ownership trust)."""
        for event in self.registry.events_until(self.clock.now()):
            self.tap("cloud.registry", event)
            self._run_rules(event)
        self.clock.call_later(self.registry_poll_s, self._poll_registry)

    def _tick(self) -> None:
        for alert in self.engine.tick(self.clock.now(), self.context):
            self._raise_own(alert)
        self.clock.call_later(self.engine.tick_s, self._tick)

    def _raise_own(self, alert: Alert) -> None:
        """Cloud-side rules: bank-visible as soon as they are raised."""
        now = self.clock.now()
        self._hold(alert, received_at=now, visible_at=now)

    def _hold(self, alert: Alert, received_at: float, visible_at: float) -> None:
        case = self.desk.raise_alert(alert, received_at, visible_at)
        if case is not None:
            self.tap("cloud.alert", case)
            if self.evidence:
                self.evidence.alert(alert, visible_at)


    def connect_edge(self, site: str, send_downlink: Callable[[bytes], None]) -> None:
        self._downlinks[site] = send_downlink
        self._seen.setdefault(site, SeenRanges())
        # An edge that never speaks must still be noticed: count its silence from now.
        self.context.edge_last_heard.setdefault(site, self.clock.now())
        self.sync_edge(site)

    def sync_edge(self, site: str) -> None:
        """Send the edge its slice of the book (pledges, releases, tags), and the devices retired
        there again, for an edge that missed the command in an outage."""
        lots = {lot.id: lot for lot in self.book.lots.values() if lot.site == site}
        command = BookSync(
            site=site,
            version=self.book.version,
            pledged={lid: loan for lid, loan in sorted(self.book.pledges.items()) if lid in lots},
            released=sorted(lid for lid in self.book.released if lid in lots),
            tags={lid: lot.tag for lid, lot in sorted(lots.items())},
            bays={lid: lot.bay for lid, lot in sorted(lots.items()) if lot.bay and lot.present},
            volumes={lid: lot.volume_m3 for lid, lot in sorted(lots.items()) if lot.volume_m3 and lot.present},
            masses={lid: lot.mass_kg for lid, lot in sorted(lots.items()) if lot.mass_kg and lot.present},
        )
        self._downlinks[site](record_encoder.encode(command))
        for device in self.devices.at_site(site):
            if not device.active:
                self._downlinks[site](record_encoder.encode(DeviceRetired(site, device.record.id, device.reason)))

    def book_changed(self) -> None:
        """Push the new book to every edge (bank actions and inbound goods both change it)."""
        for site in sorted(self._downlinks):
            self.sync_edge(site)

    def on_price(self, tick: PriceTick) -> None:
        """A price source's tick (value trust): update the price book, then the value rules."""
        received_at = self.clock.now()

        def apply() -> None:
            if self.prices.update(tick, received_at=received_at):
                self._run_rules(tick)

        self.queue.submit(apply)

    def request_evidence(self, site: str, alert_id: str, window_s: float = 30.0) -> None:
        """A bank or operator asks the warehouse for evidence on an alert (取证指令)."""
        self._downlinks[site](record_encoder.encode(CaptureEvidence(site, alert_id, window_s)))

    def has_record(self, site: str, seq: int) -> bool:
        """Whether the edge's record `seq` has been committed here (for accounting and audits)."""
        return seq in self._seen.get(site, ())

    def on_uplink(self, data: bytes) -> None:
        received_at = self.clock.now()
        batch = batch_decoder.decode(data)
        self.queue.submit(lambda: self._apply(batch, received_at), items=len(batch.entries))

    def _apply(self, batch, received_at: float) -> None:
        seen = self._seen.setdefault(batch.site, SeenRanges())
        book_version = self.book.version
        for seq, raw in batch.entries:
            if not seen.add(seq):
                self.duplicates += 1
                continue
            self.records_applied += 1
            record = record_decoder.decode(raw)
            self._apply_record(batch.site, record, received_at)
            if self.engine.consumes(type(record)):
                self._run_rules(record)
        self._downlinks[batch.site](record_encoder.encode(UplinkAck(batch.site, [seq for seq, _ in batch.entries])))
        if self.book.version != book_version:
            self.book_changed()

    def _apply_record(self, site: str, record: object, received_at: float) -> None:
        now = self.clock.now()
        if isinstance(record, Telemetry):
            for observation in record.observations:
                self._shadow(observation)
        elif isinstance(record, Observation):
            self._shadow(record)
        elif isinstance(record, Alert):
            self._hold(record, received_at, visible_at=now)
        elif isinstance(record, GateEvent):
            self._apply_gate_event(site, record)
        elif isinstance(record, Rejection):
            self.rejections_reported[record.reason] += 1
        elif isinstance(record, EvidenceClip):
            self.tap("cloud.evidence-clip", record)
            if self.evidence:
                self.evidence.clip(record)
        elif isinstance(record, EdgeHeartbeat):
            self.context.edge_last_heard[site] = max(self.context.edge_last_heard.get(site, record.at), record.at)
            self._edge_book_version[site] = record.book_version
            if record.book_version < self.book.version:
                self.sync_edge(site)
            if record.ruleset and record.ruleset != self.ruleset.sha256 and self.ruleset.text:
                self._send_ruleset(site)  # an edge that missed the update (outage, restart) catches up

    def retire_device(self, device: str, reason: str) -> None:
        """Strike a device from the registry and from its edge: its frames are refused from now on."""
        entry = self.devices.retire(device, self.clock.now(), reason)
        self.tap("cloud.device-retired", {"device": device, "site": entry.site, "reason": reason})
        if entry.site in self._downlinks:
            self._downlinks[entry.site](record_encoder.encode(DeviceRetired(entry.site, device, reason)))

    def _shadow(self, observation: Observation) -> None:
        if len(self.devices) and observation.device not in self.devices:
            self.unregistered_reports[observation.device] += 1
            return
        shadow = self.shadows.setdefault(observation.device, DeviceShadow())
        shadow.last_seen = max(shadow.last_seen, observation.clock)
        shadow.last[observation.kind] = observation.clock

    def _apply_gate_event(self, site: str, event: GateEvent) -> None:
        if self.evidence:
            self.evidence.gate_event(event)
        if event.direction == "out":
            self.book.record_outbound(list(event.lots))
        else:
            # Goods arriving with tags the book has not seen become new, unpledged lots; their
            # receipt details (commodity, weight) follow from the keeper's inbound registration.
            for tag in event.unknown_tags:
                if tag in self.book.lots:
                    continue
                self.book.add_lot(Lot(id=tag, tag=tag, site=site, commodity="unregistered", mass_kg=0.0, bay=None))
        self.tap("cloud.gate", event)

    def _run_rules(self, record: object) -> None:
        for alert in self.engine.evaluate(record, self.context, raised_at=self.clock.now()):
            self._raise_own(alert)
