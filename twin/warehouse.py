"""Ground truth of one warehouse: Mesa agents whose behaviour runs as SimPy processes.

Trucks arrive, pass a gate, queue for and stand on a weighbridge, and are (un)loaded at a
dock by forklifts that carry lots between the dock and the bays. Every move changes the
pybullet world; devices learn of it only through `Signals` and by observing that world.

Where a site has several gates, weighbridges and docks, the choices are deterministic (same
seed, same choices) and draw no random numbers, so a site with one of each behaves as before:
visits take the gates in turn and leave by the gate they came in by; a truck queues for the
least busy weighbridge (the one nearer its gate among equals); leaving the weighbridge it is
sent to the dock with the shortest queue (a free one if any, the first in the site file among
equals).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

import mesa
import simpy

from cangtwin.twin.climate import ZoneClimate
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import Bay, Dock, Gate, Site, Weighbridge
from cangtwin.twin.world import PhysicalWorld, Shape, shape_for, slot_positions

TruthLog = Callable[[str, dict], None]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
GATE_SPEED_MPS = 2.0
TRUCK_LENGTH_M = 16.0
WEIGH_DWELL_S = 40.0


@dataclass
class LotTruth:
    """What a lot really is and where it really is."""

    id: str
    tag: str
    commodity: str
    mass_kg: float
    shape: Shape
    body: int
    bay: str | None
    location: str  # "bay:B01", "truck:T0001", "floor:70.0,8.0", "gone"


@dataclass
class Signals:
    """Callbacks through which devices notice the world (they then observe it themselves)."""

    gate_pass: list[Callable[[str, str, list[str], float, float], None]] = field(default_factory=list)
    plate: list[Callable[[str, bool], None]] = field(default_factory=list)
    forklift_move: list[Callable[[str, tuple, tuple, float, float], None]] = field(default_factory=list)


class Forklift(mesa.Agent):
    def __init__(self, model: "WarehouseModel", spec) -> None:
        super().__init__(model)
        self.name = spec.id
        self.spec = spec
        self.position: tuple[float, float] = tuple(spec.home)
        self.carrying: str | None = None
        self.moves = 0


class Truck(mesa.Agent):
    def __init__(self, model: "WarehouseModel", name: str, body: int, gate: Gate) -> None:
        super().__init__(model)
        self.name = name
        self.body = body
        self.gate = gate  # in and out by the same gate
        self.dock: Dock | None = None  # assigned as it leaves the weighbridge on the way in
        self.cargo: list[str] = []
        self.where = "outside"


class WarehouseModel(mesa.Model):
    """Mesa holds the agents and their data collection; SimPy drives when they act."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.stored = 0
        self.datacollector = mesa.DataCollector(
            model_reporters={
                "lots_stored": lambda m: m.stored,
                "trucks_on_site": lambda m: sum(1 for a in m.agents_by_type.get(Truck, []) if a.where != "outside"),
                "forklifts_busy": lambda m: sum(1 for a in m.agents_by_type.get(Forklift, []) if a.carrying),
            }
        )


def _manhattan(a: tuple[float, float], b: tuple[float, float]) -> float:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _busy(resource: simpy.Resource) -> int:
    """Vehicles on it or queued for it."""
    return resource.count + len(resource.queue)


class Warehouse:
    def __init__(self, env: simpy.Environment, site: Site, world: PhysicalWorld, streams: RandomStreams, log: TruthLog,
                 id_prefix: str = ""):
        """`id_prefix` (e.g. `m01.`) names this warehouse's trucks and arriving lots apart from
        those of the other warehouses of a multi-warehouse site; the site's own names carry it already."""
        self.env = env
        self.id_prefix = id_prefix
        self.site = site
        self.spec = site.spec
        self.world = world
        self.streams = streams
        self.log = log
        self.signals = Signals()
        self.model = WarehouseModel(seed=streams.seed)
        self.lots: dict[str, LotTruth] = {}
        self.bay_slots: dict[str, list[str | None]] = {}
        self.forklifts = simpy.Store(env)
        for spec in self.spec.forklifts:
            self.forklifts.put(Forklift(self.model, spec))
        self.scales = {w.id: simpy.Resource(env, capacity=1) for w in self.spec.weighbridges}
        self.on_plate: dict[str, str | None] = {w.id: None for w in self.spec.weighbridges}  # scale → truck
        self.docks = {d.id: simpy.Resource(env, capacity=1) for d in self.spec.docks}
        self._trucks = 0
        self.climate = ZoneClimate(self.spec.zones)
        self._stock_initial_lots()

    # --- stock ---------------------------------------------------------------------------------
    def _slot_positions(self, bay: Bay) -> list[tuple[float, float, float]]:
        return slot_positions(bay, self.spec.commodities[bay.commodity])

    def _stock_initial_lots(self) -> None:
        rng = self.streams.get("twin.stock")
        for bay in self.spec.bays:
            slots = self._slot_positions(bay)
            self.bay_slots[bay.id] = [None] * len(slots)
            commodity = self.spec.commodities[bay.commodity]
            for n in range(1, bay.initial_lots + 1):
                lot_id = f"{bay.id}-{n:02d}"
                mass = round(float(rng.uniform(*commodity.mass_kg)), 1)
                self._create_lot(lot_id, bay.commodity, mass, bay.id)
        self.world.settle(0.5)

    def _create_lot(self, lot_id: str, commodity_name: str, mass_kg: float, bay_id: str) -> LotTruth:
        commodity = self.spec.commodities[commodity_name]
        shape = shape_for(commodity, mass_kg)
        slot = self._free_slot(bay_id)
        body = self.world.add_goods(shape, mass_kg, self._slot_position(bay_id, slot))
        lot = LotTruth(lot_id, f"EPC-{lot_id}", commodity_name, mass_kg, shape, body, bay_id, f"bay:{bay_id}")
        self.bay_slots[bay_id][slot] = lot_id
        self.lots[lot_id] = lot
        self.model.stored += 1
        return lot

    def _free_slot(self, bay_id: str) -> int:
        slots = self.bay_slots[bay_id]
        if None not in slots:
            raise RuntimeError(f"bay {bay_id} is full")
        return slots.index(None)

    def _slot_position(self, bay_id: str, slot: int) -> tuple[float, float, float]:
        bay = next(b for b in self.spec.bays if b.id == bay_id)
        return self._slot_positions(bay)[slot]

    # --- trucks ----------------------------------------------------------------------------------
    def _new_truck(self) -> Truck:
        self._trucks += 1
        gate = self.spec.gates[(self._trucks - 1) % len(self.spec.gates)]
        body = self.world.add_truck(self.spec.truck.tare_kg, tuple(self.spec.truck.bed_m), (gate.outside[0], gate.outside[1]))
        return Truck(self.model, f"{self.id_prefix}T{self._trucks:04d}", body, gate)

    def _drive(self, truck: Truck, a: tuple[float, float], b: tuple[float, float]) -> simpy.Timeout:
        return self.env.timeout(_manhattan(a, b) / self.spec.truck.speed_mps)

    def _pass_gate(self, truck: Truck, direction: str) -> Iterator[simpy.Event]:
        gate = truck.gate
        enter = self.env.now
        tags = [self.lots[lot].tag for lot in truck.cargo]
        clear = enter + TRUCK_LENGTH_M / GATE_SPEED_MPS
        for notify in self.signals.gate_pass:
            notify(gate.id, direction, tags, enter, clear)
        yield self.env.timeout(clear - enter)
        truck.where = "inside" if direction == "in" else "outside"
        self.log("twin.gate-pass", {"truck": truck.name, "gate": gate.id, "direction": direction, "lots": list(truck.cargo)})

    def _pick_scale(self, truck: Truck) -> Weighbridge:
        return min(
            self.spec.weighbridges,
            key=lambda w: (_busy(self.scales[w.id]), _manhattan(tuple(truck.gate.position), w.rect.center)),
        )

    def _to_dock(self, truck: Truck) -> tuple[float, float]:
        truck.dock = min(self.spec.docks, key=lambda d: _busy(self.docks[d.id]))
        return (truck.dock.position[0], truck.dock.position[1])

    def _weigh(self, truck: Truck, leave_to: Callable[[], tuple[float, float]]) -> Iterator[simpy.Event]:
        """Queue for a weighbridge, weigh, then drive off to `leave_to()` (decided as it leaves)."""
        scale = self._pick_scale(truck)
        with self.scales[scale.id].request() as turn:
            yield turn
            centre = scale.rect.center
            self._move_truck(truck, centre)
            self.world.settle(0.5)
            true_kg = self.world.plate_load_kg(scale.id)
            self.log("twin.weigh", {"truck": truck.name, "scale": scale.id, "true_kg": round(true_kg, 1)})
            self.on_plate[scale.id] = truck.name
            for notify in self.signals.plate:
                notify(scale.id, True)
            yield self.env.timeout(WEIGH_DWELL_S)
            self._move_truck(truck, leave_to())
            self.on_plate[scale.id] = None
            for notify in self.signals.plate:
                notify(scale.id, False)

    def _move_truck(self, truck: Truck, xy: tuple[float, float]) -> None:
        """Teleport the truck and keep its cargo where it was on the deck."""
        old = self.world.position(truck.body)
        self.world.place(truck.body, (xy[0], xy[1], 0.05))
        for lot_id in truck.cargo:
            lot = self.lots[lot_id]
            x, y, z = self.world.position(lot.body)
            self.world.place(lot.body, (x - old[0] + xy[0], y - old[1] + xy[1], z - lot.shape.height / 2))

    def _deck_position(self, truck: Truck, index: int) -> tuple[float, float, float]:
        x, y, _ = self.world.position(truck.body)
        length, _, deck = self.spec.truck.bed_m
        return (x - length / 2 + 1.5 + 2.2 * index, y, deck + 0.05)

    # --- forklifts --------------------------------------------------------------------------------
    def _carry(self, lot_id: str, dock: Dock, to_truck: Truck | None, to_bay: str | None,
               on_lifted: Callable[[str, float], None] | None = None) -> Iterator[simpy.Event]:
        forklift: Forklift = yield self.forklifts.get()
        lot = self.lots[lot_id]
        berth = tuple(dock.position)
        pick = berth if to_bay else self.world.position(lot.body)[:2]
        drop = berth if to_truck else self._slot_position(to_bay, self._free_slot(to_bay))[:2]
        yield from self._drive_forklift(forklift, pick)
        yield self.env.timeout(forklift.spec.handling_s)
        forklift.carrying = lot_id
        if lot.bay and lot.location.startswith("bay:"):
            self.bay_slots[lot.bay][self.bay_slots[lot.bay].index(lot_id)] = None
            self.model.stored -= 1
            if on_lifted:
                on_lifted(lot_id, self.env.now)
        yield from self._drive_forklift(forklift, drop)
        yield self.env.timeout(forklift.spec.handling_s)
        if to_truck:
            self.world.place(lot.body, self._deck_position(to_truck, len(to_truck.cargo)))
            to_truck.cargo.append(lot_id)
            lot.location = f"truck:{to_truck.name}"
        else:
            slot = self._free_slot(to_bay)
            self.world.place(lot.body, self._slot_position(to_bay, slot))
            self.bay_slots[to_bay][slot] = lot_id
            lot.bay, lot.location = to_bay, f"bay:{to_bay}"
            self.model.stored += 1
        forklift.carrying = None
        forklift.moves += 1
        self.log("twin.lot-moved", {"lot": lot_id, "to": lot.location, "forklift": forklift.name})
        yield self.forklifts.put(forklift)

    def _drive_forklift(self, forklift: Forklift, to: tuple[float, float]) -> Iterator[simpy.Event]:
        start, duration = forklift.position, _manhattan(forklift.position, to) / forklift.spec.speed_mps
        if duration <= 0:
            return
        for notify in self.signals.forklift_move:
            notify(forklift.name, start, to, self.env.now, self.env.now + duration)
        yield self.env.timeout(duration)
        forklift.position = to

    # --- visits ----------------------------------------------------------------------------------
    def outbound(self, lot_ids: list[str], on_left: Callable[[list[str], float], None] | None = None,
                 on_lifted: Callable[[str, float], None] | None = None) -> simpy.Process:
        """A truck takes these lots away. Whether that was authorized is not the twin's business.
        `on_lifted` hears each lot leave its bay; `on_left`, the truck clear the gate with them."""
        for lot_id in lot_ids:
            if self.lots[lot_id].location.startswith("bay:") is False:
                raise ValueError(f"lot {lot_id} is not in a bay ({self.lots[lot_id].location})")
        return self.env.process(self._outbound(lot_ids, on_left, on_lifted))

    def _outbound(self, lot_ids: list[str], on_left, on_lifted) -> Iterator[simpy.Event]:
        truck = self._new_truck()
        self.log("twin.truck-arrived", {"truck": truck.name, "purpose": "outbound", "lots": lot_ids})
        yield from self._pass_gate(truck, "in")
        yield from self._weigh(truck, lambda: self._to_dock(truck))
        with self.docks[truck.dock.id].request() as berth:
            yield berth
            yield self.env.all_of([self.env.process(self._carry(lot, truck.dock, truck, None, on_lifted)) for lot in lot_ids])
        yield from self._weigh(truck, lambda: (truck.gate.position[0], truck.gate.position[1]))
        yield from self._pass_gate(truck, "out")
        for lot_id in truck.cargo:
            self.lots[lot_id].location = "gone"
            self.world.remove(self.lots[lot_id].body)
        self.log("twin.goods-left", {"truck": truck.name, "lots": list(truck.cargo)})
        if on_left:
            on_left(list(truck.cargo), self.env.now)
        self.world.remove(truck.body)

    def inbound(self, commodity: str, count: int, bay: str) -> simpy.Process:
        return self.env.process(self._inbound(commodity, count, bay))

    def _inbound(self, commodity_name: str, count: int, bay: str) -> Iterator[simpy.Event]:
        truck = self._new_truck()
        commodity = self.spec.commodities[commodity_name]
        rng = self.streams.get("twin.inbound")
        for i in range(count):
            lot_id = f"{self.id_prefix}IN-{truck.name.removeprefix(self.id_prefix)}-{i + 1}"
            mass = round(float(rng.uniform(*commodity.mass_kg)), 1)
            shape = shape_for(commodity, mass)
            body = self.world.add_goods(shape, mass, self._deck_position(truck, i))
            self.lots[lot_id] = LotTruth(lot_id, f"EPC-{lot_id}", commodity_name, mass, shape, body, None, f"truck:{truck.name}")
            truck.cargo.append(lot_id)
        self.log("twin.truck-arrived", {"truck": truck.name, "purpose": "inbound", "lots": list(truck.cargo)})
        yield from self._pass_gate(truck, "in")
        yield from self._weigh(truck, lambda: self._to_dock(truck))
        with self.docks[truck.dock.id].request() as berth:
            yield berth
            cargo, truck.cargo = list(truck.cargo), []
            yield self.env.all_of([self.env.process(self._carry(lot, truck.dock, None, bay)) for lot in cargo])
        yield from self._weigh(truck, lambda: (truck.gate.position[0], truck.gate.position[1]))
        yield from self._pass_gate(truck, "out")
        self.world.remove(truck.body)

    def carry_out_unseen(self, lot_ids: list[str], exit_xy: tuple[float, float],
                         on_gone: Callable[[str, float], None]) -> simpy.Process:
        """Forklifts take lots out through a gap in the fence, past no gate and no RFID portal."""

        def one(lot_id: str) -> Iterator[simpy.Event]:
            forklift: Forklift = yield self.forklifts.get()
            lot = self.lots[lot_id]
            yield from self._drive_forklift(forklift, self.world.position(lot.body)[:2])
            yield self.env.timeout(forklift.spec.handling_s)
            self.bay_slots[lot.bay][self.bay_slots[lot.bay].index(lot_id)] = None
            self.model.stored -= 1
            self.world.remove(lot.body)  # off the floor: the bay no longer holds it
            lot.location = "gone"
            self.log("twin.lot-removed-unseen", {"lot": lot_id, "forklift": forklift.name})
            on_gone(lot_id, self.env.now)
            yield from self._drive_forklift(forklift, exit_xy)
            yield self.forklifts.put(forklift)

        return self.env.process(self._all(one(lot) for lot in lot_ids))

    def _all(self, processes) -> Iterator[simpy.Event]:
        yield self.env.all_of([self.env.process(p) for p in processes])

    def move_lot(self, forklift: Forklift, lot_id: str, to_bay: str | None = None,
                 to_xy: tuple[float, float] | None = None) -> Iterator[simpy.Event]:
        """`forklift` (already taken from the pool) carries a stored lot to a free slot of `to_bay`,
        or sets it on the floor at `to_xy` (e.g. in the yard). Moves inside the premises, which no
        gate sees: only the forklift's positioning tag, the cameras and the bays' scans can."""
        lot = self.lots[lot_id]
        if not lot.location.startswith(("bay:", "floor:")):
            raise ValueError(f"lot {lot_id} is not stored ({lot.location})")
        yield from self._drive_forklift(forklift, self.world.position(lot.body)[:2])
        yield self.env.timeout(forklift.spec.handling_s)
        forklift.carrying = lot_id
        if lot.location.startswith("bay:"):
            self.bay_slots[lot.bay][self.bay_slots[lot.bay].index(lot_id)] = None
            self.model.stored -= 1
        drop = self._slot_position(to_bay, self._free_slot(to_bay)) if to_bay else (to_xy[0], to_xy[1], 0.0)
        yield from self._drive_forklift(forklift, drop[:2])
        yield self.env.timeout(forklift.spec.handling_s)
        if to_bay:
            slot = self._free_slot(to_bay)
            self.world.place(lot.body, self._slot_position(to_bay, slot))
            self.bay_slots[to_bay][slot] = lot_id
            lot.bay, lot.location = to_bay, f"bay:{to_bay}"
            self.model.stored += 1
        else:
            self.world.place(lot.body, drop)
            lot.bay, lot.location = None, f"floor:{drop[0]:.1f},{drop[1]:.1f}"
        forklift.carrying = None
        forklift.moves += 1
        self.log("twin.lot-moved", {"lot": lot_id, "to": lot.location, "forklift": forklift.name})

    def swap_mass(self, lot_id: str, mass_kg: float) -> None:
        """The goods of a lot are replaced by others of the same shape and a different mass."""
        lot = self.lots[lot_id]
        self.world.set_mass(lot.body, mass_kg)
        lot.mass_kg = mass_kg
        self.log("twin.mass-swapped", {"lot": lot_id, "mass_kg": round(mass_kg, 1)})

    def collect(self, every_s: float = 60.0) -> Iterator[simpy.Event]:
        """Mesa data collection on a fixed simulated-time cadence."""
        while True:
            self.model.datacollector.collect(self.model)
            yield self.env.timeout(every_s)

    def in_working_hours(self, t: float) -> bool:
        """Whether the site is at work at Unix time `t`, by its own clock and calendar."""
        hours = self.spec.working_hours
        local = dt.datetime.fromtimestamp(t, ZoneInfo(self.spec.timezone))
        return WEEKDAYS[local.weekday()] in hours.days and hours.start_hour <= local.hour < hours.end_hour

    def ambient(self, t: float, at: tuple[float, float] | None = None) -> tuple[float, float]:
        """True temperature (°C) and relative humidity (%) of the air at floor point `at`: the
        diurnal cycle, plus whatever is wrong with the air of the zone there (twin/climate.py)."""
        return self.climate.at(t, None if at is None else self.climate.zone_at(at[0], at[1]))
