"""A ceiling LiDAR that scans its bays once per period by casting its preset's rays into the world.

The world is whatever pybullet holds right now (floor, goods, trucks, any occluder a fault put
there): every body's collision shape is read back from pybullet and meshed for Open3D's
`RaycastingScene`. Rebuilding that scene costs far more than casting one scan, so the device
keeps a cheap signature of the bodies and their poses and rebuilds only when it changed; if
nothing moved since the last scan the clean ranges are reused and only fresh noise is drawn.

Caster choice, measured on this 2-core machine with `bench/bench_lidar.py` (small site, 62
bodies, the default 275k-ray scan; the machine is shared, so runs vary): pybullet `rayTestBatch`
0.36-0.59M rays/s on all threads; Open3D `RaycastingScene` 7.6-11.8M rays/s in a static scene and
3.4-6.4M points/s end to end when the scene is rebuilt (~20 ms) before every scan. Open3D wins
by ~10x even then, so it is the caster.

Points leave in the mount frame (see `PanMount`) as little-endian float32, one scan per message,
which the pattern is sized to fit under the wire's frame cap.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import open3d as o3d
import simpy

from cangtwin.devices.device import Device
from cangtwin.devices.lidar_presets import LidarPreset, PanMount, preset as named_preset, scan_directions
from cangtwin.platform.wire import MAX_FRAME_BYTES
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import pb

# Envelope, kind, field names and HMAC tag take well under 1 KiB; the rest is 12 bytes a point.
MAX_POINTS_PER_MESSAGE = (MAX_FRAME_BYTES - 1024) // 12
CYLINDER_SEGMENTS = 64
FLOOR_MARGIN_M = 200.0


def _box_template() -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c, d in faces for t in ((a, b, c), (a, c, d))]
    return v, np.array(tris)


def _cylinder_template(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-radius, unit-height cylinder about z; the polygon's radius keeps the circle's area."""
    k = math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))  # equal-area regular n-gon
    ang = 2 * math.pi * np.arange(n) / n
    ring = np.stack([k * np.cos(ang), k * np.sin(ang)], axis=1)
    v = np.concatenate([np.c_[ring, np.full(n, -0.5)], np.c_[ring, np.full(n, 0.5)], [[0, 0, -0.5], [0, 0, 0.5]]])
    i, j = np.arange(n), (np.arange(n) + 1) % n
    sides = np.concatenate([np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1)])
    caps = np.concatenate([np.stack([np.full(n, 2 * n), j, i], 1), np.stack([np.full(n, 2 * n + 1), n + i, n + j], 1)])
    return v, np.concatenate([sides, caps])


_BOX = _box_template()
_CYLINDER = _cylinder_template(CYLINDER_SEGMENTS)


def _rotation(q: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(pb.getMatrixFromQuaternion(q)).reshape(3, 3)


class WorldScene:
    """The pybullet world as an Open3D ray-casting scene, rebuilt only when a body moved.

    Reading every body's pose for the signature costs ~12 ms on the `medium` site's 400 bodies,
    more than a cast, so it is read only when the world reported a change (`note`, a listener of
    `PhysicalWorld`) or the number of bodies changed (a body made straight through pybullet,
    such as a camera's cover).
    """

    def __init__(self, client: int, floor_extent: tuple[float, float, float, float]) -> None:
        self.client = client
        self.floor_extent = floor_extent
        self._geometry: dict[int, tuple] = {}  # body → collision shapes; they never change for a body
        self._signature: tuple | None = None
        self._reported = True  # a change reported since the signature was last read
        self._bodies = -1
        self.scene: o3d.t.geometry.RaycastingScene | None = None
        self.rebuilds = 0

    def note(self, _body: int | None, _kind: str) -> None:
        self._reported = True

    def _poses(self) -> list[tuple[int, tuple, tuple]]:
        ids = [pb.getBodyUniqueId(i, physicsClientId=self.client) for i in range(pb.getNumBodies(physicsClientId=self.client))]
        return [(b, *pb.getBasePositionAndOrientation(b, physicsClientId=self.client)) for b in ids]

    def signature(self) -> tuple:
        """Bodies and their poses to 1 mm / 1e-4: settling jitter of a resting body is not a move."""
        return tuple(
            (b, tuple(round(c, 3) for c in pos), tuple(round(c, 4) for c in orn)) for b, pos, orn in self._poses()
        )

    def current(self) -> tuple[o3d.t.geometry.RaycastingScene, bool]:
        """The scene of the world as it is now, and whether it had to be rebuilt."""
        bodies = pb.getNumBodies(physicsClientId=self.client)
        if not self._reported and bodies == self._bodies and self.scene is not None:
            return self.scene, False
        self._reported, self._bodies = False, bodies
        signature = self.signature()
        if signature == self._signature and self.scene is not None:
            return self.scene, False
        self._signature = signature
        self.scene = self._build()
        self.rebuilds += 1
        return self.scene, True

    def _build(self) -> o3d.t.geometry.RaycastingScene:
        vertices, triangles, offset = [], [], 0
        for body, pos, orn in self._poses():
            if body not in self._geometry:
                self._geometry[body] = pb.getCollisionShapeData(body, -1, physicsClientId=self.client)
            for shape in self._geometry[body]:
                v, t = self._mesh(shape, np.asarray(pos), _rotation(orn))
                vertices.append(v)
                triangles.append(t + offset)
                offset += len(v)
        scene = o3d.t.geometry.RaycastingScene()
        if vertices:
            scene.add_triangles(
                o3d.core.Tensor.from_numpy(np.concatenate(vertices).astype(np.float32)),
                o3d.core.Tensor.from_numpy(np.concatenate(triangles).astype(np.uint32)),
            )
        return scene

    def _mesh(self, shape: tuple, pos: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        geometry, dims, local_pos, local_orn = shape[2], shape[3], np.asarray(shape[5]), shape[6]
        if geometry == pb.GEOM_PLANE:  # pybullet's plane is infinite; a floor far past the site will do
            x0, y0, x1, y1 = self.floor_extent
            v = np.array([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]]) + [0, 0, pos[2]]
            return v, np.array([[0, 1, 2], [0, 2, 3]])
        if geometry == pb.GEOM_BOX:
            template, scale = _BOX, np.asarray(dims[:3])
        elif geometry == pb.GEOM_CYLINDER:
            height, radius = dims[0], dims[1]
            template, scale = _CYLINDER, np.array([radius, radius, height])
        else:
            raise ValueError(f"body {shape[0]}: the LiDAR cannot mesh pybullet geometry type {geometry}")
        v, t = template
        local = (v * scale) @ _rotation(local_orn).T + local_pos
        return local @ rot.T + pos, t


class LidarDevice(Device):
    """Scans its bays every `period_s`, and at once on the edge's `scan` command, and emits one
    `scan` message of noisy points per scan."""

    def __init__(
        self,
        *args,
        warehouse: Warehouse,
        preset: LidarPreset | str = "vlp16",
        period_s: float,
        mount: PanMount | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.warehouse = warehouse
        self.preset = named_preset(preset) if isinstance(preset, str) else preset
        self.period_s = period_s
        spec = warehouse.spec
        entry = next((d for d in spec.devices if d.id == self.id), None)
        if entry is None or entry.type != "lidar":
            raise ValueError(f"device {self.id!r} is not a lidar in site {spec.site}")
        self.position = np.asarray(entry.position, dtype=np.float64)
        self.bays = tuple(entry.bays)
        self.mount = mount or default_mount(
            self.preset, self.position, [(b.rect, _stack_height(spec, b.commodity)) for b in spec.bays if b.id in self.bays]
        )
        self.directions = scan_directions(self.preset, self.mount)
        if len(self.directions) > MAX_POINTS_PER_MESSAGE:
            raise ValueError(
                f"{self.id}: mount.pan_steps={self.mount.pan_steps} gives {len(self.directions)} rays a scan, "
                f"more than the {MAX_POINTS_PER_MESSAGE} points one message can carry"
            )
        b = spec.building
        self.world_scene = WorldScene(
            warehouse.world.client, (-FLOOR_MARGIN_M, -FLOOR_MARGIN_M, b.width_m + FLOOR_MARGIN_M, b.depth_m + FLOOR_MARGIN_M)
        )
        warehouse.world.listeners.append(self.world_scene.note)
        # Shared with numpy, not allocated by Open3D: Open3D exits the process with status 1 when its
        # own allocations outlive the interpreter (a run kept alive to the end of a test session).
        self._rays_np = np.ascontiguousarray(
            np.concatenate([np.broadcast_to(self.position, self.directions.shape), self.directions], axis=1), dtype=np.float32
        )
        self._rays = o3d.core.Tensor.from_numpy(self._rays_np)
        self._directions32 = self.directions.astype(np.float32)
        self._clean: np.ndarray | None = None
        self._clean32: np.ndarray | None = None
        self._commanded = False  # a commanded scan is under way

    def start(self) -> None:
        super().start()
        self.env.process(self._scans())

    def _scans(self) -> Iterator[simpy.Event]:
        yield self.env.timeout(float(self.rng.uniform(0, self.period_s)))
        while True:
            self.sweep()
            yield self.env.timeout(self.period_s)

    @property
    def sweep_s(self) -> float:
        """How long one scan takes: one sensor turn per pan step (23 × 0.1 s on the `small` site)."""
        return self.mount.pan_steps / self.preset.rotation_hz

    def scan(self) -> None:
        """The `scan` action of the Thing Description: scan the bay group now, off the schedule.

        The pan unit sweeps for `sweep_s`, and the points go out when it is done; the periodic
        scans keep their own phase. A command that arrives while a commanded scan is under way
        joins it (one sweep answers both).
        """
        if self._commanded or not self.alive:
            return
        self._commanded = True

        def done(_event: simpy.Event) -> None:
            self._commanded = False
            self.sweep()

        self.env.timeout(self.sweep_s).callbacks.append(done)

    def clean_ranges(self) -> np.ndarray:
        """Noise-free range of every ray against the current world (inf: no return)."""
        scene, rebuilt = self.world_scene.current()
        if rebuilt or self._clean is None:
            hits = scene.cast_rays(self._rays)["t_hit"].numpy()
            self._clean, self._clean32 = hits.astype(np.float64), hits.astype(np.float32)
        return self._clean

    def measure(self) -> np.ndarray:
        """One scan's points (n, 3) in the mount frame as float32, as the wire carries them: range
        noise and dropout from the device's rng, drawn in float32 (half the cost of float64)."""
        p = self.preset
        ranges = self.clean_ranges()
        keep = (ranges >= p.min_range_m) & (ranges <= p.max_range_m)
        keep &= self.rng.random(ranges.shape, dtype=np.float32) >= np.float32(p.dropout)
        noisy = self._clean32[keep]
        if p.range_sigma_m:
            noisy += self.rng.standard_normal(len(noisy), dtype=np.float32) * np.float32(p.range_sigma_m)
        return self._directions32[keep] * noisy[:, None]

    def sweep(self) -> int:
        """Cast one scan against the world as it is now and send it; the number of points sent."""
        points = self.measure().astype("<f4", copy=False)
        self.emit("scan", {"n_points": len(points), "points": points.tobytes()})
        return len(points)

    def true_bay_volumes(self) -> dict[str, float]:
        """Ground truth for scoring only (never sent): envelope m³ of the lots in each covered bay."""
        volumes = {bay: 0.0 for bay in self.bays}
        for lot in self.warehouse.lots.values():
            bay = lot.location.removeprefix("bay:")
            if lot.location.startswith("bay:") and bay in volumes:
                volumes[bay] += lot.shape.envelope_volume_m3
        return volumes


def default_mount(sensor: LidarPreset, position: np.ndarray, bays: list[tuple[object, float]]) -> PanMount:
    """A pattern that fills one message and sees the floor behind the tallest goods of each bay.

    `bays` pairs each covered bay's rectangle with the height its goods may reach; the view must
    reach past the far corner by what those goods can hide, or a far top edge has no ray grazing
    past it and its extent cannot be told.
    """
    half = 1.0
    for r, tallest in bays:
        reach = max(math.hypot(x - position[0], y - position[1]) for x in (r.x0, r.x1) for y in (r.y0, r.y1))
        half = max(half, math.degrees(math.atan2(reach, max(position[2] - tallest, 0.1))) + 1.0)
    half = min(half, 85.0)
    per_step = len(scan_directions(sensor, PanMount(pan_steps=1, max_off_nadir_deg=half)))
    most = max(1, MAX_POINTS_PER_MESSAGE // per_step)
    # Each pan step lays one line per beam on the floor; when the step is near a whole number of
    # beam spacings, successive steps lay their lines on the same azimuths and leave wide holes
    # far from the mount. Pick the step count (among those that fit one message) whose lines
    # interleave best where the floor is farthest.
    steps = min(range(max(1, most * 3 // 5), most + 1), key=lambda n: (_widest_gap(sensor, n, half), -n))
    return PanMount(pan_steps=steps, max_off_nadir_deg=half)


def _stack_height(spec, commodity: str) -> float:
    """How high a bay's goods stand: coils one high, boxes three (as the warehouse stacks them)."""
    c = spec.commodities[commodity]
    return c.coil_width_m if c.shape == "coil" else 3 * c.size_m[2]


def _widest_gap(sensor: LidarPreset, steps: int, half: float) -> float:
    """Widest floor gap (m per m of mount height) between beam lines, over the far band of the view."""
    eps = np.tan(np.deg2rad(np.asarray(sensor.elevations_deg)))
    pans = np.arange(steps) * 180.0 / steps
    worst = 0.0
    for alpha in (half - 1.0, half - 8.0, half - 16.0):
        if alpha <= 0:
            continue
        offsets = np.degrees(np.arctan(eps / math.sin(math.radians(alpha))))
        azimuths = np.sort(np.concatenate([pans[:, None] + offsets, pans[:, None] + 180.0 - offsets]).ravel() % 360.0)
        gaps = np.diff(np.concatenate([azimuths, azimuths[:1] + 360.0]))
        worst = max(worst, math.radians(float(gaps.max())) * math.tan(math.radians(alpha)))
    return worst
