"""LiDAR fidelity: edge volume estimates against the twin's true envelopes, and ray throughput.

The rig is what a run builds: the `small` site's stocked world, its `lidar-1` device with a
preset and the default pan mount, and the edge perception provisioned as the run provisions it
(`scenarios.run.site_geometry`, `device_attrs`). Errors are |measured − true| / true per bay, the
truth being the lots' envelope volumes, grouped by the bay's commodity.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import open3d as o3d
import simpy

from cangtwin.devices.lidar import LidarDevice
from cangtwin.platform.perception.lidar_volume import estimate_bays, mount_from_attrs
from cangtwin.scenarios.run import device_attrs, site_geometry
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld

DEVICE = "lidar-1"


@dataclass(frozen=True)
class VolumeError:
    preset: str
    commodity: str
    bay: str
    layout: int  # the stock layout's seed
    true_m3: float
    measured_m3: float

    @property
    def relative(self) -> float:
        return abs(self.measured_m3 - self.true_m3) / self.true_m3


class LidarRig:
    """The small site stocked from `seed`, its LiDAR with `preset`, and the edge's view of both."""

    def __init__(self, seed: int, preset: str = "vlp16") -> None:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        site = load_site("small")
        self.world = PhysicalWorld(site)
        env = simpy.Environment()
        self.warehouse = Warehouse(env, site, self.world, RandomStreams(seed), lambda *_: None)
        self.device = LidarDevice(
            env=env, device_id=DEVICE, device_type="lidar", key=bytes(32), rng=np.random.default_rng(seed),
            send=lambda _b: None, tap=lambda *_: None, heartbeat_s=10.0, warehouse=self.warehouse, preset=preset,
            period_s=site.spec.rates.lidar_scan_s,
        )
        self.geometry = site_geometry(site)
        self.mount = mount_from_attrs(DEVICE, device_attrs(site, DEVICE))
        self.commodity = {b.id: b.commodity for b in site.spec.bays}
        self.seed = seed

    def close(self) -> None:
        self.world.close()

    def volume_errors(self, scans: int) -> list[VolumeError]:
        truth = self.device.true_bay_volumes()
        out = []
        for _ in range(scans):
            for scan in estimate_bays(self.device.measure(), self.mount, self.geometry, 0.0, 0.0):
                out.append(VolumeError(self.device.preset.name, self.commodity[scan.bay], scan.bay, self.seed,
                                       truth[scan.bay], scan.volume_m3))
        return out

    def moving_goods_rate(self, scans: int) -> tuple[float, float]:
        """(points/s with the scene rebuilt before every scan, rays/s of a bare cast in a static scene).

        Before each scan a coil is moved, as a forklift would, so the Open3D scene is rebuilt;
        then rays are cast, noise and dropout drawn and the points packed as float32 for the wire.
        """
        device = self.device
        scene, _ = device.world_scene.current()
        casts = []
        for _ in range(3):
            t = time.perf_counter()
            scene.cast_rays(device._rays)
            casts.append(time.perf_counter() - t)
        static = len(device.directions) / statistics.median(casts)
        coil = next(lot for lot in self.warehouse.lots.values() if lot.commodity == "steel-coil")
        x, y, _ = self.world.position(coil.body)
        rebuilds, points, t = device.world_scene.rebuilds, 0, time.perf_counter()
        for k in range(scans):
            self.world.place(coil.body, (x, y - 0.5 * ((k + 1) % 2), 0.0))
            points += len(device.measure().astype("<f4").tobytes()) // 12
        moving = points / (time.perf_counter() - t)
        if device.world_scene.rebuilds < rebuilds + scans:
            raise RuntimeError("the LiDAR scene was not rebuilt for every scan: the rate would be a static one")
        self.world.place(coil.body, (x, y, 0.0))
        return moving, static


def volume_study(presets: tuple[str, ...] = ("vlp16", "hdl32e"), layouts: int = 5, scans: int = 4,
                 progress: Callable[[float], None] = lambda _f: None) -> list[VolumeError]:
    """Every bay's error, for each preset over `layouts` stock layouts and `scans` scans each."""
    out: list[VolumeError] = []
    jobs = [(p, seed) for p in presets for seed in range(1, layouts + 1)]
    for i, (preset, seed) in enumerate(jobs):
        rig = LidarRig(seed, preset)
        try:
            out += rig.volume_errors(scans)
        finally:
            rig.close()
        progress((i + 1) / len(jobs))
    return out


def throughput(scans: int = 12, preset: str = "vlp16") -> dict[str, float]:
    rig = LidarRig(1, preset)
    try:
        moving, static = rig.moving_goods_rate(scans)
        return {"points_per_s": moving, "static_rays_per_s": static, "rays_per_scan": float(len(rig.device.directions))}
    finally:
        rig.close()
