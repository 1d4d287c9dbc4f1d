"""Scenario files: a site and a seed, loans, operations, injections and expectations.

Validated strictly; cross-references (lots, loans, devices, labels, rules, times beyond the
duration) are checked after the schema, each error naming the file, line and field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo

import pydantic

from cangtwin.platform.config_file import (
    InputError,
    Locator,
    Pair,
    StrictModel,
    Triple,
    parse_yaml_located,
    read_text,
)
from cangtwin.platform.rules.ruleset import RuleSet, load_ruleset
from cangtwin.twin.site import MultiSite, Site, load_any_site

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: object) -> object:
    """Accept seconds as a number, or '90s', '30m', '2h', '1d'."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. '90s', '30m', '2h', '1d')")
        return float(match[1]) * _UNITS[match[2]]
    return value


Seconds = Annotated[float, pydantic.BeforeValidator(_duration), pydantic.Field(ge=0)]


def _longer_than_zero(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0 s")
    return value


PositiveSeconds = Annotated[Seconds, pydantic.AfterValidator(_longer_than_zero)]


class Loan(StrictModel):
    id: str
    bank: str
    borrower: str
    amount_cny: float = pydantic.Field(gt=0)
    lots: list[str] = []
    bays: list[str] = []  # pledge every lot initially stored in these bays


class Release(StrictModel):
    kind: Literal["release"]
    at: Seconds
    loan: str
    lots: list[str] = pydantic.Field(min_length=1)


class Outbound(StrictModel):
    kind: Literal["outbound"]
    at: Seconds
    lots: list[str] = pydantic.Field(min_length=1)


class Inbound(StrictModel):
    kind: Literal["inbound"]
    at: Seconds
    commodity: str
    count: int = pydantic.Field(ge=1, le=4)
    bay: str


class RulesUpdate(StrictModel):
    """The bank puts an edited rule file in force (a bad file is refused and the old rules stay)."""

    kind: Literal["rules-update"]
    at: Seconds
    file: str


Operation = Annotated[Union[Release, Outbound, Inbound, RulesUpdate], pydantic.Field(discriminator="kind")]


class UnauthorizedOutbound(StrictModel):
    """Pledged lots leave with no release order: by a gate, or through a blind spot at `exit`."""

    kind: Literal["unauthorized-outbound"]
    id: str
    at: Seconds
    lots: list[str] = pydantic.Field(min_length=1)
    via: Literal["gate", "blind-spot"] = "gate"
    exit: Pair | None = None  # where the blind spot is, for via: blind-spot

    @pydantic.model_validator(mode="after")
    def _blind_spot_needs_an_exit(self) -> "UnauthorizedOutbound":
        if self.via == "blind-spot" and self.exit is None:
            raise ValueError("via 'blind-spot' needs exit: [x, y] of the gap in the fence")
        return self


class ForgedDevice(StrictModel):
    kind: Literal["forged-device"]
    id: str
    at: Seconds
    device: str
    mode: Literal["wrong-key", "unknown-id"] = "wrong-key"
    count: int = pydantic.Field(default=20, ge=1, le=100000)
    interval_s: float = pydantic.Field(default=1.0, gt=0)


class DuplicatePledge(StrictModel):
    """The borrower of `loan` pledges the same goods again, to `bank`, under a fresh receipt."""

    kind: Literal["duplicate-pledge"]
    id: str
    at: Seconds
    loan: str
    bank: str


class PledgeCopy(StrictModel):
    """One more pledge of a ring's goods: to `bank`, under a receipt of `warehouse` (by default
    the genuine receipt's), filed `after` the ring's `at`. Its id names its ground-truth label."""

    id: str
    bank: str
    warehouse: str | None = None
    after: Seconds = 0.0


class PledgeRing(StrictModel):
    """A Qingdao-style ring: the goods behind `loan`'s receipt pledged again to each bank in
    `copies`, each under a fresh receipt; a copy from another warehouse is a receipt that
    claims the same goods (same tags, weights, dimensions) under that warehouse's lot numbers."""

    kind: Literal["pledge-ring"]
    id: str
    at: Seconds
    loan: str
    copies: list[PledgeCopy] = pydantic.Field(min_length=1)


class EdgeCrash(StrictModel):
    """The edge process is killed at `at` and restarted `down_for` later from its durable outbox."""

    kind: Literal["edge-crash"]
    id: str
    at: Seconds
    down_for: Seconds
    warehouse: str | None = None  # whose edge, on a multi-warehouse site


class Substitution(StrictModel):
    """A pledged lot's goods are swapped for lighter ones of the same shape (or hollowed out)."""

    kind: Literal["substitution", "hollow-stack"]
    id: str
    at: Seconds
    lot: str
    mass_factor: float = pydantic.Field(gt=0, lt=1)


class CameraTamper(StrictModel):
    """A camera covered, replaying old frames, or turned to look at `look_at`."""

    kind: Literal["camera-tamper"]
    id: str
    at: Seconds
    camera: str
    mode: Literal["cover", "replay", "move"]
    look_at: Triple | None = None

    @pydantic.model_validator(mode="after")
    def _move_needs_a_target(self) -> "CameraTamper":
        if self.mode == "move" and self.look_at is None:
            raise ValueError("mode 'move' needs look_at: where the camera is turned to")
        return self


class DeviceFault(StrictModel):
    """device-failure (dies), clock-drift (clock jumps by offset_s), replay (count frames played
    back), scale-offset (a remote-control circuit adds offset_kg to the named weighbridge)."""

    kind: Literal["device-failure", "clock-drift", "replay", "scale-offset"]
    id: str
    at: Seconds
    device: str
    offset_s: float = 60.0
    count: int = pydantic.Field(default=20, ge=1, le=10000)
    offset_kg: float = -400.0


class UplinkOutage(StrictModel):
    kind: Literal["uplink-outage"]
    id: str
    at: Seconds
    duration: Seconds
    warehouse: str | None = None  # whose uplink, on a multi-warehouse site


class PriceCrash(StrictModel):
    kind: Literal["price-crash"]
    id: str
    at: Seconds
    commodity: str
    drop: float = pydantic.Field(gt=0, lt=1)  # 0.3 = the price falls 30 %


class PriceFeedSilent(StrictModel):
    kind: Literal["price-feed-silent"]
    id: str
    at: Seconds
    duration: Seconds


class PartialWheel(StrictModel):
    """The truck collecting `lots` stops short on `weighbridge` at its loaded weighing, its centre of
    mass `overhang_m` beyond the plate's edge (fraud/partial_wheel.py)."""

    kind: Literal["partial-wheel"]
    id: str
    at: Seconds
    weighbridge: str
    lots: list[str] = pydantic.Field(min_length=1)
    overhang_m: float = pydantic.Field(gt=0, le=6)


class PersonOnScale(StrictModel):
    """A body of `mass_kg` steps onto `weighbridge` `on_after_s` into the first weighing at or after
    `at`, and off again `stay_s` later (fraud/person_on_scale.py)."""

    kind: Literal["person-on-scale"]
    id: str
    at: Seconds
    weighbridge: str
    mass_kg: float = pydantic.Field(default=80.0, gt=0, le=1000)
    on_after_s: float = pydantic.Field(default=12.0, ge=0, le=30)
    stay_s: float = pydantic.Field(default=15.0, gt=0, le=30)


class TagCloned(StrictModel):
    """The goods of `leaves` go out wearing a clone of `clone_of`'s tag; `clone_of` stays in its bay."""

    kind: Literal["tag-cloned"]
    id: str
    at: Seconds
    leaves: str
    clone_of: str


class TagMoved(StrictModel):
    """The tags of pledged `lot` and released `swap_with` are swapped; `lot` then leaves as `swap_with`."""

    kind: Literal["tag-moved"]
    id: str
    at: Seconds
    lot: str
    swap_with: str


class LidarOccluded(StrictModel):
    """A board of side `size_m` is hung `below_m` under the LiDAR `lidar`."""

    kind: Literal["lidar-occluded"]
    id: str
    at: Seconds
    lidar: str
    size_m: float = pydantic.Field(default=1.0, gt=0, le=10)
    below_m: float = pydantic.Field(default=1.0, gt=0, le=20)


class LedgerEdit(StrictModel):
    """One byte of committed ledger entry `entry` is changed at rest; with `rehash` the forger also
    fixes the leaf hash and commit roots, so only the signed tree heads can tell."""

    kind: Literal["ledger-edit"]
    id: str
    at: Seconds
    entry: int = pydantic.Field(default=0, ge=0)
    rehash: bool = True


class EdgeDbEdit(StrictModel):
    """The edge is stopped at `at`, one unsent outbox row is altered, and it restarts `down_for` later."""

    kind: Literal["edge-db-edit"]
    id: str
    at: Seconds
    down_for: Seconds
    warehouse: str | None = None  # whose edge, on a multi-warehouse site


class LinkSpikes(StrictModel):
    """`links` drop `loss` of their messages and add `extra_latency_s` for `duration`."""

    kind: Literal["link-spikes"]
    id: str
    at: Seconds
    duration: Seconds
    loss: float = pydantic.Field(default=0.2, ge=0, lt=1)
    extra_latency_s: float = pydantic.Field(default=0.5, ge=0, le=600)
    links: list[Literal["devices", "uplink", "downlink"]] = pydantic.Field(default=["uplink", "downlink"], min_length=1)
    warehouse: str | None = None  # whose links, on a multi-warehouse site


class KeeperCollusion(StrictModel):
    """The keeper covers `cover_camera` (if named), marks `lots` released in the edge's local book
    (if `edit_edge_book`), and lets them out through the gate (fraud/colluding_keeper.py)."""

    kind: Literal["colluding-keeper"]
    id: str
    at: Seconds
    lots: list[str] = pydantic.Field(min_length=1)
    cover_camera: str | None = None
    edit_edge_book: bool = True


class OwnershipTransfer(StrictModel):
    """`from_owner` sells `lots` to `to_owner`: a transfer naming the goods (their receipt and
    fingerprint) is filed in the national registry (fraud/ownership_transfer.py)."""

    kind: Literal["ownership-transfer"]
    id: str
    at: Seconds
    lots: list[str] = pydantic.Field(min_length=1)
    from_owner: str = pydantic.Field(min_length=1)
    to_owner: str = pydantic.Field(min_length=1)

    @pydantic.model_validator(mode="after")
    def _two_parties(self) -> "OwnershipTransfer":
        if self.from_owner == self.to_owner:
            raise ValueError("from_owner and to_owner are the same party")
        return self


class ClimateFault(StrictModel):
    """The air of `zone` goes wrong at `at` and is put right `duration` later: an HVAC failure warms
    it by `magnitude` °C, a leak raises its humidity by `magnitude` %RH, each settling with the
    zone's time constant `tau_s` (fraud/climate_fault.py)."""

    kind: Literal["climate-fault"]
    id: str
    at: Seconds
    zone: str
    cause: Literal["hvac-failure", "leak"]
    magnitude: float = pydantic.Field(gt=0, le=60)
    duration: PositiveSeconds
    tau_s: float = pydantic.Field(default=600.0, gt=0, le=86400)


class LotsMoved(StrictModel):
    """A forklift driver moves `lots` out of their bays to bay `to_bay` or to the floor point `to`
    (e.g. in the yard), whatever the hour and with no release (fraud/lots_moved.py)."""

    kind: Literal["lots-moved"]
    id: str
    at: Seconds
    lots: list[str] = pydantic.Field(min_length=1, max_length=4)
    to_bay: str | None = None
    to: Pair | None = None

    @pydantic.model_validator(mode="after")
    def _one_destination(self) -> "LotsMoved":
        if (self.to_bay is None) == (self.to is None):
            raise ValueError("give exactly one destination: to_bay (a bay id) or to ([x, y] on the floor)")
        return self


class PriceSlide(StrictModel):
    """`commodity` slides `drop` (0.15 = 15 %) below its path, evenly in log price over `over`
    (fraud/market.py)."""

    kind: Literal["price-slide"]
    id: str
    at: Seconds
    commodity: str
    drop: float = pydantic.Field(gt=0, lt=1)
    over: PositiveSeconds


Injection = Annotated[
    Union[UnauthorizedOutbound, ForgedDevice, UplinkOutage, PriceCrash, PriceFeedSilent, DuplicatePledge, EdgeCrash,
          Substitution, CameraTamper, DeviceFault, PartialWheel, PersonOnScale, TagCloned, TagMoved, LidarOccluded,
          LedgerEdit, EdgeDbEdit, LinkSpikes, KeeperCollusion, PledgeRing, OwnershipTransfer, ClimateFault, LotsMoved,
          PriceSlide],
    pydantic.Field(discriminator="kind"),
]


class Detect(StrictModel):
    """Rule `rule` catches label `label` within `success_s` (SUCCESS) or `acceptable_s` (ACCEPTABLE)."""

    kind: Literal["detect"]
    label: str
    rule: str
    view: Literal["edge", "bank"] = "bank"
    success_s: float = pydantic.Field(gt=0)
    acceptable_s: float = pydantic.Field(gt=0)


class NoFalseAlarms(StrictModel):
    kind: Literal["no-false-alarms"]
    acceptable: int = pydantic.Field(default=0, ge=0)


class Rejections(StrictModel):
    """At least `min` frames rejected for `reason` (forged or replayed traffic was refused)."""

    kind: Literal["rejections"]
    reason: Literal[
        "truncated", "oversized", "malformed", "unknown-device", "bad-signature",
        "replayed-seq", "clock-skew", "unknown-kind", "bad-payload",
    ]
    min: int = pydantic.Field(ge=1)


class NoAlerts(StrictModel):
    """No alert at all from `rule` (an honest near-miss, such as an authorized release)."""

    kind: Literal["no-alerts"]
    rule: str


class ZeroLoss(StrictModel):
    """Every record the edge queued reached the cloud exactly once, and nothing was evicted."""

    kind: Literal["zero-loss"]


class LedgerVerifies(StrictModel):
    """The run's evidence ledger audits clean against its signed tree heads, and every alert's
    evidence package verifies against the parties' keys: what a bank would check offline."""

    kind: Literal["ledger-verifies"]


class Throughput(StrictModel):
    """Wall-clock floors: device messages per wall second and simulated seconds per wall second.

    Wall-clock figures depend on the machine, so this criterion is kept under the result's
    `wall` section, apart from the deterministic ones; it still counts towards the status."""

    kind: Literal["throughput"]
    min_messages_per_s: float | None = pydantic.Field(default=None, gt=0)
    min_sim_speed_x: float | None = pydantic.Field(default=None, gt=0)

    @pydantic.model_validator(mode="after")
    def _some_floor(self) -> "Throughput":
        if self.min_messages_per_s is None and self.min_sim_speed_x is None:
            raise ValueError("name a floor: min_messages_per_s, min_sim_speed_x or both")
        return self


Expectation = Annotated[
    Union[Detect, NoFalseAlarms, Rejections, NoAlerts, ZeroLoss, LedgerVerifies, Throughput],
    pydantic.Field(discriminator="kind"),
]


class EdgeKnobs(StrictModel):
    """The store-and-forward knobs of the warehouse edge (as in Greengrass stream manager)."""

    outbox_max_bytes: int = pydantic.Field(default=512 * 1024 * 1024, ge=4096)
    outbox_segment_bytes: int = pydantic.Field(default=4 * 1024 * 1024, ge=1024)
    outbox_ttl_s: Seconds | None = None
    outbox_when_full: Literal["reject", "overwrite_oldest"] = "overwrite_oldest"

    @pydantic.model_validator(mode="after")
    def _segment_fits(self) -> "EdgeKnobs":
        if self.outbox_segment_bytes > self.outbox_max_bytes:
            raise ValueError("outbox_segment_bytes must not exceed outbox_max_bytes")
        return self


class TwinOptions(StrictModel):
    """What the twin simulates. LiDAR scans are on by default (the pinned rate of the site)."""

    lidar_scans: bool = True


class ScenarioFile(StrictModel):
    scenario: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    site: str
    seed: int = pydantic.Field(ge=0, lt=2**63)
    start: str  # local time at the site, ISO 8601, e.g. "2026-03-02T09:00"
    duration: Seconds
    rules: str = "default"
    edge: EdgeKnobs = EdgeKnobs()
    twin: TwinOptions = TwinOptions()
    loans: list[Loan] = []
    operations: list[Operation] = []
    injections: list[Injection] = []
    expectations: list[Expectation] = []


@dataclass(frozen=True)
class Scenario:
    spec: ScenarioFile
    source: str
    sha256: str
    site: Site | MultiSite
    ruleset: RuleSet
    start_epoch: float

    @property
    def end_epoch(self) -> float:
        return self.start_epoch + self.spec.duration


def rules_file(scenario: "Scenario", name: str) -> Path:
    """Where a rule file named in a scenario lives (relative to the scenario file)."""
    return Path(_relative(Path(scenario.source), name))


def _relative(base: Path, name: str) -> str:
    """Site and rule names are reference names, or paths relative to the scenario file."""
    if name.endswith((".yaml", ".yml")) and not Path(name).is_absolute():
        return str(base.parent / name)
    return name


def load_scenario(path: str | Path, seed: int | None = None) -> Scenario:
    path = Path(path)
    text = read_text(path)
    spec, locator = parse_yaml_located(text, ScenarioFile, str(path))
    if seed is not None:
        spec = spec.model_copy(update={"seed": seed})
    try:
        site = load_any_site(_relative(path, spec.site))
    except InputError as err:
        if err.line is None:  # no such reference site or file: blame the scenario's field
            what = f"unknown site {spec.site!r}" if err.field == "site" else repr(spec.site)
            raise locator.error(("site",), f"{what}: {err.message}") from None
        raise
    rules = None if spec.rules == "default" else _relative(path, spec.rules)
    try:
        ruleset = load_ruleset(rules)
    except InputError as err:
        if err.line is None:
            raise locator.error(("rules",), f"{spec.rules!r}: {err.message}") from None
        raise
    start = _start_epoch(spec, site, locator)
    if isinstance(site, MultiSite):
        first = site.members[0].spec.bays[0].id if site.members[0].spec.bays else f"{site.members[0].id}.B01"
        _check_references(spec, site.union(), ruleset, locator, lot_hint=f"{first}-01")
        _check_warehouses(spec, site, locator)
    else:
        _check_references(spec, site, ruleset, locator)
        _check_no_warehouses(spec, site, locator)
    return Scenario(spec, str(path), hashlib.sha256(text.encode()).hexdigest(), site, ruleset, start)


def _start_epoch(spec: ScenarioFile, site: Site | MultiSite, locator: Locator) -> float:
    try:
        local = datetime.fromisoformat(spec.start)
    except ValueError:
        raise locator.error(("start",), f"not an ISO 8601 time: {spec.start!r}") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=ZoneInfo(site.spec.timezone))
    return local.timestamp()


def _check_new_injection(inj, i: int, site: Site, locator: Locator, unknown_lots, lot_hint: str) -> None:
    """References of the weighbridge, tag, LiDAR and keeper injections."""
    typed = {d.id: d.type for d in site.spec.devices}
    if isinstance(inj, (PartialWheel, PersonOnScale)) and inj.weighbridge not in {w.id for w in site.spec.weighbridges}:
        raise locator.error(("injections", i, "weighbridge"), f"no weighbridge {inj.weighbridge!r} on site {site.id}")
    if isinstance(inj, (PartialWheel, KeeperCollusion)):
        unknown_lots(("injections", i, "lots"), inj.lots)
    lots = {f"{bay.id}-{n:02d}" for bay in site.spec.bays for n in range(1, bay.initial_lots + 1)}
    named = {"tag-cloned": ("leaves", "clone_of"), "tag-moved": ("lot", "swap_with")}.get(inj.kind, ())
    for name in named:
        if getattr(inj, name) not in lots:
            raise locator.error(("injections", i, name), f"unknown lot {getattr(inj, name)!r} (lots are named like {lot_hint})")
    if isinstance(inj, LidarOccluded) and typed.get(inj.lidar) != "lidar":
        raise locator.error(("injections", i, "lidar"), f"no LiDAR {inj.lidar!r} on site {site.id}")
    if isinstance(inj, KeeperCollusion) and inj.cover_camera is not None and typed.get(inj.cover_camera) != "camera":
        raise locator.error(("injections", i, "cover_camera"), f"no camera {inj.cover_camera!r} on site {site.id}")
    _check_coverage_injection(inj, i, site, locator, unknown_lots)


def _check_coverage_injection(inj, i: int, site: Site, locator: Locator, unknown_lots) -> None:
    """References of the ownership, climate, lot-move and price-slide injections."""
    if isinstance(inj, (OwnershipTransfer, LotsMoved)):
        unknown_lots(("injections", i, "lots"), inj.lots)
    if isinstance(inj, ClimateFault) and inj.zone not in site.spec.zones:
        raise locator.error(("injections", i, "zone"), f"no zone {inj.zone!r} on site {site.id} "
                                                      f"(zones: {', '.join(sorted(site.spec.zones))})")
    if isinstance(inj, LotsMoved) and inj.to_bay is not None and inj.to_bay not in {b.id for b in site.spec.bays}:
        raise locator.error(("injections", i, "to_bay"), f"unknown bay {inj.to_bay!r}")
    if isinstance(inj, LotsMoved) and inj.to is not None:
        building = site.spec.building
        if not (0 <= inj.to[0] <= building.width_m and 0 <= inj.to[1] <= building.depth_m):
            raise locator.error(("injections", i, "to"), f"[{inj.to[0]:g}, {inj.to[1]:g}] is outside the building "
                                                        f"({building.width_m:g} × {building.depth_m:g} m)")
    if isinstance(inj, PriceSlide) and inj.commodity not in site.spec.commodities:
        raise locator.error(("injections", i, "commodity"), f"unknown commodity {inj.commodity!r}")


def _check_references(spec: ScenarioFile, site: Site, ruleset: RuleSet, locator: Locator,
                      lot_hint: str = "B01-01") -> None:
    source = Path(locator.source)
    lots = {f"{bay.id}-{n:02d}" for bay in site.spec.bays for n in range(1, bay.initial_lots + 1)}
    bays = {bay.id for bay in site.spec.bays}
    devices = {d.id for d in site.spec.devices}
    rules = {entry.id for entry in ruleset.entries}
    loans = {loan.id for loan in spec.loans}

    def unknown_lots(where: tuple, names: list[str]) -> None:
        for i, lot in enumerate(names):
            if lot not in lots:
                raise locator.error(where + (i,), f"unknown lot {lot!r} (lots are named like {lot_hint})")

    for i, loan in enumerate(spec.loans):
        unknown_lots(("loans", i, "lots"), loan.lots)
        for j, bay in enumerate(loan.bays):
            if bay not in bays:
                raise locator.error(("loans", i, "bays", j), f"unknown bay {bay!r}")
    for i, op in enumerate(spec.operations):
        if op.at > spec.duration:
            raise locator.error(("operations", i, "at"), f"{op.at:g} s is beyond the duration ({spec.duration:g} s)")
        if isinstance(op, (Release, Outbound)):
            unknown_lots(("operations", i, "lots"), op.lots)
        if isinstance(op, Release) and op.loan not in loans:
            raise locator.error(("operations", i, "loan"), f"unknown loan {op.loan!r}")
        if isinstance(op, RulesUpdate) and not Path(_relative(source, op.file)).is_file():
            raise locator.error(("operations", i, "file"), f"no rule file {op.file!r} next to the scenario")
        if isinstance(op, Inbound):
            if op.bay not in bays:
                raise locator.error(("operations", i, "bay"), f"unknown bay {op.bay!r}")
            if op.commodity not in site.spec.commodities:
                raise locator.error(("operations", i, "commodity"), f"unknown commodity {op.commodity!r}")
    labels = set()
    for i, inj in enumerate(spec.injections):
        if inj.id in labels:
            raise locator.error(("injections", i, "id"), f"duplicate injection id {inj.id!r}")
        labels.add(inj.id)
        if isinstance(inj, PriceSlide):  # its second line crossed is a label of its own
            labels.add(f"{inj.id}-margin-call")
        if isinstance(inj, PledgeRing):
            _check_ring(inj, i, spec, labels, locator)
        if inj.at > spec.duration:
            raise locator.error(("injections", i, "at"), f"{inj.at:g} s is beyond the duration ({spec.duration:g} s)")
        if isinstance(inj, UnauthorizedOutbound):
            unknown_lots(("injections", i, "lots"), inj.lots)
        if isinstance(inj, DeviceFault):
            kinds = {d.id: d.type for d in site.spec.devices}
            if inj.device not in kinds:
                raise locator.error(("injections", i, "device"), f"unknown device {inj.device!r}")
            if inj.kind == "scale-offset" and kinds[inj.device] != "weighbridge":
                raise locator.error(("injections", i, "device"), f"{inj.device} is a {kinds[inj.device]}, not a weighbridge")
        if isinstance(inj, CameraTamper) and inj.camera not in {d.id for d in site.spec.devices if d.type == "camera"}:
            raise locator.error(("injections", i, "camera"), f"no camera {inj.camera!r} on site {site.id}")
        if isinstance(inj, Substitution):
            unknown_lots(("injections", i), [inj.lot])
        if isinstance(inj, DuplicatePledge) and inj.loan not in loans:
            raise locator.error(("injections", i, "loan"), f"unknown loan {inj.loan!r}")
        if isinstance(inj, PriceCrash) and inj.commodity not in site.spec.commodities:
            raise locator.error(("injections", i, "commodity"), f"unknown commodity {inj.commodity!r}")
        if isinstance(inj, ForgedDevice) and inj.mode == "wrong-key" and inj.device not in devices:
            raise locator.error(("injections", i, "device"), f"unknown device {inj.device!r}")
        _check_new_injection(inj, i, site, locator, unknown_lots, lot_hint)
    for i, exp in enumerate(spec.expectations):
        if isinstance(exp, (Detect, NoAlerts)) and exp.rule not in rules:
            raise locator.error(("expectations", i, "rule"), f"rule {exp.rule!r} is not in rule set {ruleset.name}")
        if isinstance(exp, Detect):
            if exp.label not in labels:
                raise locator.error(("expectations", i, "label"), f"no injection with id {exp.label!r}")
            if exp.acceptable_s < exp.success_s:
                raise locator.error(("expectations", i, "acceptable_s"), "must be at least success_s")


def _check_ring(ring: PledgeRing, i: int, spec: ScenarioFile, labels: set[str], locator: Locator) -> None:
    """A ring's loan exists, its copies go to other banks, and each copy's id is a fresh label."""
    loan = next((loan for loan in spec.loans if loan.id == ring.loan), None)
    if loan is None:
        raise locator.error(("injections", i, "loan"), f"unknown loan {ring.loan!r}")
    banks = {loan.bank}
    for j, copy in enumerate(ring.copies):
        where = ("injections", i, "copies", j)
        if copy.id in labels:
            raise locator.error(where + ("id",), f"duplicate injection id {copy.id!r}")
        labels.add(copy.id)
        if copy.bank in banks:
            raise locator.error(where + ("bank",), f"bank {copy.bank!r} already holds these goods in this ring")
        banks.add(copy.bank)
        if ring.at + copy.after > spec.duration:
            raise locator.error(where + ("after",), f"filed at {ring.at + copy.after:g} s, beyond the duration "
                                                    f"({spec.duration:g} s)")


def _check_no_warehouses(spec: ScenarioFile, site: Site, locator: Locator) -> None:
    """`warehouse:` on a one-warehouse site is a mistake (a scenario written for another site)."""
    for i, inj in enumerate(spec.injections):
        named = [(("injections", i, "warehouse"), getattr(inj, "warehouse", None))]
        named += [(("injections", i, "copies", j, "warehouse"), c.warehouse) for j, c in enumerate(getattr(inj, "copies", ()))]
        for where, warehouse in named:
            if warehouse is not None:
                raise locator.error(where, f"site {site.id} is one warehouse; warehouse: is for multi-warehouse sites")


_NAMES_A_WAREHOUSE = ("lots", "lot", "leaves", "clone_of", "swap_with", "device", "camera", "cover_camera",
                      "weighbridge", "lidar", "bay", "to_bay")


def _check_one_warehouse(item, where: tuple, ids: list[str], locator: Locator) -> None:
    """An operation or injection acts at one warehouse: every lot, device or scale it names is there."""
    seen: dict[str, tuple] = {}
    for name in _NAMES_A_WAREHOUSE:
        value = getattr(item, name, None)
        values = [] if value is None else [value] if isinstance(value, str) else list(value)
        for j, v in enumerate(values):
            at = where + ((name, j) if isinstance(value, list) else (name,))
            warehouse = v.split(".", 1)[0] if "." in v else None
            if warehouse not in ids:
                raise locator.error(at, f"{v!r} names no warehouse (prefix it with one of {', '.join(ids)})")
            seen.setdefault(warehouse, at)
    if getattr(item, "warehouse", None) is not None:
        seen.setdefault(item.warehouse, where + ("warehouse",))
    if len(seen) > 1:
        at = list(seen.values())[-1]
        raise locator.error(at, f"acts at {' and '.join(seen)}; an operation or injection acts at one warehouse")


def _check_warehouses(spec: ScenarioFile, site: MultiSite, locator: Locator) -> None:
    """On a multi-warehouse site, each operation and injection acts at one warehouse, edge and link
    faults name theirs, and any named one exists."""
    ids = [w.id for w in site.spec.warehouses]
    known = f"one of {', '.join(ids)}"
    for i, op in enumerate(spec.operations):
        if isinstance(op, (Outbound, Inbound)):
            _check_one_warehouse(op, ("operations", i), ids, locator)
    for i, inj in enumerate(spec.injections):
        _check_one_warehouse(inj, ("injections", i), ids, locator)
        if isinstance(inj, (EdgeCrash, EdgeDbEdit, UplinkOutage, LinkSpikes)):
            if inj.warehouse is None:
                raise locator.error(("injections", i), f"{inj.kind} on a multi-warehouse site needs warehouse: ({known})")
            if inj.warehouse not in ids:
                raise locator.error(("injections", i, "warehouse"), f"unknown warehouse {inj.warehouse!r} ({known})")
        if isinstance(inj, PledgeRing):
            for j, copy in enumerate(inj.copies):
                if copy.warehouse is not None and copy.warehouse not in ids:
                    raise locator.error(("injections", i, "copies", j, "warehouse"),
                                        f"unknown warehouse {copy.warehouse!r} ({known})")
