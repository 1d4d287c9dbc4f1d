"""The edge supervision system of one warehouse.

It admits device frames, fuses them into business events, runs the local trust rules (which
keep alerting while the uplink is down: 边缘自治) and forwards everything through the durable
outbox. Alerts leave first after a reconnect because they have the highest priority.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Protocol

import msgspec

from cangtwin.platform.clock import Clock
from cangtwin.platform.edge.auth import DeviceAuthenticator, DeviceRecord
from cangtwin.platform.edge.fusion import GateFusion, Passage
from cangtwin.platform.edge.load_check import LoadChecker
from cangtwin.platform.perception.camera_features import CameraFeatures, FrameError
from cangtwin.platform.perception.lidar_volume import BayScan, LidarPerception
from cangtwin.platform.edge.outbox import OutboxFull
from cangtwin.platform.edge.resend_timer import ResendTimer
from cangtwin.platform.processing import ServiceQueue
from cangtwin.platform.records import (
    BookSync,
    CaptureEvidence,
    DeviceRetired,
    EdgeHeartbeat,
    EvidenceClip,
    Observation,
    OutboxGap,
    Rejection,
    RuleSetUpdate,
    Telemetry,
    UplinkAck,
    UplinkBatch,
    downlink_decoder,
    record_encoder,
)
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.context import DeviceMessage, EdgeContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.lidar_rescan import rescan_wanted
from cangtwin.platform.config_file import InputError
from cangtwin.platform.rules.ruleset import RuleSet, parse_ruleset
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import Reject, WireError

Tap = Callable[[str, object], None]

PRIORITY_ALERT, PRIORITY_EVENT, PRIORITY_TELEMETRY = 0, 1, 2
# Frames and scans are analysed at the edge (计算卸载); only their derived events go up.
BULKY_KINDS = frozenset({"analysis_frame", "full_frame", "scan"})
MAX_UNANSWERED_BATCHES = 64


class Outbox(Protocol):
    def append_many(self, items: list[tuple[bytes, int]], now: float) -> list[int]: ...
    def next_batch(self, max_items: int, now: float) -> list: ...
    @property
    def head(self) -> tuple[int, bytes]: ...
    def ack(self, seqs: list[int]) -> None: ...
    def take_gaps(self) -> list: ...


@dataclass(frozen=True)
class EdgeTiming:
    """Modelled service time and the store-and-forward knobs of the uplink.

    A batch is resent when its ack is overdue: after `ack_timeout_s` until round trips have been
    measured, then after the adaptive timeout (`ResendTimer`), never sooner than
    `min_ack_timeout_s` nor later than `ack_timeout_s`, which also bounds how long the end of an
    outage goes unnoticed.
    """

    per_message_s: float = 0.0002
    heartbeat_s: float = 10.0
    linger_s: float = 0.01
    ack_timeout_s: float = 5.0
    min_ack_timeout_s: float = 0.5
    batch_size: int = 1000


class _StoppableClock:
    """The edge's view of the clock: once the process is gone, none of its timers fire."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stopped = False

    def now(self) -> float:
        return self.clock.now()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.clock.call_later(delay, lambda: None if self.stopped else callback())


class EdgeService:
    def __init__(
        self,
        site: str,
        clock: Clock,
        devices: dict[str, DeviceRecord],
        models: dict[str, ThingModel],
        ruleset: RuleSet,
        outbox: Outbox,
        send_uplink: Callable[[bytes], None],
        tap: Tap,
        timing: EdgeTiming = EdgeTiming(),
        geometry: SiteGeometry | None = None,
        send_command: Callable[[str, str, dict], None] | None = None,
    ) -> None:
        self.site = site
        self.clock = _StoppableClock(clock)
        self.devices = devices
        # After a restart the counters start again, so ids carry the boot: the outbox head it woke to.
        boot = outbox.head[0]
        self.name = site if boot == 0 else f"{site}-r{boot}"
        self.restarted = boot > 0
        self.engine = RuleEngine(ruleset, site, id_prefix=self.name)
        integrity = self.engine.params("message-integrity")
        self.auth = DeviceAuthenticator(
            devices,
            models,
            max_clock_skew_s=integrity.max_clock_skew_s if integrity else 5.0,
            replay_window=integrity.replay_window if integrity else 256,
        )
        self.fusion = GateFusion(site, id_prefix=self.name)
        self.loads = LoadChecker(site, id_prefix=self.name)
        self.cameras = CameraFeatures()  # per-camera baselines for the analysis streams
        self.lidars = LidarPerception()  # per-bay estimates, redone only where the returns changed
        self.book = BookView()
        self.context = EdgeContext(site, self.book, devices, extra={"geometry": geometry} if geometry else {})
        self._rules_read_messages = self.engine.consumes(DeviceMessage)
        self.outbox = outbox
        self.send_uplink = send_uplink
        self.tap = tap
        self.timing = timing
        self.queue = ServiceQueue(self.clock, timing.per_message_s)
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.refused = 0  # records the outbox refused when full
        self.send_command = send_command  # edge → device actions, per the devices' Thing Descriptions
        self._captures: dict[str, list[tuple[str, float]]] = {}  # camera → [(alert, deadline)]
        self._pending: list[tuple[bytes, int]] = []
        self._telemetry: list[Observation] = []
        self._flush_scheduled = False
        self._in_flight: tuple[int, ...] | None = None
        # When each batch still unanswered went, by its seqs, which the cloud's ack echoes; None when
        # the same seqs went twice, so an ack could answer either (Karn's ambiguity).
        self._sent_at: dict[frozenset[int], float | None] = {}
        self._alerts_waiting = False  # alerts appended since the last batch went
        self._alerts_aside: dict[int, float] = {}  # alert seq → when it went beside the batch in flight (not acked)
        self.resend = ResendTimer(timing.ack_timeout_s, min(timing.min_ack_timeout_s, timing.ack_timeout_s),
                                  timing.ack_timeout_s)
        self._batches_sent = 0

    def stop(self) -> None:
        """The edge process dies: timers stop, nothing more is admitted, unflushed records are gone."""
        self.clock.stopped = True
        self._pending, self._telemetry = [], []

    @property
    def running(self) -> bool:
        return not self.clock.stopped

    def start(self) -> None:
        self._report_gaps()  # corruption found when the outbox was opened
        self._heartbeat()
        if self.engine.tick_s:
            self._tick()

    def _tick(self) -> None:
        for alert in self.engine.tick(self.clock.now(), self.context):
            self._raise(alert)
        self.clock.call_later(self.engine.tick_s, self._tick)

    # --- device side -------------------------------------------------------------------------
    def on_frame(self, frame: bytes) -> None:
        """Entry point for every device frame, whatever transport carried it."""
        if self.clock.stopped:
            return
        received_at = self.clock.now()
        self.queue.submit(lambda: self._process(frame, received_at))

    def _process(self, frame: bytes, received_at: float) -> None:
        try:
            envelope, payload = self.auth.admit(frame, received_at)
        except WireError as err:
            self._refuse(err, received_at)
            return
        self.accepted += 1
        device = self.devices[envelope.device]
        if envelope.kind == "tag_read":
            self.fusion.add_read(device.attrs["gate"], payload.tag, envelope.clock)
        elif envelope.kind == "reading":
            division = float(device.attrs.get("division_kg", "20"))
            self.loads.add_reading(envelope.device, division, envelope.clock, payload.mass_kg, payload.stable)
        elif envelope.kind == "vehicle":
            self.loads.add_vehicle(envelope.device, envelope.clock, payload.plate)
        elif envelope.kind == "passage":
            passage = Passage(device.attrs["gate"], payload.direction, envelope.clock, received_at)
            self.clock.call_later(self.fusion.grace_s, lambda: self._close_passage(passage))
        if envelope.kind == "analysis_frame":
            try:
                observation = self.cameras.observe(envelope.device, envelope.clock, received_at, payload)
            except FrameError as err:  # signed by the camera, but not an image: a device fault or tamper
                self._refuse(WireError(Reject.BAD_PAYLOAD, str(err), envelope.device), received_at)
                return
            if observation is not None:
                self._run_rules(observation)
        if envelope.kind == "scan" and self.engine.consumes(BayScan) and "geometry" in self.context.extra:
            for bay_scan in self.lidars.perceive(envelope.device, envelope.clock, received_at, payload, device.attrs,
                                                 self.context.extra["geometry"]):
                self._run_rules(bay_scan)
            if rescan_wanted(self.engine.rules, envelope.device):
                self._rescan(envelope.device, "confirm")
        if envelope.kind == "full_frame" and envelope.device in self._captures:
            self._clip(envelope.device, payload.data, envelope.clock, received_at)
        if envelope.kind not in BULKY_KINDS:
            self._telemetry.append(
                Observation(envelope.device, envelope.kind, envelope.seq, envelope.clock, received_at, envelope.payload)
            )
            self._schedule_flush()
        if self._rules_read_messages:
            message = DeviceMessage(
                envelope.device, device.type, envelope.kind, envelope.seq, envelope.clock, received_at, payload
            )
            self._run_rules(message)

    def _refuse(self, err: WireError, received_at: float) -> None:
        self.rejected[err.reason] += 1
        rejection = Rejection(err.reason.value, err.detail, err.device, received_at)
        self.tap("edge.reject", rejection)
        self._emit(rejection, PRIORITY_EVENT)
        self._run_rules(rejection)

    def _close_passage(self, passage: Passage) -> None:
        event = self.fusion.close(passage, self.book)
        if event.direction == "out":
            # The edge saw these goods leave; it need not wait for the cloud (offline, it cannot)
            # to stop expecting them in their bays.
            for lot in event.lots:
                self.book.bay_by_lot.pop(lot, None)
                self.book.volume_by_lot.pop(lot, None)
        self.tap("edge.gate", event)
        self._emit(event, PRIORITY_EVENT)
        self._run_rules(event)
        check = self.loads.on_gate_event(event, self.book)
        if check is not None:
            self.tap("edge.load-check", check)
            self._emit(check, PRIORITY_EVENT)
            self._run_rules(check)

    def _run_rules(self, event: object) -> None:
        for alert in self.engine.evaluate(event, self.context, raised_at=self.clock.now()):
            self._raise(alert)

    def _raise(self, alert) -> None:
        """Edge alerts go to the keeper and the siren at once, and up through the outbox.

        A critical alert also makes the edge capture evidence itself, without waiting for the
        cloud: during an outage the command could not arrive until it is too late to film.
        """
        self.tap("edge.alert", alert)
        self._emit(alert, PRIORITY_ALERT)
        if alert.severity == "critical":
            self._capture(CaptureEvidence(self.site, alert.id))

    # --- uplink ------------------------------------------------------------------------------
    def _emit(self, record: object, priority: int) -> None:
        self._pending.append((record_encoder.encode(record), priority))
        self._alerts_waiting |= priority == PRIORITY_ALERT
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if len(self._pending) + len(self._telemetry) >= self.timing.batch_size:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.clock.call_later(self.timing.linger_s, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._telemetry:
            self._pending.append((record_encoder.encode(Telemetry(self._telemetry)), PRIORITY_TELEMETRY))
            self._telemetry = []
        if self._pending:
            try:
                self.outbox.append_many(self._pending, self.clock.now())
            except OutboxFull:
                self._refused(len(self._pending))
            self._pending = []
            self._report_gaps()
        self._pump()

    def _refused(self, count: int) -> None:
        """A full outbox under the reject policy: these records are lost, and the rules hear of it."""
        self.refused += count
        record = OutboxGap(self.site, 0, 0, count, "rejected", "outbox full (policy: reject new data)", b"",
                           self.clock.now())
        self.tap("edge.outbox-gap", record)
        self._run_rules(record)  # the alert reaches the keeper and siren even if it cannot be stored

    def _report_gaps(self) -> None:
        """Every range the outbox gave up on is told to the cloud and checked by the rules."""
        for gap in self.outbox.take_gaps():
            record = OutboxGap(self.site, gap.first_seq, gap.last_seq, gap.count, gap.reason, gap.detail,
                               msgspec.msgpack.encode(gap.checkpoint), self.clock.now())
            self.tap("edge.outbox-gap", record)
            self._emit(record, PRIORITY_ALERT)
            self._run_rules(record)

    def pump(self, alerts: bool) -> None:
        """More entries may go (the live node: they became durable): the next batch, or, if `alerts`
        are among them, those beside the batch in flight, as if they had just been appended."""
        if not self.clock.stopped:
            self._alerts_waiting |= alerts
            self._pump()

    def _pump(self) -> None:
        """One batch in flight at a time, resent until acked; new alerts do not wait behind it.

        Alerts appended while a batch is in flight go at once in a batch of their own, sent once;
        if its ack has not come within the resend timeout, the next batch in flight carries them.
        """
        now = self.clock.now()
        if self._in_flight is not None:
            if self._alerts_waiting:
                self._alerts_waiting = False
                flying = set(self._in_flight)
                entries = [e for e in self.outbox.next_batch(self.timing.batch_size, now)
                           if e.priority == PRIORITY_ALERT and e.seq not in flying and e.seq not in self._alerts_aside]
                if entries:
                    self._alerts_aside.update((e.seq, now) for e in entries)
                    self._send(entries)
                    self.clock.call_later(self.resend.rto_s, self._pump)
            return
        entries = self.outbox.next_batch(self.timing.batch_size, now)
        self._alerts_waiting = False
        if self._alerts_aside:  # not again while their own ack may still come
            entries = [e for e in entries if now - self._alerts_aside.get(e.seq, -math.inf) >= self.resend.rto_s]
        if not entries:
            return
        self._in_flight = tuple(e.seq for e in entries)
        self._batches_sent += 1
        batch_no = self._batches_sent
        self._send(entries)
        self.clock.call_later(self.resend.rto_s, lambda: self._ack_timeout(batch_no))

    def _send(self, entries: list) -> None:
        key = frozenset(e.seq for e in entries)
        self._sent_at[key] = None if key in self._sent_at else self.clock.now()
        if len(self._sent_at) > MAX_UNANSWERED_BATCHES:  # acks of the oldest are not coming
            del self._sent_at[next(iter(self._sent_at))]
        self.send_uplink(record_encoder.encode(UplinkBatch(self.site, [(e.seq, e.payload) for e in entries])))

    def _ack_timeout(self, batch_no: int) -> None:
        if self._in_flight is not None and batch_no == self._batches_sent:
            self._in_flight = None  # resend: at-least-once, the cloud dedupes
            self.resend.timed_out()
            self._pump()

    # --- downlink ----------------------------------------------------------------------------
    def on_downlink(self, data: bytes) -> None:
        if self.clock.stopped:
            return
        message = downlink_decoder.decode(data)
        if isinstance(message, UplinkAck):
            self.outbox.ack(message.seqs)
            acked = frozenset(message.seqs)
            sent_at = self._sent_at.pop(acked, None)
            if sent_at is not None:  # the ack answers a batch that went once: a round trip
                self.resend.measured(self.clock.now() - sent_at)
            for seq in self._alerts_aside.keys() & acked:
                del self._alerts_aside[seq]
            if self._in_flight is not None and acked >= set(self._in_flight):
                self._in_flight = None
            self._pump()
        elif isinstance(message, CaptureEvidence):
            self._capture(message)
        elif isinstance(message, RuleSetUpdate) and message.sha256 != self.engine.ruleset.sha256:
            self._apply_ruleset(message)
        elif isinstance(message, DeviceRetired) and message.device in self.devices:
            del self.devices[message.device]  # the authenticator's and the rules' view too: one dict
            self.tap("edge.device-retired", message)
        elif isinstance(message, BookSync) and message.version > self.book.version:
            reconcile = self.restarted and self.book.version < 0
            self.book.version = message.version
            self.book.pledged = dict(message.pledged)
            self.book.released = set(message.released)
            self.book.lot_by_tag = {tag: lot for lot, tag in message.tags.items()}
            self.book.bay_by_lot = dict(message.bays)
            self.book.volume_by_lot = dict(message.volumes)
            self.book.mass_by_lot = dict(message.masses)
            self.tap("edge.book-sync", message)
            if reconcile:  # goods may have moved while this edge was down: look at every bay now
                for device in sorted(d for d, rec in self.devices.items() if rec.type == "lidar"):
                    self._rescan(device, "restart")

    def _apply_ruleset(self, update: RuleSetUpdate) -> None:
        """Swap in the rules the cloud put in force; a file that does not load leaves the old ones."""
        try:
            ruleset = parse_ruleset(update.text, f"ruleset {update.sha256[:12]}")
        except InputError as err:
            self.tap("edge.ruleset-refused", {"sha256": update.sha256, "error": str(err)})
            return
        self.engine = self.engine.successor(ruleset)
        self._rules_read_messages = self.engine.consumes(DeviceMessage)
        self.tap("edge.ruleset", {"ruleset": ruleset.label})

    def _capture(self, command: CaptureEvidence) -> None:
        """取证指令: ask every camera for full frames now; their hashes go up as evidence clips."""
        if self.send_command is None:
            return
        deadline = self.clock.now() + command.window_s
        for device in sorted(d for d, rec in self.devices.items() if rec.type == "camera"):
            self._captures.setdefault(device, []).append((command.alert, deadline))
            self.send_command(device, "capture_evidence", {"reason": command.alert})

    def _rescan(self, device: str, reason: str) -> None:
        """Command a LiDAR's `scan` action (its Thing Description): a scan now, not at its next period."""
        if self.send_command is not None:
            self.tap("edge.rescan", {"device": device, "reason": reason})
            self.send_command(device, "scan", {"reason": reason})

    def _clip(self, device: str, frame: bytes, clock: float, received_at: float) -> None:
        waiting = [(alert, deadline) for alert, deadline in self._captures.pop(device) if deadline >= received_at]
        digest = hashlib.sha256(frame).hexdigest()
        for alert, _ in waiting:
            clip = EvidenceClip(self.site, alert, device, digest, len(frame), clock, received_at)
            self.tap("edge.evidence-clip", clip)
            self._emit(clip, PRIORITY_ALERT)

    def _heartbeat(self) -> None:
        self._emit(EdgeHeartbeat(self.site, self.clock.now(), self.book.version, self.engine.ruleset.sha256),
                   PRIORITY_EVENT)
        self.clock.call_later(self.timing.heartbeat_s, self._heartbeat)
