"""The twin drives a live platform in real time, or `speed` times faster, through an adapter.

The twin is the one virtual-time runs use (world, warehouse, fleet, injectors: `scenarios.rig`),
on SimPy's `RealtimeEnvironment` (factor 1/speed, not strict: a slow moment is caught up, not
fatal). Devices publish their sealed frames over MQTT with their own logins; alerts come back
only through the adapter's alert endpoint. Labels come from the injectors as always, and the
existing `matching` turns labels and alerts into detections.

Time. The platform keeps its own clock (wall time, or wall time sped up `speed` times, as its
deployment's `clock:` says). The twin starts at the platform's current time; devices stamp their
frames with the platform's time at sending, as NTP-disciplined devices would, plus their own
offset and drift, so a twin that lags for a moment does not make honest clocks look skewed. The
twin's time and the platform's differ by a constant set when the run starts (the set-up time at
the platform's speed): labels are shifted by it, so label and alert times are both platform time.

Bank operations (`release`, `rules-update`) go through the platform's bank API at their times
(`scenarios/live/bank.py`); commands the platform sends devices come back into the twin, each
decoded per its device's Thing Description, or refused with the reason.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from typing import Callable

import msgspec
import simpy.rt

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.fraud.camera import inject_camera_tamper
from cangtwin.fraud.device_faults import inject_clock_drift, inject_device_failure, inject_replay, inject_scale_offset
from cangtwin.fraud.forged_device import inject_forged_device
from cangtwin.fraud.label import Label
from cangtwin.fraud.outbound import inject_unauthorized_outbound
from cangtwin.fraud.partial_wheel import inject_partial_wheel
from cangtwin.fraud.person_on_scale import inject_person_on_scale
from cangtwin.fraud.substitution import inject_substitution
from cangtwin.fraud.tag_cloned import inject_tag_cloned
from cangtwin.fraud.tag_moved import inject_tag_moved
from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.config_file import InputError
from cangtwin.scenarios.eventlog import EventLog
from cangtwin.scenarios.live.adapter import Adapter, AlertCollector, DevicePublisher
from cangtwin.scenarios.live.bank import BankDesk
from cangtwin.scenarios.live.devices import ActionRefused, DeviceActions
from cangtwin.scenarios.matching import CLOCK_SLACK_S, SeenAlert
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.rig import Rig
from cangtwin.scenarios.run import RunOutcome
from cangtwin.scenarios.spec import (
    CameraTamper,
    DeviceFault,
    ForgedDevice,
    Inbound,
    NoAlerts,
    NoFalseAlarms,
    Detect,
    Outbound,
    PartialWheel,
    PersonOnScale,
    Release,
    RulesUpdate,
    Scenario,
    Substitution,
    TagCloned,
    TagMoved,
    UnauthorizedOutbound,
)
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import MultiSite

# What acts on the twin or a device, or goes through the bank API (release, rule updates), so it
# needs nothing from the platform's inside. Faults of links, edges, stores and markets are the
# platform's side: live faults have their own tools (scenarios/live/fault_proxy.py, kill -9 of serve).
LIVE_OPERATIONS = (Outbound, Inbound, Release, RulesUpdate)
LIVE_INJECTIONS = (UnauthorizedOutbound, ForgedDevice, DeviceFault, CameraTamper, Substitution, PartialWheel,
                   PersonOnScale, TagCloned, TagMoved)
OBSERVABLE = (Detect, NoFalseAlarms, NoAlerts)  # the others need the platform's internal counters
DRAIN_S = 60.0
STEPS = 100
# Platform seconds between the devices' joining hello and the run's start: the platform may have
# counted their silence before the twin ran (device-offline), and its alert about that silence,
# raised while the hellos are still on their way, must fall before the run's window (which opens
# CLOCK_SLACK_S early) however loaded the machine; yet the next heartbeats (within one 10 s period
# of the start) must come before three periods of silence since the hello.
JOIN_SETTLE_S = CLOCK_SLACK_S + 10.0
COMMAND_POLL_S = 0.1  # twin seconds between looks at the commands the broker handed over (a LAN's latency)


def check_live(scenario: Scenario) -> None:
    """InputError naming the first part of the scenario a live run cannot play."""
    spec = scenario.spec
    if isinstance(scenario.site, MultiSite):
        raise InputError(scenario.source, None, "site", "live runs drive one warehouse; this site has several")
    for i, op in enumerate(spec.operations):
        if not isinstance(op, LIVE_OPERATIONS):
            raise InputError(scenario.source, None, f"operations[{i}]",
                             f"{op.kind}: live runs play inbound, outbound, release and rules-update")
    for i, inj in enumerate(spec.injections):
        if not isinstance(inj, LIVE_INJECTIONS) or getattr(inj, "via", "gate") != "gate":
            raise InputError(scenario.source, None, f"injections[{i}]",
                             f"{inj.kind}: acts on the platform's side, not on the twin or a device; "
                             "use the live fault tools for that")


def initial_book(scenario: Scenario, rig: Rig) -> CollateralBook:
    """The stock, loans and pledges agreed before the run (as virtual-time runs set them up)."""
    book = CollateralBook()
    for lot in rig.warehouse.lots.values():
        book.add_lot(Lot(lot.id, lot.tag, rig.id, lot.commodity, lot.mass_kg, lot.bay,
                         volume_m3=round(lot.shape.envelope_volume_m3, 4)))
    for n, loan in enumerate(scenario.spec.loans, 1):
        book.open_loan(Loan(loan.id, loan.bank, loan.borrower, loan.amount_cny))
        lots = list(loan.lots) + sorted(lot.id for lot in rig.warehouse.lots.values()
                                        if lot.bay in loan.bays and lot.id not in loan.lots)
        book.pledge(loan.id, lots, receipt_id=f"WR-{rig.id}-{n:04d}")
    return book


class LiveRig(Rig):
    """A rig whose device link is the platform's broker: frames leave by MQTT, nothing is attached."""

    publisher: DevicePublisher | None = None

    def to_edge(self, frame: bytes) -> None:
        self.publisher.send(frame)


def ntp_clocks(rig: Rig, platform_now: Callable[[], float]) -> None:
    """Each device's clock reads the platform's time plus its own offset and drift (faults change those)."""
    for device in rig.fleet.values():
        device.clock = lambda d=device: (platform_now() + d.clock_offset_s
                                         + d.drift_ppm * 1e-6 * (d.env.now - d.started_at))


@dataclasses.dataclass
class LiveFigures:
    speed: float
    offset_s: float  # platform time minus twin time, fixed when the twin starts
    max_lag_s: float  # how far (wall seconds) the twin fell behind its schedule at a progress step
    drained: bool
    published: int
    broker_acked: int
    broker_refused: int  # frames the broker would not take (a forged device's, with no login)
    commands_taken: int  # commands from the platform a device took (decoded per its Thing Description)
    command_refusals: list[str]  # commands a device refused, each with the reason
    bank_calls: list[dict]  # each bank operation as the bank API answered it
    endpoint_answered: bool
    endpoint_error: str | None
    malformed_alerts: int
    alerts_outside_run: int  # reported about events before the twin started or after it stopped: not this run's
    unobservable_expectations: list[str]  # left out of the criteria: they need the platform's counters


class LiveRun:
    """One live replication: the twin on a real-time clock, the platform behind the adapter."""

    def __init__(self, scenario: Scenario, adapter: Adapter) -> None:
        check_live(scenario)
        self.scenario, self.adapter = scenario, adapter
        spec = scenario.spec
        self.env = simpy.rt.RealtimeEnvironment(initial_time=adapter.platform_now(), factor=1.0 / adapter.speed,
                                                strict=False)
        self.streams = RandomStreams(spec.seed)
        self.log = EventLog(self.env)
        self.labels: list[Label] = []
        self.rig = LiveRig(self.env, scenario.site, self.streams, self.log.record, lidar_scans=spec.twin.lidar_scans)
        self.book = initial_book(scenario, self.rig)
        self.desk = BankDesk(scenario, adapter) if any(isinstance(op, (Release, RulesUpdate))
                                                        for op in spec.operations) else None
        self.actions = DeviceActions(thing_descriptions())
        self.commands: queue.SimpleQueue[tuple[str, str, bytes]] = queue.SimpleQueue()  # from paho's threads
        self.commands_taken, self.command_refusals = 0, []
        self.publisher = DevicePublisher(adapter, {d.id: d.type for d in self.rig.fleet.values()},
                                         on_command=lambda *command: self.commands.put(command))
        self.rig.publisher = self.publisher
        self.collector = AlertCollector(adapter)
        ntp_clocks(self.rig, adapter.platform_now)
        self.start = self.env.now
        self._schedule()

    def _at(self, offset: float, action: Callable[[], None]) -> None:
        self.env.timeout(offset).callbacks.append(lambda _e: action())

    def _record_label(self, label: Label) -> None:
        self.labels.append(label)
        self.log.record("fraud.label", label)

    def _schedule(self) -> None:
        warehouse, fleet, env, record = self.rig.warehouse, self.rig.fleet, self.env, self._record_label
        for i, op in enumerate(self.scenario.spec.operations):
            if isinstance(op, Outbound):
                self._at(op.at, lambda op=op: warehouse.outbound(list(op.lots)))
            elif isinstance(op, Inbound):
                self._at(op.at, lambda op=op: warehouse.inbound(op.commodity, op.count, op.bay))
            else:
                self._at(op.at, lambda i=i, op=op: self._bank(i, op))
        for inj in self.scenario.spec.injections:
            when = self.start + inj.at
            if isinstance(inj, UnauthorizedOutbound):
                loans = sorted({self.book.pledges[lot] for lot in inj.lots if lot in self.book.pledges})
                inject_unauthorized_outbound(env, warehouse, inj.id, when, list(inj.lots), loans, record)
            elif isinstance(inj, ForgedDevice):
                claimed = inj.device if inj.mode == "wrong-key" else f"rogue-{inj.device}"
                inject_forged_device(env, inj.id, when, claimed, "heartbeat", {"uptime_s": 1.0, "status": "ok"},
                                     inj.count, inj.interval_s, self.streams.get(f"fraud.{inj.id}"),
                                     self.rig.to_edge, record)
            elif isinstance(inj, DeviceFault):
                device = fleet[inj.device]
                if inj.kind == "device-failure":
                    inject_device_failure(env, device, inj.id, when, record)
                elif inj.kind == "clock-drift":
                    inject_clock_drift(env, device, inj.id, when, inj.offset_s, record)
                elif inj.kind == "replay":
                    inject_replay(env, device, inj.id, when, inj.count, self.rig.to_edge, record)
                else:
                    inject_scale_offset(env, device, inj.id, when, inj.offset_kg, record)
            elif isinstance(inj, CameraTamper):
                inject_camera_tamper(env, fleet[inj.camera], inj.id, when, inj.mode, inj.look_at, record)
            elif isinstance(inj, Substitution):
                inject_substitution(env, warehouse, inj.id, when, inj.lot, inj.mass_factor, inj.kind, record)
            elif isinstance(inj, PartialWheel):
                inject_partial_wheel(warehouse, inj.id, when, inj.weighbridge, list(inj.lots), inj.overhang_m, record)
            elif isinstance(inj, PersonOnScale):
                inject_person_on_scale(warehouse, inj.id, when, inj.weighbridge, inj.mass_kg, inj.on_after_s,
                                       inj.stay_s, record)
            elif isinstance(inj, TagCloned):
                inject_tag_cloned(env, warehouse, inj.id, when, inj.leaves, inj.clone_of, record)
            else:
                inject_tag_moved(env, warehouse, inj.id, when, inj.lot, inj.swap_with, record)

    def _bank(self, index: int, op: Release | RulesUpdate) -> None:
        """The bank's operation through the API; the twin waits for the answer (see bank.py)."""
        call = self.desk.make(index, op)
        done = {"operation": call.operation, "status": call.status, "message": call.message}
        if isinstance(op, Release):
            self.log.record("bank.release" if call.ok else "bank.release-refused",
                            {"loan": op.loan, "lots": list(op.lots), **done})
        else:
            self.log.record("bank.rules-update" if call.status == 201 else "bank.rules-refused",
                            {"file": op.file, **done})

    def _take_commands(self):
        """A SimPy process: hand the devices what the platform commanded (paho's threads queue it)."""
        while True:
            while True:
                try:
                    device, action, payload = self.commands.get_nowait()
                except queue.Empty:
                    break
                self._take(device, action, payload)
            yield self.env.timeout(COMMAND_POLL_S)

    def _take(self, device: str, action: str, payload: bytes) -> None:
        model = self.rig.fleet.get(device)
        try:
            args = self.actions.decode(device, model.type if model else None, action, payload)
        except ActionRefused as err:
            self.command_refusals.append(str(err))
            self.log.record("device.command-refused", {"device": device, "action": action, "error": str(err)})
            return
        self.commands_taken += 1
        self.log.record("device.command", {"device": device, "action": action, "input": args})
        self.rig.command_device(device, action, args)

    def alerts_within(self, run_start: float, run_end: float) -> list[SeenAlert]:
        """The run's alerts: those about events while the twin ran. A running platform also reports
        what it saw outside that window: its devices' silence before the twin started and after it
        stopped, an earlier run's alerts."""
        return [s for s in self.collector.alerts() if run_start - CLOCK_SLACK_S <= s.alert.event_time <= run_end]

    def execute(self, progress: Callable[[float], None] | None = None) -> tuple[RunOutcome, LiveFigures]:
        adapter, env = self.adapter, self.env
        started = time.perf_counter()
        try:
            self.publisher.connect_all()
            self.collector.start()
            for device in self.rig.fleet.values():  # joining the network, each device says hello at once, so
                device.emit("heartbeat", {"uptime_s": 0.0, "status": "ok"})  # its earlier silence ends here
            self.publisher.drain(DRAIN_S)
            time.sleep(JOIN_SETTLE_S / adapter.speed)
            offset = adapter.platform_now() - env.now
            run_start = env.now + offset
            env.sync()  # the schedule starts now, not when the environment was built
            self.rig.start_twin()
            env.process(self._take_commands())
            max_lag = 0.0
            for i in range(1, STEPS + 1):
                env.run(until=self.start + self.scenario.spec.duration * i / STEPS)
                max_lag = max(max_lag, (adapter.platform_now() - offset - env.now) / adapter.speed)
                if progress:
                    progress(i / STEPS)
            drained = self.publisher.drain(DRAIN_S)
            settle_until = time.monotonic() + adapter.spec.settle_s
            while time.monotonic() < settle_until:
                time.sleep(min(0.1, max(0.0, settle_until - time.monotonic())))
            if adapter.spec.alerts.poll is not None:
                self.collector.poll_once()  # the freshest view at the end
        finally:
            self.collector.stop()
            self.publisher.close()
            self.rig.world.close()
        wall = time.perf_counter() - started
        alerts = self.alerts_within(run_start, self.scenario.end_epoch - self.scenario.start_epoch + run_start)
        figures = LiveFigures(
            adapter.speed, round(offset, 6), round(max_lag, 3), drained, self.publisher.sent, self.publisher.acked,
            self.publisher.broker_refused, self.commands_taken, list(self.command_refusals),
            [dataclasses.asdict(call) for call in (self.desk.calls if self.desk else [])], self.collector.answered, self.collector.last_error,
            len(self.collector.malformed), len(self.collector.alerts()) - len(alerts),
            [e.kind for e in self.scenario.spec.expectations if not isinstance(e, OBSERVABLE)],
        )
        labels = [_shifted(label, offset) for label in self.labels]
        messages = {
            "emitted": sum(d.seq for d in self.rig.fleet.values()),
            "published": self.publisher.sent,
            "broker_acked": self.publisher.acked,
            "broker_refused": self.publisher.broker_refused,
        }
        observable = [e for e in self.scenario.spec.expectations if isinstance(e, OBSERVABLE)]
        scenario = dataclasses.replace(self.scenario,
                                       spec=self.scenario.spec.model_copy(update={"expectations": observable}))
        self.log.record("run.counters", {"messages": messages, "live": dataclasses.asdict(figures)})
        outcome = RunOutcome(scenario, self.scenario.spec.seed, self.log, labels, alerts, {},
                             messages, wall)
        return outcome, figures


def _shifted(label: Label, offset: float) -> Label:
    """The label in platform time (the twin's clock plus the offset fixed at the start)."""
    onset = None if label.onset is None else label.onset + offset
    return msgspec.structs.replace(label, injected_at=label.injected_at + offset, onset=onset)


def live_result(outcome: RunOutcome, figures: LiveFigures, adapter: Adapter, log_sha256: str) -> dict:
    """`build_result` of the live run, marked live, with what only a live run knows."""
    result = build_result(outcome, log_sha256)
    result["provenance"]["live"] = True
    result["provenance"]["adapter"] = adapter.source
    result["live"] = dataclasses.asdict(figures)
    return result
