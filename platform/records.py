"""Immutable records that flow inside the platform and over the edge→cloud uplink.

Like messages in a rule engine, a record is never changed after it is made: each stage
builds a new one. They are tagged msgspec Structs so one decoder reads any of them.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Observation(msgspec.Struct, frozen=True, tag="obs"):
    """An accepted device message, as the edge forwards it for shadows and replay."""

    device: str
    kind: str
    seq: int
    clock: float
    received_at: float
    payload: msgspec.Raw


class Telemetry(msgspec.Struct, frozen=True, tag="telemetry"):
    """The observations of one outbox flush, stored as one entry.

    Telemetry is most of the traffic; one row per flush instead of one per message is what lets
    the edge ingest 100k msg/s (an SQLite row costs ~5 µs, a packed record ~0.25 µs).
    """

    observations: list[Observation]


class Rejection(msgspec.Struct, frozen=True, tag="reject"):
    """A frame the edge refused; `device` is the claimed sender when the envelope named one."""

    reason: str
    detail: str
    device: str | None
    received_at: float


class GateEvent(msgspec.Struct, frozen=True, tag="gate"):
    """Fusion of a vehicle passage with the RFID reads around it: goods crossing a gate."""

    id: str
    site: str
    gate: str
    direction: str
    lots: tuple[str, ...]
    unknown_tags: tuple[str, ...]
    event_time: float
    received_at: float


class LoadCheck(msgspec.Struct, frozen=True, tag="load-check"):
    """A truck's two weighings around a gate crossing, against the book's mass for its lots.

    net_kg is |first gross − second gross|: what the truck brought or took. Checked by
    substitution-or-hollow; uplinked as evidence.
    """

    id: str
    site: str
    gate_event: str
    direction: str
    lots: tuple[str, ...]
    declared_kg: float
    net_kg: float
    grosses_kg: tuple[float, float]
    division_kg: float
    event_time: float
    received_at: float


class Alert(msgspec.Struct, frozen=True, tag="alert"):
    """A rule verdict. `event_time` is when the evidence happened; `raised_at` is edge time."""

    id: str
    rule: str
    category: str
    severity: str
    section: str
    site: str
    targets: tuple[str, ...]
    event_time: float
    observed_at: float
    raised_at: float
    ruleset: str
    summary: str
    detail: dict[str, Any] = {}


class OutboxGap(msgspec.Struct, frozen=True, tag="outbox-gap"):
    """Records the edge's outbox gave up before the cloud had them (TTL, overflow, corruption).

    Carries the signed checkpoint taken before the eviction, so the cloud can tell the edge's
    own account of the loss from a later edit of its store.
    """

    site: str
    first_seq: int
    last_seq: int
    count: int
    reason: str
    detail: str
    checkpoint: bytes
    at: float


class EvidenceClip(msgspec.Struct, frozen=True, tag="evidence-clip"):
    """A frame captured on an evidence command (取证指令), reduced to its hash for the ledger.

    The frame itself stays in the warehouse's video store; the hash makes it checkable later.
    """

    site: str
    alert: str
    device: str
    sha256: str
    bytes: int
    clock: float
    received_at: float


class EdgeHeartbeat(msgspec.Struct, frozen=True, tag="edge-heartbeat"):
    """The edge's own liveness, and the book version it holds (so the cloud knows to resend)."""

    site: str
    at: float
    book_version: int
    ruleset: str = ""  # sha256 of the rule set in force at the edge


UplinkRecord = Observation | Telemetry | Rejection | GateEvent | LoadCheck | Alert | OutboxGap | EvidenceClip | EdgeHeartbeat

record_encoder = msgspec.msgpack.Encoder()
record_decoder = msgspec.msgpack.Decoder(UplinkRecord)


class UplinkBatch(msgspec.Struct, frozen=True):
    """Outbox entries in flight to the cloud: (edge sequence number, encoded record)."""

    site: str
    entries: list[tuple[int, bytes]]


class UplinkAck(msgspec.Struct, frozen=True, tag="ack"):
    """The cloud's receipt: these sequence numbers are committed and may leave the outbox."""

    site: str
    seqs: list[int]


class BookSync(msgspec.Struct, frozen=True, tag="book-sync"):
    """Command down to the edge: which lots are pledged (lot → loan), released, tagged, and where."""

    site: str
    version: int
    pledged: dict[str, str]
    released: list[str]
    tags: dict[str, str]
    bays: dict[str, str] = {}
    volumes: dict[str, float] = {}  # lot → envelope m³, from the receipts
    masses: dict[str, float] = {}  # lot → kg, from the receipts


class CaptureEvidence(msgspec.Struct, frozen=True, tag="capture-evidence"):
    """Command down to the edge: capture evidence for this alert from the site's cameras."""

    site: str
    alert: str
    window_s: float = 30.0


class RuleSetUpdate(msgspec.Struct, frozen=True, tag="ruleset"):
    """Command down to the edge: the rule file now in force, as written (its hash is in the ledger)."""

    site: str
    sha256: str
    text: str


class DeviceRetired(msgspec.Struct, frozen=True, tag="device-retired"):
    """Command down to the edge: the cloud's registry retired this device; refuse its frames."""

    site: str
    device: str
    reason: str


batch_decoder = msgspec.msgpack.Decoder(UplinkBatch)
downlink_decoder = msgspec.msgpack.Decoder(UplinkAck | BookSync | CaptureEvidence | RuleSetUpdate | DeviceRetired)
