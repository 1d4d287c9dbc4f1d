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
from cangtwin.fraud.climate_fault import inject_climate_fault
from cangtwin.fraud.lots_moved import inject_lots_moved
from cangtwin.fraud.market import LoanExposure, inject_feed_silence, inject_price_crash, inject_price_slide
from cangtwin.fraud.ownership_transfer import inject_ownership_transfer
from cangtwin.fraud.outage import inject_uplink_outage
from cangtwin.fraud.pledge_ring import RingCopy, inject_pledge_ring
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
from cangtwin.platform.edge.outbox import OutboxConfig
from cangtwin.platform.edge.service import EdgeService
from cangtwin.platform.ledger.tree_head import PARTIES
from cangtwin.platform.registry.fingerprint import LotGoods, fingerprint_from_book
from cangtwin.platform.registry.registry import Filing, PledgeRegistry
from cangtwin.platform.records import Alert
from cangtwin.platform.thing_model import ThingModel
from cangtwin.scenarios.eventlog import EventLog
from cangtwin.scenarios.matching import SeenAlert
from cangtwin.scenarios.rig import NamespacedStreams, Rig, device_attrs, site_geometry  # noqa: F401 (re-exported)
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
    ClimateFault,
    LotsMoved,
    OwnershipTransfer,
    PriceSlide,
)
from cangtwin.scenarios.spec import (
    EdgeDbEdit,
    KeeperCollusion,
    LedgerEdit,
    LidarOccluded,
    LinkSpikes,
    PartialWheel,
    PersonOnScale,
    PledgeRing,
    TagCloned,
    TagMoved,
)
from cangtwin.twin.market import reference_feed
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import MultiSite

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
    workdir: Path | None = None  # the run folder: ledger, signed heads, parties' keys


class Run:
    """One replication. Its ledger and evidence packages are written under `workdir`.

    One rig (world, warehouse, devices, edge, links) per warehouse of the site, all in one SimPy
    environment, with one cloud, one evidence ledger and one pledge registry."""

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
        multi = isinstance(scenario.site, MultiSite)
        if multi and (record_inputs or replay):
            raise InputError(scenario.source, None, "site", "recording inputs and replay are for one-warehouse sites")
        spec = scenario.spec
        self.env = simpy.Environment(initial_time=scenario.start_epoch)
        self.streams = RandomStreams(spec.seed)
        self.log = EventLog(self.env)
        self.labels: list[Label] = []
        self._edge_alerts: dict[str, Alert] = {}
        self._cloud_cases: dict[str, AlertCase] = {}
        clock = SimPyClock(self.env)

        twin = dict(lidar_scans=spec.twin.lidar_scans, replaying=replay is not None, record_inputs=record_inputs)
        if multi:
            self.rigs = [Rig(self.env, member, NamespacedStreams(self.streams, member.id), self.log.record,
                             id_prefix=f"{member.id}.", **twin) for member in scenario.site.members]
        else:
            self.rigs = [Rig(self.env, scenario.site, self.streams, self.log.record, **twin)]
        self._rig_by_id = {rig.id: rig for rig in self.rigs}
        self._owner = {name: rig for rig in self.rigs
                       for name in (*rig.warehouse.lots, *rig.fleet, *rig.warehouse.scales, *rig.warehouse.bay_slots)}
        devices = DeviceRegistry()
        for rig in self.rigs:
            for record in rig.device_records():
                devices.register(rig.id, record, self.env.now)
        party_keys = self.streams.get("ledger.parties")
        parties = {name: Ed25519PrivateKey.from_private_bytes(party_keys.bytes(32)) for name in PARTIES}
        ledger_path = workdir / "ledger.log"
        ledger_path.unlink(missing_ok=True)
        self.evidence = EvidenceRecorder(clock, ledger_path, parties)
        self._receipt_site: dict[str, str] = {}
        book = self._initial_book()
        self.registry = self._initial_registry(book)
        self.cloud = CloudService(
            clock, book, scenario.ruleset, self._tap, evidence=self.evidence, registry=self.registry,
            devices=devices,
        )
        models = {name: ThingModel(td) for name, td in thing_descriptions().items()}
        for rig in self.rigs:
            # An edge that is to crash keeps its outbox in a file that survives the restart.
            crashes = any(isinstance(inj, (EdgeCrash, EdgeDbEdit)) and self._rig_of(inj) is rig for inj in spec.injections)
            name = "edge-outbox.sqlite" if not multi else f"edge-outbox-{rig.id}.sqlite"
            rig.attach(self.cloud, clock, models, scenario.ruleset, _outbox_config(spec.edge),
                       workdir / name if crashes else None, self._tap)
        self.market = reference_feed(self.streams, start_at=self.env.now)
        self._schedule_operations()
        self._schedule_injections()

    # A one-warehouse run's parts, by their old names (tests and tools reach for them).
    def _sole(self) -> Rig:
        if len(self.rigs) != 1:
            raise AttributeError(f"site {self.scenario.site.id} has {len(self.rigs)} warehouses: use run.rigs")
        return self.rigs[0]

    world = property(lambda self: self._sole().world)
    warehouse = property(lambda self: self._sole().warehouse)
    fleet = property(lambda self: self._sole().fleet)
    device_link = property(lambda self: self._sole().device_link)
    uplink = property(lambda self: self._sole().uplink)
    downlink = property(lambda self: self._sole().downlink)
    edge = property(lambda self: self._sole().edge)

    def _crash_edge(self) -> None:
        self._sole().crash_edge()

    def _restart_edge(self) -> None:
        self._sole().restart_edge()

    def _rig_named(self, name: str) -> Rig:
        """The warehouse that holds this lot, bay, scale or device."""
        return self.rigs[0] if len(self.rigs) == 1 else self._owner[name]

    def _rig_of(self, inj) -> Rig:
        """The warehouse an injection acts at: named, or the owner of the lot or device it names."""
        if len(self.rigs) == 1:
            return self.rigs[0]
        if getattr(inj, "warehouse", None):
            return self._rig_by_id[inj.warehouse]
        if isinstance(inj, ClimateFault):
            return next(rig for rig in self.rigs if inj.zone in rig.warehouse.spec.zones)
        for name in ("lots", "lot", "leaves", "device", "camera", "weighbridge", "lidar"):
            value = getattr(inj, name, None)
            value = value[0] if isinstance(value, (list, tuple)) else value
            if value in self._owner:
                return self._owner[value]
            if isinstance(value, str) and value.split(".", 1)[0] in self._rig_by_id:  # a forged id
                return self._rig_by_id[value.split(".", 1)[0]]
        raise ValueError(f"injection {inj.id} names no warehouse of site {self.scenario.site.id}")

    def _price(self, tick) -> None:
        self.log.record("market.tick", tick)
        self.cloud.on_price(tick)

    def _tap(self, event: str, record: object) -> None:
        self.log.record(event, record)
        if event == "edge.alert":
            self._edge_alerts[record.id] = record
        elif event == "cloud.alert":
            self._cloud_cases[record.alert.id] = record

    def _initial_book(self) -> CollateralBook:
        """What the banks and the warehouses agreed before the run: stock, loans, pledges.

        A loan's lots at each warehouse are pledged under that warehouse's receipt."""
        book = CollateralBook()
        for rig in self.rigs:
            for lot in rig.warehouse.lots.values():
                book.add_lot(Lot(lot.id, lot.tag, rig.id, lot.commodity, lot.mass_kg, lot.bay,
                                 volume_m3=round(lot.shape.envelope_volume_m3, 4)))
        for n, loan in enumerate(self.scenario.spec.loans, 1):
            book.open_loan(Loan(loan.id, loan.bank, loan.borrower, loan.amount_cny))
            for rig in self.rigs:
                lots = [lot for lot in loan.lots if self._owner.get(lot, rig) is rig] + sorted(
                    lot.id for lot in rig.warehouse.lots.values() if lot.bay in loan.bays and lot.id not in loan.lots
                )
                if lots or len(self.rigs) == 1:
                    receipt = book.pledge(loan.id, lots, receipt_id=f"WR-{rig.id}-{n:04d}")
                    self._receipt_site[receipt.id] = rig.id
        return book

    def _initial_registry(self, book: CollateralBook) -> PledgeRegistry:
        """The national registry (中登网) already shows each loan's pledge when the run starts."""
        registry = PledgeRegistry(lag_s=REGISTRY_LAG_S)
        filed = self.env.now - REGISTRY_LAG_S
        for receipt in sorted(book.receipts.values(), key=lambda r: r.id):
            loan = book.loans[receipt.loan]
            registry.file(Filing(f"REG-{receipt.id}", loan.bank, loan.borrower, self._receipt_site[receipt.id],
                                 receipt.id, fingerprint_from_book(book, receipt.id), filed))
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
                warehouse = self._rig_named(op.lots[0]).warehouse
                self._at(op.at, lambda op=op, w=warehouse: w.outbound(list(op.lots)))
            elif isinstance(op, Inbound):
                warehouse = self._rig_named(op.bay).warehouse
                self._at(op.at, lambda op=op, w=warehouse: w.inbound(op.commodity, op.count, op.bay))
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
        schedule = lambda t, action: self._at(t - self.env.now, action)  # noqa: E731
        platform_side = (PriceCrash, PriceFeedSilent, DuplicatePledge, UplinkOutage, EdgeCrash, LedgerEdit, EdgeDbEdit,
                         LinkSpikes, PledgeRing, OwnershipTransfer, PriceSlide)
        for inj in self.scenario.spec.injections:
            if self.replay and not isinstance(inj, platform_side):
                continue  # acts on the twin or a device: its effects are in the recorded frames
            if isinstance(inj, (PriceCrash, PriceFeedSilent, DuplicatePledge, PledgeRing, LedgerEdit)):
                self._inject_platform(inj, start + inj.at, schedule)
                continue
            if isinstance(inj, (OwnershipTransfer, PriceSlide)):
                self._inject_market_or_registry(inj, start + inj.at, schedule)
                continue
            rig = self._rig_of(inj)
            if isinstance(inj, UnauthorizedOutbound) and inj.via == "blind-spot":
                inject_blind_spot_outbound(self.env, rig.warehouse, inj.id, start + inj.at, list(inj.lots),
                                           tuple(inj.exit), self._record_label)
            elif isinstance(inj, UnauthorizedOutbound):
                loans = sorted({self.cloud.book.pledges[lot] for lot in inj.lots if lot in self.cloud.book.pledges})
                inject_unauthorized_outbound(
                    self.env, rig.warehouse, inj.id, start + inj.at, list(inj.lots), loans, self._record_label,
                    gate_watched=lambda rig=rig: rig.edge.running,
                )
            elif isinstance(inj, ForgedDevice):
                claimed = inj.device if inj.mode == "wrong-key" else f"rogue-{inj.device}"
                inject_forged_device(
                    self.env, inj.id, start + inj.at, claimed, "heartbeat", {"uptime_s": 1.0, "status": "ok"},
                    inj.count, inj.interval_s, self.streams.get(f"fraud.{inj.id}"), rig.to_edge, self._record_label,
                )
            elif isinstance(inj, DeviceFault):
                device, when = rig.fleet[inj.device], start + inj.at
                if inj.kind == "device-failure":
                    inject_device_failure(self.env, device, inj.id, when, self._record_label)
                elif inj.kind == "clock-drift":
                    inject_clock_drift(self.env, device, inj.id, when, inj.offset_s, self._record_label)
                elif inj.kind == "replay":
                    inject_replay(self.env, device, inj.id, when, inj.count, rig.to_edge, self._record_label)
                else:
                    inject_scale_offset(self.env, device, inj.id, when, inj.offset_kg, self._record_label)
            elif isinstance(inj, CameraTamper):
                inject_camera_tamper(self.env, rig.fleet[inj.camera], inj.id, start + inj.at, inj.mode,
                                     inj.look_at, self._record_label)
            elif isinstance(inj, Substitution):
                inject_substitution(self.env, rig.warehouse, inj.id, start + inj.at, inj.lot, inj.mass_factor,
                                    inj.kind, self._record_label)
            elif isinstance(inj, EdgeCrash):
                inject_edge_crash(inj.id, rig.id, start + inj.at, inj.down_for,
                                  rig.crash_edge, rig.restart_edge, schedule, self._record_label)
            elif isinstance(inj, UplinkOutage):
                inject_uplink_outage(inj.id, rig.id, start + inj.at, inj.duration,
                                     [rig.uplink, rig.downlink], self._record_label)
            else:
                self._inject_catalog(inj, start + inj.at, rig, schedule)

    def _inject_platform(self, inj, when: float, schedule) -> None:
        """Injections on the market, the registry and the ledger: one per run, not per warehouse."""
        book = self.cloud.book
        if isinstance(inj, PriceCrash):
            loans = sorted({loan for lot, loan in book.pledges.items() if book.lots[lot].commodity == inj.commodity})
            inject_price_crash(inj.id, self.market, inj.commodity, when, inj.drop, loans, self._record_label)
        elif isinstance(inj, PriceFeedSilent):
            commodities = sorted({book.lots[lot].commodity for lot in book.pledges})
            inject_feed_silence(inj.id, self.market, when, inj.duration, commodities, self._record_label)
        elif isinstance(inj, DuplicatePledge):
            receipt = next(r for r in sorted(book.receipts.values(), key=lambda r: r.id) if r.loan == inj.loan)
            inject_duplicate_pledge(
                inj.id, self.registry, when, fingerprint_from_book(book, receipt.id), inj.bank,
                book.loans[inj.loan].borrower, self._receipt_site[receipt.id], self._record_label, schedule,
            )
        elif isinstance(inj, PledgeRing):
            receipt = next(r for r in sorted(book.receipts.values(), key=lambda r: r.id) if r.loan == inj.loan)
            site = self._receipt_site[receipt.id]
            copies = [RingCopy(c.id, c.bank, c.warehouse or site, when + c.after) for c in inj.copies]
            inject_pledge_ring(inj.id, self.registry, fingerprint_from_book(book, receipt.id), site,
                               book.loans[inj.loan].borrower, copies, self._record_label, schedule)
        else:
            inject_ledger_edit(inj.id, when, self.workdir / "ledger.log", inj.entry, inj.rehash, schedule,
                               self._record_label)

    def _inject_market_or_registry(self, inj, when: float, schedule) -> None:
        """An ownership transfer filed in the registry; a price slide on the market."""
        book = self.cloud.book
        if isinstance(inj, OwnershipTransfer):
            goods = [LotGoods(lot, book.lots[lot].tag, book.lots[lot].commodity, book.lots[lot].mass_kg)
                     for lot in inj.lots]

            def held_under() -> dict[str, tuple[str, str]]:
                receipts = {lot: r.id for r in book.receipts.values() for lot in r.lots if book.pledges.get(lot) == r.loan}
                return {lot: (receipts[lot], book.pledges[lot]) for lot in inj.lots if lot in book.pledges}

            inject_ownership_transfer(inj.id, self.registry, when, goods, held_under, inj.from_owner, inj.to_owner,
                                      self._record_label, schedule)
        else:
            exposures = []
            for loan in sorted(book.loans.values(), key=lambda loan: loan.id):
                tonnes: dict[str, float] = {}
                for lot, pledged_to in sorted(book.pledges.items()):
                    if pledged_to == loan.id:
                        c = book.lots[lot].commodity
                        tonnes[c] = tonnes.get(c, 0.0) + book.lots[lot].mass_kg / 1000.0
                exposures.append(LoanExposure(loan.id, loan.amount_cny, tonnes))
            # The loans' LTV lines, as the bank's rule file states them (its `ltv-band` entry).
            entries = self.scenario.ruleset.entries
            lines = next((e.params for e in entries if e.id == "ltv-band"),
                         next((e.params for e in entries if e.kind == "ltv-band"), None))
            inject_price_slide(inj.id, self.market, inj.commodity, when, inj.drop, inj.over, exposures,
                               lines.warning_ltv if lines else 0.75, lines.margin_call_ltv if lines else 0.80,
                               self._record_label)

    def _inject_catalog(self, inj, when: float, rig: Rig, schedule) -> None:
        """Weighbridge, tag, LiDAR, outbox, link, keeper, climate and lot-move injectors (one branch each)."""
        if isinstance(inj, ClimateFault):
            inject_climate_fault(self.env, rig.warehouse, inj.id, when, inj.zone, inj.cause, inj.magnitude,
                                 inj.duration, inj.tau_s, self._record_label)
        elif isinstance(inj, LotsMoved):
            book = self.cloud.book
            schedule(when, lambda inj=inj, rig=rig: inject_lots_moved(
                self.env, rig.warehouse, inj.id, when, list(inj.lots), inj.to_bay,
                None if inj.to is None else tuple(inj.to), sorted(book.pledges), self._record_label))
        elif isinstance(inj, PartialWheel):
            inject_partial_wheel(rig.warehouse, inj.id, when, inj.weighbridge, list(inj.lots), inj.overhang_m,
                                 self._record_label)
        elif isinstance(inj, PersonOnScale):
            inject_person_on_scale(rig.warehouse, inj.id, when, inj.weighbridge, inj.mass_kg, inj.on_after_s,
                                   inj.stay_s, self._record_label)
        elif isinstance(inj, TagCloned):
            inject_tag_cloned(self.env, rig.warehouse, inj.id, when, inj.leaves, inj.clone_of, self._record_label)
        elif isinstance(inj, TagMoved):
            inject_tag_moved(self.env, rig.warehouse, inj.id, when, inj.lot, inj.swap_with, self._record_label)
        elif isinstance(inj, LidarOccluded):
            inject_lidar_occluder(self.env, rig.warehouse, inj.id, when, inj.lidar, inj.size_m, inj.below_m,
                                  self._record_label)
        elif isinstance(inj, EdgeDbEdit):
            inject_edge_db_edit(inj.id, rig.id, when, inj.down_for, rig.outbox_path,
                                self.streams.get(f"fraud.{inj.id}"), rig.crash_edge, rig.restart_edge, schedule,
                                self._record_label)
        elif isinstance(inj, LinkSpikes):
            links = {"devices": rig.device_link, "uplink": rig.uplink, "downlink": rig.downlink}
            inject_link_spikes(inj.id, rig.id, when, inj.duration, inj.loss, inj.extra_latency_s,
                               [links[name] for name in inj.links], self._record_label)
        elif isinstance(inj, KeeperCollusion):
            camera = rig.fleet[inj.cover_camera] if inj.cover_camera else None
            inject_colluding_keeper(
                self.env, rig.warehouse, inj.id, when, list(inj.lots), inj.cover_camera,
                camera.cover if camera else None,
                (lambda lots, rig=rig: self._mark_released_at_edge(rig, lots)) if inj.edit_edge_book else None,
                self._record_label,
            )

    def _mark_released_at_edge(self, rig: Rig, lots: list[str]) -> None:
        """The keeper's console edit: the edge's local copy of the book shows the lots released."""
        rig.edge.book.released.update(lots)
        self.log.record("fraud.edge-book-edit", {"released": sorted(lots)})

    def _record_label(self, label: Label) -> None:
        self.labels.append(label)
        self.log.record("fraud.label", label)

    def execute(self, progress: Callable[[float], None] | None = None) -> RunOutcome:
        started = time.perf_counter()
        if self.replay:
            rig = self._sole()
            for t, frame in self.replay[0]:
                self.env.timeout(t - self.env.now).callbacks.append(lambda _e, f=frame: rig.deliver_to_edge(f))
        else:
            for rig in self.rigs:
                rig.start_twin()
        for rig in self.rigs:
            rig.edge.start()
        self.cloud.start()
        self.market.run(SimPyClock(self.env), self._price, latency_s=0.5)
        end = self.scenario.end_epoch
        steps = 100
        for i in range(1, steps + 1):
            self.env.run(until=self.scenario.start_epoch + self.scenario.spec.duration * i / steps)
            if progress:
                progress(i / steps)
        wall = time.perf_counter() - started
        for rig in self.rigs:
            rig.world.close()
        evidence = self._write_evidence()
        held = self._cloud_cases
        everything = {**{aid: case.alert for aid, case in held.items()}, **self._edge_alerts}
        alerts = [
            SeenAlert(alert, held[aid].cloud_received_at if aid in held else None,
                      held[aid].visible_at if aid in held else None)
            for aid, alert in sorted(everything.items())
        ]
        edges = [edge for rig in self.rigs for edge in rig.edges]
        outboxes = [rig.edge.outbox.counters for rig in self.rigs]
        messages = {
            "emitted": len(self.replay[0]) if self.replay else sum(d.seq for rig in self.rigs for d in rig.fleet.values()),
            "edge_accepted": sum(e.accepted for e in edges),
            "edge_rejected": sum(sum(e.rejected.values()) for e in edges),
            "lost_while_edge_down": sum(rig.frames_while_down for rig in self.rigs),
            "cloud_records": self.cloud.records_applied,
            "cloud_duplicates": self.cloud.duplicates,
            "lost_on_links": sum(link.stats.lost + link.stats.dropped_in_outage for rig in self.rigs for link in rig.links),
            "outbox_appended": sum(o.appended for o in outboxes),
            "outbox_evicted": sum(o.evicted for o in outboxes),
            "outbox_pending": sum(o.pending for o in outboxes),
            "records_lost": sum(rig.records_lost() for rig in self.rigs),
        }
        assert end == self.env.now
        rejections = _rejections(edges)
        # End-of-run totals go into the log too, so `cangtwin report` can recompute from logs alone.
        self.log.record("run.counters", {"messages": messages, "edge_rejections": rejections})
        if self.record_inputs:
            (self.workdir / "inputs.msgpack").write_bytes(msgspec.msgpack.encode(self._sole().inputs))
        labels = self.replay[1] if self.replay else list(self.labels)
        return RunOutcome(
            self.scenario, self.scenario.spec.seed, self.log, labels, alerts,
            rejections, messages, wall, evidence, self.workdir,
        )

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


def run_scenario(
    scenario: Scenario, workdir: Path, progress: Callable[[float], None] | None = None, record_inputs: bool = False
) -> RunOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    return Run(scenario, workdir, record_inputs=record_inputs).execute(progress)
