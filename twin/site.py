"""Site files: the layout of one warehouse (zones, bays, gates, scales, devices, goods).

Sites are user input, validated strictly; geometry that cannot be built (overlapping bays, a
device outside the building, goods heavier than the scale) is refused with the field named.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydantic

from cangtwin.platform.config_file import InputError, Locator, Pair, StrictModel, Triple, parse_yaml_located, read_text
from cangtwin.platform.site_geometry import Rect, WorkingHours, known_timezone

Point2 = Pair
Point3 = Triple
DeviceType = Literal["weighbridge", "rfid-reader", "gate-sensor", "positioning-tag", "climate-sensor", "camera", "lidar"]


class Building(StrictModel):
    width_m: float = pydantic.Field(gt=0, le=2000)
    depth_m: float = pydantic.Field(gt=0, le=2000)
    height_m: float = pydantic.Field(gt=0, le=100)


class Commodity(StrictModel):
    """A class of goods. Coils are cylinders; the rest are boxes (bundles, bales on pallets)."""

    name_zh: str
    shape: Literal["coil", "box"]
    mass_kg: Pair
    bulk_density_kg_m3: float = pydantic.Field(gt=0, le=20000)
    size_m: Point3 | None = None  # box footprint x, y and height; coils size from mass
    coil_width_m: float | None = None
    coil_bore_m: float | None = None
    value_cny_per_t: float = pydantic.Field(gt=0)
    temperature_c: Pair
    humidity_pct: Pair


class Bay(StrictModel):
    id: str
    zone: str
    rect: Rect
    commodity: str
    initial_lots: int = pydantic.Field(ge=0, le=200)


class Gate(StrictModel):
    id: str
    position: Point2
    outside: Point2  # where vehicles wait outside the gate


class Weighbridge(StrictModel):
    id: str
    rect: Rect
    capacity_kg: float = pydantic.Field(gt=0, le=300000)
    division_kg: float = pydantic.Field(gt=0, le=1000)


class Dock(StrictModel):
    id: str
    position: Point2


class Forklift(StrictModel):
    id: str
    home: Point2
    speed_mps: float = pydantic.Field(gt=0, le=10)
    capacity_kg: float = pydantic.Field(gt=0)
    handling_s: float = pydantic.Field(ge=0, le=600)


class Device(StrictModel):
    id: str
    type: DeviceType
    position: Point3
    gate: str | None = None
    weighbridge: str | None = None
    forklift: str | None = None
    look_at: Point3 | None = None
    bays: list[str] = []


class Rates(StrictModel):
    """Sensor rates; the reference sites pin them and every target assumes these values."""

    heartbeat_s: float = pydantic.Field(gt=0)
    climate_s: float = pydantic.Field(gt=0)
    positioning_hz: float = pydantic.Field(gt=0)
    lidar_scan_s: float = pydantic.Field(gt=0)
    camera_analysis_s: float = pydantic.Field(gt=0)
    scale_hz: float = pydantic.Field(gt=0)


class Truck(StrictModel):
    tare_kg: float = pydantic.Field(gt=0)
    speed_mps: float = pydantic.Field(gt=0, le=30)
    bed_m: Point3  # length, width, deck height


class SiteFile(StrictModel):
    site: str
    name: dict[Literal["en", "zh"], str]
    timezone: str
    working_hours: WorkingHours
    building: Building
    zones: dict[str, Rect]
    bays: list[Bay]
    gates: list[Gate]
    weighbridges: list[Weighbridge]
    docks: list[Dock]
    forklifts: list[Forklift]
    truck: Truck
    commodities: dict[str, Commodity]
    devices: list[Device]
    rates: Rates

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_timezone(value)


@dataclass(frozen=True)
class Site:
    """A validated site and where it came from (its hash goes into every result)."""

    spec: SiteFile
    source: str
    sha256: str

    @property
    def id(self) -> str:
        return self.spec.site


def _bay_capacity(bay: Bay, commodity: Commodity) -> int:
    from cangtwin.twin.world import slot_positions  # the world module imports this one

    return len(slot_positions(bay, commodity))


def _check_geometry(spec: SiteFile, locator: Locator) -> None:
    def fail(*path_and_message) -> None:
        *path, message = path_and_message
        raise locator.error(tuple(path), message)

    inside = Rect(x0=0, y0=0, x1=spec.building.width_m, y1=spec.building.depth_m)
    for name, zone in spec.zones.items():
        if not inside.contains(zone.x0, zone.y0) or not inside.contains(zone.x1, zone.y1):
            fail("zones", name, "zone extends outside the building")
    ids: set[str] = set()
    for i, bay in enumerate(spec.bays):
        if bay.id in ids:
            fail("bays", i, "id", f"duplicate bay id {bay.id!r}")
        ids.add(bay.id)
        if bay.zone not in spec.zones:
            fail("bays", i, "zone", f"unknown zone {bay.zone!r}")
        if bay.commodity not in spec.commodities:
            fail("bays", i, "commodity", f"unknown commodity {bay.commodity!r}")
        for j, other in enumerate(spec.bays[:i]):
            if bay.rect.overlaps(other.rect):
                fail("bays", i, "rect", f"bay {bay.id} overlaps bay {other.id} (bays[{j}])")
        capacity = _bay_capacity(bay, spec.commodities[bay.commodity])
        if bay.initial_lots > capacity:
            fail("bays", i, "initial_lots",
                 f"bay {bay.id} holds at most {capacity} lots of {bay.commodity}, not {bay.initial_lots}")
    gates = {g.id for g in spec.gates}
    scales = {w.id: w for w in spec.weighbridges}
    forklifts = {f.id for f in spec.forklifts}
    device_ids: set[str] = set()
    for i, device in enumerate(spec.devices):
        if device.id in device_ids:
            fail("devices", i, "id", f"duplicate device id {device.id!r}")
        device_ids.add(device.id)
        x, y, z = device.position
        if not inside.contains(x, y) or not 0 <= z <= spec.building.height_m:
            fail("devices", i, "position", f"device {device.id} is mounted outside the building")
        needs = {"rfid-reader": "gate", "gate-sensor": "gate", "weighbridge": "weighbridge", "positioning-tag": "forklift"}
        ref = needs.get(device.type)
        known = {"gate": gates, "weighbridge": scales.keys(), "forklift": forklifts}
        if ref and getattr(device, ref) not in known[ref]:
            fail("devices", i, ref, f"{device.type} {device.id} must name a known {ref}")
        if device.type == "camera" and (device.look_at is None or tuple(device.look_at) == tuple(device.position)):
            fail("devices", i, "look_at", f"camera {device.id} needs a look_at point other than its position")
        for bay in device.bays:
            if bay not in ids:
                fail("devices", i, "bays", f"unknown bay {bay!r}")
    for name, commodity in spec.commodities.items():
        lo, hi = commodity.mass_kg
        if not 0 < lo <= hi:
            fail("commodities", name, "mass_kg", "needs 0 < min <= max")
        if commodity.shape == "box" and commodity.size_m is None:
            fail("commodities", name, "size_m", "a box commodity needs its size")
        if commodity.shape == "coil" and (commodity.coil_width_m is None or commodity.coil_bore_m is None):
            fail("commodities", name, "a coil commodity needs coil_width_m and coil_bore_m")
        for scale in spec.weighbridges:
            if hi * 2 + spec.truck.tare_kg > scale.capacity_kg:
                fail("commodities", name, "mass_kg", f"two lots on a truck exceed weighbridge {scale.id}'s capacity")


class WarehouseEntry(StrictModel):
    """One warehouse of a multi-warehouse site: its id, and the site file it is built from."""

    id: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # no dots: it prefixes every name there
    site: str  # a reference site name (`medium`) or a path relative to this file


class MultiSiteFile(StrictModel):
    """Several warehouses under one cloud (brief §4 `multi`). Each keeps its own time zone and
    hours; `timezone` is the one scenario start times are read in."""

    site: str
    name: dict[Literal["en", "zh"], str]
    timezone: str
    warehouses: list[WarehouseEntry] = pydantic.Field(min_length=2)
    _commodities: dict[str, Commodity] = pydantic.PrivateAttr(default_factory=dict)

    @property
    def commodities(self) -> dict[str, Commodity]:
        """The goods classes of all its warehouses (filled in by the loader), as a site's are:
        value and price code reads them by name, which is one name for the whole run."""
        return self._commodities

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_timezone(value)


@dataclass(frozen=True)
class MultiSite:
    """A validated multi-warehouse site. `members` are the warehouses' sites with every name
    there (bays, zones, gates, scales, docks, forklifts, devices) prefixed `<warehouse id>.`,
    and the site id set to the warehouse id; lots and tags follow from the bay names."""

    spec: MultiSiteFile
    source: str
    sha256: str  # of this file and, in order, every member's site file
    members: tuple[Site, ...]

    @property
    def id(self) -> str:
        return self.spec.site

    def union(self) -> Site:
        """All warehouses' (namespaced) bays, devices, scales and goods in one unvalidated view,
        for checking the references of a scenario."""
        specs = [m.spec for m in self.members]
        view = SiteFile.model_construct(
            site=self.id, timezone=self.spec.timezone,
            zones={k: v for s in specs for k, v in s.zones.items()},
            bays=[b for s in specs for b in s.bays], gates=[g for s in specs for g in s.gates],
            weighbridges=[w for s in specs for w in s.weighbridges], docks=[d for s in specs for d in s.docks],
            forklifts=[f for s in specs for f in s.forklifts], devices=[d for s in specs for d in s.devices],
            commodities={k: v for s in specs for k, v in s.commodities.items()},
        )
        return Site(view, self.source, self.sha256)


def namespaced(spec: SiteFile, warehouse: str) -> SiteFile:
    """`spec` as warehouse `warehouse` of a multi-warehouse site: its names prefixed `warehouse.`."""
    p = f"{warehouse}."
    data = spec.model_dump()
    data["site"] = warehouse
    data["zones"] = {p + name: rect for name, rect in data["zones"].items()}
    for bay in data["bays"]:
        bay["id"], bay["zone"] = p + bay["id"], p + bay["zone"]
    for key in ("gates", "weighbridges", "docks", "forklifts"):
        for item in data[key]:
            item["id"] = p + item["id"]
    for device in data["devices"]:
        device["id"] = p + device["id"]
        for ref in ("gate", "weighbridge", "forklift"):
            if device[ref] is not None:
                device[ref] = p + device[ref]
        device["bays"] = [p + bay for bay in device["bays"]]
    return SiteFile.model_validate(data, strict=False)


def reference_site_path(name: str) -> Path:
    return Path(__file__).parent / "sites" / f"{name}.yaml"


def _site_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = reference_site_path(str(name_or_path))
        if not path.exists():
            raise InputError(str(name_or_path), None, "site", "no such reference site and not a .yaml path")
    return path


def _is_multi(text: str) -> bool:
    return re.search(r"^warehouses\s*:", text, re.MULTILINE) is not None


def load_site(name_or_path: str | Path) -> Site:
    """Load a reference site by name (`small`) or a site file by path."""
    path = _site_path(name_or_path)
    text = read_text(path)
    if _is_multi(text):
        raise InputError(str(path), None, "warehouses",
                         "a multi-warehouse site: it can be run in a scenario, not loaded as one warehouse")
    spec, locator = parse_yaml_located(text, SiteFile, str(path))
    _check_geometry(spec, locator)
    return Site(spec, str(path), hashlib.sha256(text.encode()).hexdigest())


def load_any_site(name_or_path: str | Path) -> Site | MultiSite:
    """A one-warehouse site, or a multi-warehouse site (a file with `warehouses:`)."""
    path = _site_path(name_or_path)
    text = read_text(path)
    if not _is_multi(text):
        return load_site(path)
    spec, locator = parse_yaml_located(text, MultiSiteFile, str(path))
    members, seen, loaded = [], {}, {}
    for i, entry in enumerate(spec.warehouses):
        if entry.id in seen:
            raise locator.error(("warehouses", i, "id"), f"duplicate warehouse id {entry.id!r} (warehouses[{seen[entry.id]}])")
        seen[entry.id] = i
        name = entry.site
        if name.endswith((".yaml", ".yml")) and not Path(name).is_absolute():
            name = str(path.parent / name)
        try:
            member = loaded[name] if name in loaded else loaded.setdefault(name, load_site(name))
        except InputError as err:
            if err.line is None:  # no such site, or a multi-warehouse one: blame this entry
                raise locator.error(("warehouses", i, "site"), f"{entry.site!r}: {err.message}") from None
            raise
        for name, commodity in member.spec.commodities.items():
            if spec.commodities.setdefault(name, commodity) != commodity:
                raise locator.error(("warehouses", i, "site"), f"commodity {name!r} is defined differently at "
                                                               "another warehouse; goods names are shared by the run")
        members.append(Site(namespaced(member.spec, entry.id), member.source, member.sha256))
    digest = hashlib.sha256(text.encode())
    for member in members:
        digest.update(member.sha256.encode())
    return MultiSite(spec, str(path), digest.hexdigest(), tuple(members))
