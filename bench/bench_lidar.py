"""LiDAR benchmark: simulated points per wall second with moving goods, and volume accuracy.

Run: python bench/bench_lidar.py  (~1 min on this 2-core machine). Small site, lidar-1 with the
VLP-16 preset and its default pan mount (one scan = one message).

Prints `name: measured (baseline: X, target: Y)`:
- points/s with moving goods: before every scan a coil is moved (as a forklift would), so the
  Open3D scene is rebuilt; then the rays are cast, noise and dropout drawn, and the points packed
  as float32. Baseline: the raw Open3D ray cast of the same rays in a static, prebuilt scene.
- caster choice: pybullet `rayTestBatch` rays/s on the same scene (baseline: Open3D's).
- volume error: median and 90th percentile over bays and scans of |measured − true| / true, the
  truth being the twin lots' envelope volumes. Baseline: the same with σ = 0 (noise-free ranges),
  which isolates what the sampling alone costs.
- edge perception time per scan (all 12 bays).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import open3d as o3d
import simpy

from cangtwin.devices.lidar import LidarDevice
from cangtwin.devices.lidar_presets import VLP16
from cangtwin.platform.perception.lidar_volume import estimate_bays, mount_from_attrs
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld, pb

SCANS = 12


def rig(seed: int):
    site = load_site("small")
    world = PhysicalWorld(site)
    env = simpy.Environment()
    warehouse = Warehouse(env, site, world, RandomStreams(seed), lambda kind, data: None)
    device = LidarDevice(
        env=env, device_id="lidar-1", device_type="lidar", key=b"k" * 32, rng=np.random.default_rng(seed),
        send=lambda b: None, tap=lambda kind, data: None, heartbeat_s=10.0, warehouse=warehouse, period_s=60.0,
    )
    s = site.spec
    geometry = SiteGeometry.model_validate({
        "site": s.site, "timezone": s.timezone, "working_hours": s.working_hours.model_dump(),
        "zones": {k: r.model_dump() for k, r in s.zones.items()},
        "bays": [{"id": b.id, "zone": b.zone, "rect": b.rect.model_dump()} for b in s.bays],
    })
    p = device.position
    mount = mount_from_attrs("lidar-1", {"position": f"{p[0]},{p[1]},{p[2]}", "bays": ",".join(device.bays)})
    return device, geometry, mount


def moving_goods_rate(device: LidarDevice) -> tuple[float, float]:
    """(points/s with a rebuild before every scan, rays/s of a bare cast in a static scene)."""
    scene, _ = device.world_scene.current()
    casts = []
    for _ in range(5):
        t = time.perf_counter()
        scene.cast_rays(device._rays)
        casts.append(time.perf_counter() - t)
    static = len(device.directions) / statistics.median(casts)
    coil = device.warehouse.lots["B02-01"]
    x, y, _ = device.warehouse.world.position(coil.body)
    points, t = 0, time.perf_counter()
    for k in range(SCANS):
        device.warehouse.world.place(coil.body, (x, y - 0.5 * (k % 2), 0.0))  # it moved since the last scan
        points += len(device.measure().astype("<f4").tobytes()) // 12
    moving = points / (time.perf_counter() - t)
    assert device.world_scene.rebuilds >= SCANS
    device.warehouse.world.place(coil.body, (x, y, 0.0))
    return moving, static


def pybullet_rate(device: LidarDevice, n: int = 40_000) -> float:
    client = device.warehouse.world.client
    start = device.position.tolist()
    ends = (device.position + device.directions[:n] * 60.0).tolist()
    t = time.perf_counter()
    for i in range(0, n, 16_000):  # pybullet's batch limit
        pb.rayTestBatch([start] * len(ends[i : i + 16_000]), ends[i : i + 16_000], numThreads=0, physicsClientId=client)
    return n / (time.perf_counter() - t)


def volume_errors(device: LidarDevice, geometry, mount, scans: int) -> tuple[list[float], list[float]]:
    truth = device.true_bay_volumes()
    errors, seconds = [], []
    for _ in range(scans):
        points = device.measure()
        t = time.perf_counter()
        result = estimate_bays(points, mount, geometry, 0.0, 0.0)
        seconds.append(time.perf_counter() - t)
        errors += [abs(s.volume_m3 - truth[s.bay]) / truth[s.bay] for s in result]
    return errors, seconds


def main() -> None:
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    device, geometry, mount = rig(1)
    print(f"scan pattern: {device.preset.name}, {device.mount.pan_steps} pan steps, "
          f"±{device.mount.max_off_nadir_deg:.1f}° from nadir, {len(device.directions):,} rays/scan")
    moving, static = moving_goods_rate(device)
    print(f"LiDAR points/s with moving goods (scene rebuilt every scan): {moving / 1e6:.2f}M "
          f"(baseline: static cast {static / 1e6:.2f}M rays/s, target: >= 2M)")
    print(f"pybullet rayTestBatch rays/s: {pybullet_rate(device) / 1e6:.2f}M "
          f"(baseline: Open3D {static / 1e6:.2f}M rays/s, target: the faster is used)")
    errors, seconds = [], []
    for seed in (1, 2, 3, 4, 5):
        d, g, m = (device, geometry, mount) if seed == 1 else rig(seed)
        e, s = volume_errors(d, g, m, scans=4)
        errors += e
        seconds += s
    clean, _ = volume_errors(_noise_free(device), geometry, mount, scans=1)
    print(f"volume error per bay, median (5 stock layouts x 4 scans x 12 bays, σ = 3 cm): "
          f"{100 * np.median(errors):.2f}% (baseline: σ = 0 {100 * np.median(clean):.2f}%, target: <= 1.5%)")
    print(f"volume error per bay, p90: {100 * np.percentile(errors, 90):.2f}% "
          f"(baseline: σ = 0 {100 * np.percentile(clean, 90):.2f}%, target: stockpile accounting <= 3%)")
    print(f"edge perception per scan (12 bays): {1000 * statistics.median(seconds):.0f} ms "
          f"(baseline: one scan's cast {1000 * len(device.directions) / static:.0f} ms, target: none set)")


def _noise_free(device: LidarDevice) -> LidarDevice:
    device.preset = VLP16.model_copy(update={"range_sigma_m": 0.0, "dropout": 0.0})
    return device


if __name__ == "__main__":
    main()
