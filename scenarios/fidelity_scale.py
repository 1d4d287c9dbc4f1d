"""Weighbridge fidelity: loads put on a pybullet plate, read through the site's own load-cell model.

Each weighing is physical: bodies are put on the plate of the `small` site's WB1, the solver
settles them, and the plate's contact forces, sampled at the scale's 10 Hz while physics steps,
drive the real `WeighbridgeDevice` indicator (OIML R60 C3 cells, R76 class III indicator) until
it reports stable. The error is the e/10 service value minus the true mass that should weigh
(R76 verification reads errors at e/10 to take the rounding out).

The cheats act where they would: a remote-control offset in the indicator (device side); a
truck with its rear wheel on the approach apron instead of the plate; a person standing on the
plate beside the truck (both in the world). The twin's own trucks are one rigid box, so this
rig builds a truck with wheels and an apron at plate height, which a wheel-off cheat needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import simpy

from cangtwin.devices.oiml import mpe_class_iii
from cangtwin.devices.weighbridge import WeighbridgeDevice
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PLATE_THICKNESS_M, PhysicalWorld, Shape, pb, shape_for

DT_S = 0.1  # the scale reports at 10 Hz while loaded
PHYSICS_S = 2.0  # physics is stepped this long after the load arrives; then everything rests
SCALE_ID = "WB1"
PERSON_KG = 80.0
PLATE_TOP_M = 0.05
CHEATS = ("honest", "remote offset", "wheel off the plate", "person on the plate")


@dataclass(frozen=True)
class Weighing:
    cheat: str
    what: str  # what stood on the plate
    true_kg: float  # what the weighing should show
    plate_kg: float  # what the solver put on the plate (contact forces), at rest
    fine_kg: float  # the indicator's e/10 value at the first stable reading
    indicated_kg: float
    mpe_kg: float
    settle_s: float

    @property
    def error_kg(self) -> float:
        return self.fine_kg - self.true_kg

    @property
    def within_mpe(self) -> bool:
        return abs(self.error_kg) <= self.mpe_kg


class ScaleRig:
    """The small site's world and its WB1 weighbridge device, with an apron at plate height."""

    def __init__(self, seed: int = 1, remote_offset_kg: float = -400.0) -> None:
        site = load_site("small")
        self.site = site
        self.world = PhysicalWorld(site)
        env = simpy.Environment()
        streams = RandomStreams(seed)
        # The warehouse stocks its bays, as in a run; the scale sees only what is on its plate.
        warehouse = Warehouse(env, site, self.world, streams, lambda *_: None)
        entry = next(d for d in site.spec.devices if d.type == "weighbridge" and d.weighbridge == SCALE_ID)
        self.device = WeighbridgeDevice(
            env=env, device_id=entry.id, device_type="weighbridge", key=bytes(32), rng=streams.get(f"device.{entry.id}"),
            send=lambda _b: None, tap=lambda *_: None, heartbeat_s=10.0, warehouse=warehouse, scale_id=SCALE_ID,
            rate_hz=1 / DT_S,
        )
        self.scale = next(w for w in site.spec.weighbridges if w.id == SCALE_ID)
        self.e_kg = self.scale.division_kg
        self.remote_offset_kg = remote_offset_kg
        self.truck_spec = site.spec.truck
        self.temperature_c = 20.0
        r = self.scale.rect
        self.centre = ((r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2)
        # The approach apron west of the plate: concrete at the plate's height, 2 cm gap.
        apron = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[3.0, (r.y1 - r.y0) / 2, PLATE_THICKNESS_M / 2],
                                        physicsClientId=self.world.client)
        pb.createMultiBody(0, apron, basePosition=[r.x0 - 0.02 - 3.0, self.centre[1], PLATE_TOP_M - PLATE_THICKNESS_M / 2],
                           physicsClientId=self.world.client)
        self._zero()

    def close(self) -> None:
        self.world.close()

    def _step(self, load_kg: float):
        return self.device.indicator.step(load_kg, DT_S, self.temperature_c)

    def _zero(self) -> None:
        for _ in range(150):  # 15 s empty: zero-tracking takes out the zero drift
            self._step(0.0)

    def wheeled_truck(self, x: float, cargo_kg: float) -> list[int]:
        """A truck (tare from the site file) on three axles, cargo on its deck; its centre at `x`."""
        length, width, deck = self.truck_spec.bed_m
        client = self.world.client
        wheel, chassis_h = (0.25, 0.15, 0.25), deck - 0.5
        axles = (length / 2 - 1.2, -length / 2 + 2.6, -length / 2 + 1.2)  # steer axle, rear tandem
        halves = [[length / 2, width / 2, chassis_h / 2]] + [list(wheel)] * 6
        offsets = [[0, 0, 0.5 + chassis_h / 2]] + [[ax, side * (width / 2 - 0.2), wheel[2]] for ax in axles
                                                    for side in (-1, 1)]
        shape = pb.createCollisionShapeArray([pb.GEOM_BOX] * 7, halfExtents=halves, collisionFramePositions=offsets,
                                             physicsClientId=client)
        truck = pb.createMultiBody(self.truck_spec.tare_kg, shape, basePosition=[x, self.centre[1], PLATE_TOP_M],
                                   physicsClientId=client)
        pb.changeDynamics(truck, -1, lateralFriction=0.9, physicsClientId=client)
        bodies = [truck]
        if cargo_kg > 0:
            box = Shape("box", (length - 1.0, width - 0.2, 1.0))
            bodies.append(self.world.add_goods(box, cargo_kg, (x, self.centre[1], PLATE_TOP_M + deck + 0.001)))
        return bodies

    def weigh(self, cheat: str, total_kg: float) -> Weighing:
        """Put `total_kg` on the plate (goods alone below the truck's tare, else a loaded truck)."""
        world = self.world
        x, y = self.centre
        bodies: list[int] = []
        tare = self.truck_spec.tare_kg
        if total_kg < tare:
            what = f"{total_kg / 1000:g} t of goods"
            if cheat == "wheel off the plate":
                raise ValueError("a wheel-off weighing needs a truck")
            bodies.append(world.add_goods(Shape("box", (2.0, 2.0, 1.0)), total_kg, (x, y, PLATE_TOP_M)))
        else:
            what = f"truck {tare / 1000:g} t + {(total_kg - tare) / 1000:g} t"
            length = self.truck_spec.bed_m[0]
            r = self.scale.rect
            # Wheel off: the rearmost axle stands on the apron; the others stay on the plate.
            truck_x = r.x0 + length / 2 - 1.2 - 0.6 if cheat == "wheel off the plate" else x
            bodies += self.wheeled_truck(truck_x, total_kg - tare)
        if cheat == "person on the plate":
            person = Shape("box", (0.4, 0.3, 1.7))
            bodies.append(world.add_goods(person, PERSON_KG, (x, self.scale.rect.y0 + 0.3, PLATE_TOP_M)))
        self.device.indicator.remote_offset_kg = self.remote_offset_kg if cheat == "remote offset" else 0.0
        try:
            return self._read(bodies, cheat, what, total_kg)
        finally:
            self.device.indicator.remote_offset_kg = 0.0

    def weigh_coil(self, mass_kg: float) -> Weighing:
        """One steel coil of `mass_kg`, standing eye-up on the middle of the plate."""
        coil = shape_for(self.site.spec.commodities["steel-coil"], mass_kg)
        body = self.world.add_goods(coil, mass_kg, (*self.centre, PLATE_TOP_M))
        return self._read([body], "honest", f"steel coil {mass_kg / 1000:g} t", mass_kg)

    def _read(self, bodies: list[int], cheat: str, what: str, true_kg: float) -> Weighing:
        """Physics and the indicator at 10 Hz until stable; then the plate is cleared and back at zero."""
        world = self.world
        reading, plate, t = None, 0.0, 0.0
        while t < 30.0:
            if t < PHYSICS_S:  # the drive-on transient, from the solver's contact forces
                world.settle(DT_S)
                plate = world.plate_load_kg(SCALE_ID)
            reading = self._step(plate)
            t += DT_S
            if reading.stable and t > 1.0:
                break
        for body in bodies:
            if body in world.shapes:
                world.remove(body)
            else:
                pb.removeBody(body, physicsClientId=world.client)
        for _ in range(60):
            self._step(0.0)
        return Weighing(cheat, what, true_kg, plate, reading.fine_kg, reading.indicated_kg,
                        mpe_class_iii(true_kg, self.e_kg), t)


def load_points(capacity_kg: float, n: int) -> list[float]:
    """`n` loads from Min (20e at e = 50 kg: 1 t) to Max, denser at the low end where the mpe is tight."""
    return sorted({round(float(v), -2) for v in np.geomspace(1_000.0, capacity_kg, n)})


def scale_study(points: int = 12, seed: int = 1, progress: Callable[[float], None] = lambda _f: None) -> list[Weighing]:
    """Honest weighings across the range, then each cheat at the truck loads."""
    rig = ScaleRig(seed)
    try:
        loads = load_points(rig.scale.capacity_kg, points)
        jobs = [(cheat, load) for cheat in CHEATS for load in loads
                if cheat in ("honest", "remote offset") or load >= rig.truck_spec.tare_kg]
        out = []
        for i, (cheat, load) in enumerate(jobs):
            out.append(rig.weigh(cheat, load))
            progress((i + 1) / len(jobs))
        return out
    finally:
        rig.close()
