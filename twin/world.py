"""The physical world in pybullet (DIRECT mode): floor, weighbridge plates, goods, trucks.

Physics steps only when a sensor needs it (a weighing): goods are moved by teleporting their
bodies when a forklift puts them down, and the plate's load is read from the contact forces
that the solver computes, so whatever rests on the plate, and however, is what weighs.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable

from cangtwin.twin.site import Bay, Commodity, Site


@contextlib.contextmanager
def _c_output_silenced():
    """pybullet's C code prints a build banner (on import, on connect); keep it out of our reports."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
            ctypes.CDLL(None).fflush(None)  # the banner sits in C's stdio buffers until flushed
    finally:
        for fd, copy in ((1, saved[0]), (2, saved[1])):
            os.dup2(copy, fd)
            os.close(copy)


with _c_output_silenced():
    import pybullet as pb

GRAVITY = 9.81
STEP_S = 1.0 / 240.0
PLATE_THICKNESS_M = 0.3


@dataclass(frozen=True)
class Shape:
    """Outer envelope of one lot: what a LiDAR or a camera can see of it."""

    kind: str  # "coil" (upright cylinder, eye vertical) or "box"
    size: tuple[float, float, float]  # coil: outer radius, bore radius, width; box: x, y, z

    @property
    def height(self) -> float:
        return self.size[2]

    @property
    def envelope_volume_m3(self) -> float:
        if self.kind == "coil":
            return math.pi * self.size[0] ** 2 * self.size[2]
        return self.size[0] * self.size[1] * self.size[2]


def shape_for(commodity: Commodity, mass_kg: float) -> Shape:
    """Dimensions that give the commodity's bulk density at this mass."""
    if commodity.shape == "coil":
        width, bore = commodity.coil_width_m, commodity.coil_bore_m / 2
        steel_m3 = mass_kg / commodity.bulk_density_kg_m3
        outer = math.sqrt(steel_m3 / (math.pi * width) + bore**2)
        return Shape("coil", (outer, bore, width))
    x, y, z = commodity.size_m
    return Shape("box", (x, y, z))


def slot_positions(bay: Bay, commodity: Commodity) -> list[tuple[float, float, float]]:
    """Where a bay's lots stand: a grid on its floor, coils one layer eye-up, boxes stacked 3 high."""
    shape = shape_for(commodity, commodity.mass_kg[1])
    footprint = 2 * shape.size[0] if shape.kind == "coil" else max(shape.size[0], shape.size[1])
    pitch = footprint + 0.4
    r = bay.rect
    cols, rows = int((r.x1 - r.x0) // pitch), int((r.y1 - r.y0) // pitch)
    floor = [(r.x0 + pitch * (c + 0.5), r.y0 + pitch * (k + 0.5)) for k in range(rows) for c in range(cols)]
    layers = 1 if shape.kind == "coil" else 3
    return [(x, y, layer * shape.height) for layer in range(layers) for x, y in floor]


class PhysicalWorld:
    def __init__(self, site: Site) -> None:
        self.site = site
        with _c_output_silenced():
            self.client = pb.connect(pb.DIRECT)
        pb.setGravity(0, 0, -GRAVITY, physicsClientId=self.client)
        pb.setTimeStep(STEP_S, physicsClientId=self.client)
        floor = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=self.client)
        self.floor = pb.createMultiBody(0, floor, physicsClientId=self.client)
        self.plates: dict[str, int] = {}
        for scale in site.spec.weighbridges:
            r = scale.rect
            half = [(r.x1 - r.x0) / 2, (r.y1 - r.y0) / 2, PLATE_THICKNESS_M / 2]
            shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
            # The plate's top sits 5 cm above the floor, as on a pit-less weighbridge deck.
            centre = [(r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2, 0.05 - PLATE_THICKNESS_M / 2]
            self.plates[scale.id] = pb.createMultiBody(0, shape, basePosition=centre, physicsClientId=self.client)
        self.shapes: dict[int, Shape] = {}
        # Sensors that cache what they saw (cameras, LiDAR scenes) hear of every change here.
        self.listeners: list[Callable[[int | None, str], None]] = []

    def _changed(self, body: int | None, kind: str) -> None:
        for listener in self.listeners:
            listener(body, kind)

    def close(self) -> None:
        pb.disconnect(self.client)

    def add_goods(self, shape: Shape, mass_kg: float, position: tuple[float, float, float]) -> int:
        """A rigid body with the lot's true mass; `position` is its base centre."""
        if shape.kind == "coil":
            collision = pb.createCollisionShape(
                pb.GEOM_CYLINDER, radius=shape.size[0], height=shape.size[2], physicsClientId=self.client
            )
        else:
            collision = pb.createCollisionShape(
                pb.GEOM_BOX, halfExtents=[s / 2 for s in shape.size], physicsClientId=self.client
            )
        x, y, z = position
        body = pb.createMultiBody(
            mass_kg, collision, basePosition=[x, y, z + shape.height / 2], physicsClientId=self.client
        )
        pb.changeDynamics(body, -1, lateralFriction=0.8, physicsClientId=self.client)
        self.shapes[body] = shape
        self._changed(body, "add")
        return body

    def add_truck(self, tare_kg: float, bed: tuple[float, float, float], position: tuple[float, float]) -> int:
        """A truck chassis as one rigid box of its tare mass; cargo rests on its deck."""
        length, width, deck = bed
        collision = pb.createCollisionShape(
            pb.GEOM_BOX, halfExtents=[length / 2, width / 2, deck / 2], physicsClientId=self.client
        )
        body = pb.createMultiBody(
            tare_kg, collision, basePosition=[position[0], position[1], deck / 2 + 0.05], physicsClientId=self.client
        )
        pb.changeDynamics(body, -1, lateralFriction=0.9, physicsClientId=self.client)
        self.shapes[body] = Shape("box", bed)
        self._changed(body, "add")
        return body

    def place(self, body: int, position: tuple[float, float, float]) -> None:
        """Put a body down with its base at `position` and no velocity (a forklift set it there)."""
        x, y, z = position
        pb.resetBasePositionAndOrientation(
            body, [x, y, z + self.shapes[body].height / 2], [0, 0, 0, 1], physicsClientId=self.client
        )
        pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)
        self._changed(body, "place")

    def set_mass(self, body: int, mass_kg: float) -> None:
        pb.changeDynamics(body, -1, mass=mass_kg, physicsClientId=self.client)

    def remove(self, body: int) -> None:
        pb.removeBody(body, physicsClientId=self.client)
        self.shapes.pop(body, None)
        self._changed(body, "remove")

    def position(self, body: int) -> tuple[float, float, float]:
        return tuple(pb.getBasePositionAndOrientation(body, physicsClientId=self.client)[0])

    def settle(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds / STEP_S))):
            pb.stepSimulation(physicsClientId=self.client)
        self._changed(None, "step")  # anything awake may have moved

    def plate_load_kg(self, scale_id: str) -> float:
        """Sum of normal contact forces on the plate, as mass: what the load cells carry."""
        contacts = pb.getContactPoints(bodyA=self.plates[scale_id], physicsClientId=self.client)
        return sum(c[9] for c in contacts) / GRAVITY
