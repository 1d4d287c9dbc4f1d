"""Build one run from a scenario, drive it in virtual time, and collect what happened.

twin (warehouse + pybullet) → devices → device links → edge → uplink → cloud, with fraud
injected into the twin or onto the links. The harness watches the platform only through its
taps, as it would watch an external platform through its alert API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgspec
import simpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.devices.fleet import build_fleet
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.fraud.blind_spot import inject_blind_spot_outbound
from cangtwin.fraud.camera import inject_camera_tamper
from cangtwin.fraud.device_faults import (
    inject_clock_drift,
    inject_device_failure,
    inject_replay,
    inject_scale_offset,
)
from cangtwin.fraud.duplicate_pledge import inject_duplicate_pledge
from cangtwin.fraud.edge_crash import inject_edge_crash
from cangtwin.fraud.forged_device import inject_forged_device
from cangtwin.fraud.label import Label
from cangtwin.fraud.market import inject_feed_silence, inject_price_crash
from cangtwin.fraud.outage import inject_uplink_outage
from cangtwin.fraud.outbound import inject_unauthorized_outbound
from cangtwin.fraud.substitution import inject_substitution
from cangtwin.fraud.colluding_keeper import inject_colluding_keeper
from cangtwin.fraud.edge_db_edit import inject_edge_db_edit
from cangtwin.fraud.ledger_edit import inject_ledger_edit
from cangtwin.fraud.lidar_occluder import inject_lidar_occluder
from cangtwin.fraud.link_spikes import inject_link_spikes
from cangtwin.fraud.partial_wheel import inject_partial_wheel
from cangtwin.fraud.person_on_scale import inject_person_on_scale
from cangtwin.fraud.tag_cloned import inject_tag_cloned
from cangtwin.fraud.tag_moved import inject_tag_moved
from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.config_file import InputError, read_text
from cangtwin.platform.cloud.alert_desk import AlertCase
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.cloud.evidence import EvidenceRecorder
from cangtwin.platform.cloud.service import CloudService
from cangtwin.platform.cloud.device_registry import DeviceRegistry
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.edge.service import EdgeService
from cangtwin.platform.ledger.tree_head import PARTIES
from cangtwin.platform.registry.fingerprint import fingerprint_from_book
from cangtwin.platform.registry.registry import Filing, PledgeRegistry
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.records import Alert
from cangtwin.platform.thing_model import ThingModel
from cangtwin.scenarios.eventlog import EventLog
from cangtwin.scenarios.matching import SeenAlert
from cangtwin.scenarios.spec import (
    CameraTamper,
    DeviceFault,
    DuplicatePledge,
    EdgeCrash,
    ForgedDevice,
    Inbound,
    Outbound,
    PriceCrash,
    PriceFeedSilent,
    Release,
    RulesUpdate,
    Scenario,
    Substitution,
    UnauthorizedOutbound,
    UplinkOutage,
    rules_file,
)
from cangtwin.scenarios.spec import (
    EdgeDbEdit,
    KeeperCollusion,
    LedgerEdit,
    LidarOccluded,
    LinkSpikes,
    PartialWheel,
    PersonOnScale,
    TagCloned,
    TagMoved,
)
from cangtwin.twin.market import reference_feed
from cangtwin.twin.network import Link, LinkProfile
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld

LAN = LinkProfile(base_latency_s=0.004, jitter_s=0.002)
WAN = LinkProfile(base_latency_s=0.030, jitter_s=0.015)
REGISTRY_LAG_S = 300.0  # online registration becomes searchable within minutes


@dataclass
class RunOutcome:
    scenario: Scenario
    seed: int
    log: EventLog
    labels: list[Label]
    alerts: list[SeenAlert]
    edge_rejections: dict[str, int]
    messages: dict[str, int]
    wall_s: float
    evidence: dict[str, Path] = field(default_factory=dict)  # alert id → its evidence package


class Run:
    """One replication. Its ledger and evidence packages are written under `workdir`."""

    def __init__(self, scenario: Scenario, workdir: Path, record_inputs: bool = False,
                 replay: tuple[list[tuple[float, bytes]], list[Label]] | None = None) -> None:
        """`record_inputs` keeps every frame that reached the edge (for `cangtwin replay`);
        `replay` = (those frames, the run's labels) feeds them to a fresh platform instead of
        running the twin: only platform-side events (bank actions, market, registry, links,
        edge crashes) are scheduled again."""
        self.scenario = scenario
        self.workdir = workdir
        self.record_inputs = record_inputs
        self.replay = replay
        self._inputs: list[tuple[float, bytes]] = []
        spec = scenario.spec
        self.env = simpy.Environment(initial_time=scenario.start_epoch)
        self.streams = RandomStreams(spec.seed)
        self.log = EventLog(self.env)
        self.labels: list[Label] = []
        self._edge_alerts: dict[str, Alert] = {}
        self._cloud_cases: dict[str, AlertCase] = {}

        site = scenario.site
        self.world = PhysicalWorld(site)
        self.warehouse = Warehouse(self.env, site, self.world, self.streams, self.log.record)
        clock = SimPyClock(self.env)

        self.device_link = Link(self.env, "devices→edge", self.streams.get("link.devices"), LAN, fifo=False)
        self.uplink = Link(self.env, "edge→cloud", self.streams.get("link.uplink"), WAN)
        self.downlink = Link(self.env, "cloud→edge", self.streams.get("link.downlink"), WAN)

        self.fleet = build_fleet(
            self.env, self.warehouse, self.streams, lambda _id: self._to_edge, self.log.record,
            lidar_scans=spec.twin.lidar_scans,
        )
        tds = thing_descriptions()
        devices = DeviceRegistry()
        for d in self.fleet.values():
            devices.register(site.id, DeviceRecord(d.id, d.type, d.key, device_attrs(site, d.id)), self.env.now)
        party_keys = self.streams.get("ledger.parties")
        parties = {name: Ed25519PrivateKey.from_private_bytes(party_keys.bytes(32)) for name in PARTIES}
        ledger_path = workdir / "ledger.log"
        ledger_path.unlink(missing_ok=True)
        self.evidence = EvidenceRecorder(clock, ledger_path, parties)
        book = self._initial_book()
        self.registry = self._initial_registry(book)
        self.cloud = CloudService(
            clock, book, scenario.ruleset, self._tap, evidence=self.evidence, registry=self.registry,
            devices=devices,
        )
        self._outbox_key = Ed25519PrivateKey.from_private_bytes(self.streams.get("edge.keys").bytes(32))
        # In memory unless the edge is to crash: then it must be a file that survives the restart.
        crashes = any(isinstance(inj, (EdgeCrash, EdgeDbEdit)) for inj in spec.injections)
        self._outbox_path = workdir / "edge-outbox.sqlite" if crashes else None
        if self._outbox_path:
            for leftover in workdir.glob("edge-outbox.sqlite*"):
                leftover.unlink()
        self._edge_parts = (site.id, clock, {name: ThingModel(td) for name, td in tds.items()})
        self._edges: list[EdgeService] = []
        self._frames_while_down = 0
        self.edge = self._new_edge()
        self.cloud.connect_edge(site.id, lambda data: self.downlink.send(data, lambda d: self.edge.on_downlink(d)))
        self.market = reference_feed(self.streams, start_at=self.env.now)
        self._schedule_operations()
        self._schedule_injections()

    def _new_edge(self) -> EdgeService:
        site_id, clock, models = self._edge_parts
        provisioned = self.cloud.devices.provisioning(site_id)  # a restarted edge is provisioned afresh
        outbox = Outbox(self._outbox_path, _outbox_config(self.scenario.spec.edge), self._outbox_key)
        edge = EdgeService(
            site_id, clock, provisioned, models, self.scenario.ruleset, outbox,
            send_uplink=lambda data: self.uplink.send(data, self.cloud.on_uplink),
            tap=self._tap, geometry=site_geometry(self.scenario.site), send_command=self._command_device,
        )
        self._edges.append(edge)
        return edge

    def _command_device(self, device_id: str, action: str, args: dict) -> None:
        """Edge → device actions travel the device link like any message (here: in-process).

        In a replay the devices are not live: what they answered is already in the recording."""
        if self.replay:
            return
        device = self.fleet.get(device_id)
        handler = getattr(device, action, None)
        if handler is not None:
            self.env.timeout(LAN.base_latency_s).callbacks.append(lambda _e: handler())

    def _crash_edge(self) -> None:
        self.edge.stop()
        self.edge.outbox.close()
        self.log.record("fault.edge-crash", {"site": self.scenario.site.id})

    def _restart_edge(self) -> None:
        self.edge = self._new_edge()
        self.edge.start()
        self.log.record("fault.edge-restart", {"site": self.scenario.site.id})

    def _price(self, tick) -> None:
        self.log.record("market.tick", tick)
        self.cloud.on_price(tick)

    def _to_edge(self, frame: bytes) -> None:
        self.device_link.send(frame, self._deliver_to_edge)

    def _deliver_to_edge(self, frame: bytes) -> None:
        if self.record_inputs:
            self._inputs.append((self.env.now, frame))
        if self.edge.running:
            self.edge.on_frame(frame)
        else:
            self._frames_while_down += 1

    def _tap(self, event: str, record: object) -> None:
        self.log.record(event, record)
        if event == "edge.alert":
            self._edge_alerts[record.id] = record
        elif event == "cloud.alert":
            self._cloud_cases[record.alert.id] = record

    def _initial_book(self) -> CollateralBook:
        """What the bank and the warehouse agreed before the run: stock, loans, pledges."""
        book = CollateralBook()
        site_id = self.scenario.site.id
        for lot in self.warehouse.lots.values():
            book.add_lot(Lot(lot.id, lot.tag, site_id, lot.commodity, lot.mass_kg, lot.bay,
                             volume_m3=round(lot.shape.envelope_volume_m3, 4)))
        for n, loan in enumerate(self.scenario.spec.loans, 1):
            book.open_loan(Loan(loan.id, loan.bank, loan.borrower, loan.amount_cny))
            lots = list(loan.lots) + sorted(
                lot.id for lot in self.warehouse.lots.values() if lot.bay in loan.bays and lot.id not in loan.lots
            )
            book.pledge(loan.id, lots, receipt_id=f"WR-{site_id}-{n:04d}")
        return book

    def _initial_registry(self, book: CollateralBook) -> PledgeRegistry:
        """The national registry (中登网) already shows each loan's pledge when the run starts."""
        registry = PledgeRegistry(lag_s=REGISTRY_LAG_S)
        filed = self.env.now - REGISTRY_LAG_S
        for receipt in sorted(book.receipts.values(), key=lambda r: r.id):
            loan = book.loans[receipt.loan]
            registry.file(Filing(f"REG-{receipt.id}", loan.bank, loan.borrower, self.scenario.site.id, receipt.id,
                                 fingerprint_from_book(book, receipt.id), filed))
        return registry

    def _at(self, offset: float, action: Callable[[], None]) -> None:
        self.env.timeout(offset).callbacks.append(lambda _e: action())

    def _schedule_operations(self) -> None:
        for op in self.scenario.spec.operations:
            if isinstance(op, Release):
                self._at(op.at, lambda op=op: self._release(op.loan, list(op.lots)))
            elif self.replay:
                continue  # goods moving is the twin's part: their traces are in the recorded frames
            elif isinstance(op, Outbound):
                self._at(op.at, lambda op=op: self.warehouse.outbound(list(op.lots)))
            elif isinstance(op, Inbound):
                self._at(op.at, lambda op=op: self.warehouse.inbound(op.commodity, op.count, op.bay))
            elif isinstance(op, RulesUpdate):
                self._at(op.at, lambda op=op: self._update_rules(op.file))

    def _update_rules(self, name: str) -> None:
        path = rules_file(self.scenario, name)
        try:
            ruleset = self.cloud.activate_ruleset(read_text(path), str(path))
        except InputError as err:
            self.log.record("bank.rules-refused", {"file": name, "error": str(err)})
            return
        self.log.record("bank.rules-update", {"file": name, "ruleset": ruleset.label})

    def _release(self, loan: str, lots: list[str]) -> None:
        self.cloud.book.release(loan, lots)
        self.log.record("bank.release", {"loan": loan, "lots": lots})
        self.cloud.book_changed()

    def _schedule_injections(self) -> None:
        start = self.env.now
        platform_side = (PriceCrash, PriceFeedSilent, DuplicatePledge, UplinkOutage, EdgeCrash, LedgerEdit, EdgeDbEdit,
                         LinkSpikes)
        for inj in self.scenario.spec.injections:
            if self.replay and not isinstance(inj, platform_side):
                continue  # acts on the twin or a device: its effects are in the recorded frames
            if isinstance(inj, UnauthorizedOutbound) and inj.via == "blind-spot":
                inject_blind_spot_outbound(self.env, self.warehouse, inj.id, start + inj.at, list(inj.lots),
                                           tuple(inj.exit), self._record_label)
            elif isinstance(inj, UnauthorizedOutbound):
                loans = sorted({self.cloud.book.pledges[lot] for lot in inj.lots if lot in self.cloud.book.pledges})
                inject_unauthorized_outbound(
                    self.env, self.warehouse, inj.id, start + inj.at, list(inj.lots), loans, self._record_label,
                    gate_watched=lambda: self.edge.running,
                )
            elif isinstance(inj, ForgedDevice):
                claimed = inj.device if inj.mode == "wrong-key" else f"rogue-{inj.device}"
                inject_forged_device(
                    self.env, inj.id, start + inj.at, claimed, "heartbeat", {"uptime_s": 1.0, "status": "ok"},
                    inj.count, inj.interval_s, self.streams.get(f"fraud.{inj.id}"), self._to_edge, self._record_label,
                )
            elif isinstance(inj, PriceCrash):
                loans = sorted({loan for lot, loan in self.cloud.book.pledges.items()
                                if self.cloud.book.lots[lot].commodity == inj.commodity})
                inject_price_crash(inj.id, self.market, inj.commodity, start + inj.at, inj.drop, loans, self._record_label)
            elif isinstance(inj, PriceFeedSilent):
                commodities = sorted({self.cloud.book.lots[lot].commodity for lot in self.cloud.book.pledges})
                inject_feed_silence(inj.id, self.market, start + inj.at, inj.duration, commodities, self._record_label)
            elif isinstance(inj, DuplicatePledge):
                book = self.cloud.book
                receipt = next(r for r in sorted(book.receipts.values(), key=lambda r: r.id) if r.loan == inj.loan)
                inject_duplicate_pledge(
                    inj.id, self.registry, start + inj.at, fingerprint_from_book(book, receipt.id), inj.bank,
                    book.loans[inj.loan].borrower, self.scenario.site.id, self._record_label,
                    lambda t, action: self._at(t - self.env.now, action),
                )
            elif isinstance(inj, DeviceFault):
                device, when = self.fleet[inj.device], start + inj.at
                if inj.kind == "device-failure":
                    inject_device_failure(self.env, device, inj.id, when, self._record_label)
                elif inj.kind == "clock-drift":
                    inject_clock_drift(self.env, device, inj.id, when, inj.offset_s, self._record_label)
                elif inj.kind == "replay":
                    inject_replay(self.env, device, inj.id, when, inj.count, self._to_edge, self._record_label)
                else:
                    inject_scale_offset(self.env, device, inj.id, when, inj.offset_kg, self._record_label)
            elif isinstance(inj, CameraTamper):
                inject_camera_tamper(self.env, self.fleet[inj.camera], inj.id, start + inj.at, inj.mode,
                                     inj.look_at, self._record_label)
            elif isinstance(inj, Substitution):
                inject_substitution(self.env, self.warehouse, inj.id, start + inj.at, inj.lot, inj.mass_factor,
                                    inj.kind, self._record_label)
            elif isinstance(inj, EdgeCrash):
                inject_edge_crash(inj.id, self.scenario.site.id, start + inj.at, inj.down_for,
                                  self._crash_edge, self._restart_edge,
                                  lambda t, action: self._at(t - self.env.now, action), self._record_label)
            elif isinstance(inj, UplinkOutage):
                inject_uplink_outage(inj.id, self.scenario.site.id, start + inj.at, inj.duration,
                                     [self.uplink, self.downlink], self._record_label)
            else:
                self._inject_catalog(inj, start + inj.at)

    def _inject_catalog(self, inj, when: float) -> None:
        """Weighbridge, tag, LiDAR, ledger, outbox, link and keeper injectors (one branch each)."""
        schedule = lambda t, action: self._at(t - self.env.now, action)  # noqa: E731
        site = self.scenario.site.id
        if isinstance(inj, PartialWheel):
            inject_partial_wheel(self.warehouse, inj.id, when, inj.weighbridge, list(inj.lots), inj.overhang_m,
                                 self._record_label)
        elif isinstance(inj, PersonOnScale):
            inject_person_on_scale(self.warehouse, inj.id, when, inj.weighbridge, inj.mass_kg, inj.on_after_s,
                                   inj.stay_s, self._record_label)
        elif isinstance(inj, TagCloned):
            inject_tag_cloned(self.env, self.warehouse, inj.id, when, inj.leaves, inj.clone_of, self._record_label)
        elif isinstance(inj, TagMoved):
            inject_tag_moved(self.env, self.warehouse, inj.id, when, inj.lot, inj.swap_with, self._record_label)
        elif isinstance(inj, LidarOccluded):
            inject_lidar_occluder(self.env, self.warehouse, inj.id, when, inj.lidar, inj.size_m, inj.below_m,
                                  self._record_label)
        elif isinstance(inj, LedgerEdit):
            inject_ledger_edit(inj.id, when, self.workdir / "ledger.log", inj.entry, inj.rehash, schedule,
                               self._record_label)
        elif isinstance(inj, EdgeDbEdit):
            inject_edge_db_edit(inj.id, site, when, inj.down_for, self._outbox_path, self.streams.get(f"fraud.{inj.id}"),
                                self._crash_edge, self._restart_edge, schedule, self._record_label)
        elif isinstance(inj, LinkSpikes):
            links = {"devices": self.device_link, "uplink": self.uplink, "downlink": self.downlink}
            inject_link_spikes(inj.id, site, when, inj.duration, inj.loss, inj.extra_latency_s,
                               [links[name] for name in inj.links], self._record_label)
        elif isinstance(inj, KeeperCollusion):
            camera = self.fleet[inj.cover_camera] if inj.cover_camera else None
            inject_colluding_keeper(
                self.env, self.warehouse, inj.id, when, list(inj.lots), inj.cover_camera,
                camera.cover if camera else None, self._mark_released_at_edge if inj.edit_edge_book else None,
                self._record_label,
            )

    def _mark_released_at_edge(self, lots: list[str]) -> None:
        """The keeper's console edit: the edge's local copy of the book shows the lots released."""
        self.edge.book.released.update(lots)
        self.log.record("fraud.edge-book-edit", {"released": sorted(lots)})

    def _record_label(self, label: Label) -> None:
        self.labels.append(label)
        self.log.record("fraud.label", label)

    def execute(self, progress: Callable[[float], None] | None = None) -> RunOutcome:
        started = time.perf_counter()
        if self.replay:
            for t, frame in self.replay[0]:
                self.env.timeout(t - self.env.now).callbacks.append(lambda _e, f=frame: self._deliver_to_edge(f))
        else:
            for device in self.fleet.values():
                device.start()
            self.env.process(self.warehouse.collect())
        self.edge.start()
        self.cloud.start()
        self.market.run(SimPyClock(self.env), self._price, latency_s=0.5)
        end = self.scenario.end_epoch
        steps = 100
        for i in range(1, steps + 1):
            self.env.run(until=self.scenario.start_epoch + self.scenario.spec.duration * i / steps)
            if progress:
                progress(i / steps)
        wall = time.perf_counter() - started
        self.world.close()
        evidence = self._write_evidence()
        held = self._cloud_cases
        everything = {**{aid: case.alert for aid, case in held.items()}, **self._edge_alerts}
        alerts = [
            SeenAlert(alert, held[aid].cloud_received_at if aid in held else None,
                      held[aid].visible_at if aid in held else None)
            for aid, alert in sorted(everything.items())
        ]
        links = (self.device_link, self.uplink, self.downlink)
        outbox = self.edge.outbox.counters
        messages = {
            "emitted": len(self.replay[0]) if self.replay else sum(d.seq for d in self.fleet.values()),
            "edge_accepted": sum(e.accepted for e in self._edges),
            "edge_rejected": sum(sum(e.rejected.values()) for e in self._edges),
            "lost_while_edge_down": self._frames_while_down,
            "cloud_records": self.cloud.records_applied,
            "cloud_duplicates": self.cloud.duplicates,
            "lost_on_links": sum(link.stats.lost + link.stats.dropped_in_outage for link in links),
            "outbox_appended": outbox.appended,
            "outbox_evicted": outbox.evicted,
            "outbox_pending": outbox.pending,
            "records_lost": self._records_lost(),
        }
        assert end == self.env.now
        rejections = _rejections(self._edges)
        # End-of-run totals go into the log too, so `cangtwin report` can recompute from logs alone.
        self.log.record("run.counters", {"messages": messages, "edge_rejections": rejections})
        if self.record_inputs:
            (self.workdir / "inputs.msgpack").write_bytes(msgspec.msgpack.encode(self._inputs))
        labels = self.replay[1] if self.replay else list(self.labels)
        return RunOutcome(
            self.scenario, self.scenario.spec.seed, self.log, labels, alerts,
            rejections, messages, wall, evidence,
        )

    def _records_lost(self) -> int:
        """Outbox sequence numbers neither committed at the cloud nor still waiting in the outbox."""
        pending = {e.seq for e in self.edge.outbox.next_batch(1 << 30, self.env.now)}
        head_seq, _ = self.edge.outbox.head
        site = self.scenario.site.id
        return sum(1 for seq in range(1, head_seq + 1) if seq not in pending and not self.cloud.has_record(site, seq))

    def _write_evidence(self) -> dict[str, Path]:
        """Signed heads, the parties' keys, and one evidence package per integrated alert."""
        folder = self.workdir / "evidence"
        folder.mkdir(exist_ok=True)
        (self.workdir / "ledger-heads.json").write_bytes(msgspec.json.encode(self.evidence.heads))
        (self.workdir / "parties.json").write_bytes(msgspec.json.encode(self.evidence.public_keys()))
        written = {}
        for alert_id, case in sorted(self._cloud_cases.items()):
            package = self.evidence.package(case.alert)
            if package is not None:
                written[alert_id] = folder / f"{alert_id}.json"
                written[alert_id].write_bytes(package)
        self.evidence.close()
        return written


def _rejections(edges: list[EdgeService]) -> dict[str, int]:
    total: dict[str, int] = {}
    for edge in edges:
        for reason, n in edge.rejected.items():
            total[str(reason)] = total.get(str(reason), 0) + n
    return dict(sorted(total.items()))


def _outbox_config(knobs) -> OutboxConfig:
    return OutboxConfig(max_bytes=knobs.outbox_max_bytes, segment_bytes=knobs.outbox_segment_bytes,
                        ttl_s=knobs.outbox_ttl_s, when_full=knobs.outbox_when_full)


def device_attrs(site, device_id: str) -> dict[str, str]:
    """What the warehouse's integrator provisions on the edge for each device."""
    spec = site.spec
    entry = next(d for d in spec.devices if d.id == device_id)
    attrs = {k: v for k, v in (("gate", entry.gate), ("weighbridge", entry.weighbridge), ("forklift", entry.forklift)) if v}
    if entry.weighbridge:
        scale = next(w for w in spec.weighbridges if w.id == entry.weighbridge)
        attrs["division_kg"] = repr(scale.division_kg)
    if entry.type == "lidar":  # the mount, so the edge can place the points in the site
        attrs["position"] = ",".join(map(repr, entry.position))
        attrs["bays"] = ",".join(entry.bays)
    if entry.type == "climate-sensor":
        zone = next((name for name, rect in spec.zones.items() if rect.contains(*entry.position[:2])), None)
        stored = sorted({bay.commodity for bay in spec.bays if zone is None or bay.zone == zone})
        attrs["commodities"] = ",".join(stored)
        if zone:
            attrs["zone"] = zone
    return attrs


def site_geometry(site) -> SiteGeometry:
    """The site plan the integrator loads onto the edge: zones, bays, time zone, working hours."""
    s = site.spec
    return SiteGeometry.model_validate({
        "site": s.site, "timezone": s.timezone, "working_hours": s.working_hours.model_dump(),
        "zones": {k: r.model_dump() for k, r in s.zones.items()},
        "bays": [{"id": b.id, "zone": b.zone, "rect": b.rect.model_dump()} for b in s.bays],
    })


def run_scenario(
    scenario: Scenario, workdir: Path, progress: Callable[[float], None] | None = None, record_inputs: bool = False
) -> RunOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    return Run(scenario, workdir, record_inputs=record_inputs).execute(progress)
