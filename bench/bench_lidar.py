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
- edge perception time per scan (all 12 bays), estimated afresh; and with the edge's memory
  (`LidarPerception`) on a scene where nothing moved, where each scan is only checked against
  the last (baseline: the fresh estimate).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from cangtwin.devices.lidar import LidarDevice
from cangtwin.devices.lidar_presets import VLP16
from cangtwin.platform.perception.lidar_volume import LidarPerception, estimate_bays
from cangtwin.scenarios.fidelity_lidar import LidarRig
from cangtwin.twin.world import pb

SCANS = 12


def pybullet_rate(device: LidarDevice, n: int = 40_000) -> float:
    client = device.warehouse.world.client
    start = device.position.tolist()
    ends = (device.position + device.directions[:n] * 60.0).tolist()
    t = time.perf_counter()
    for i in range(0, n, 16_000):  # pybullet's batch limit
        pb.rayTestBatch([start] * len(ends[i : i + 16_000]), ends[i : i + 16_000], numThreads=0, physicsClientId=client)
    return n / (time.perf_counter() - t)


def volume_errors(rig: LidarRig, scans: int) -> tuple[list[float], list[float]]:
    """(relative error of every bay and scan, edge perception seconds per scan)."""
    truth = rig.device.true_bay_volumes()
    errors, seconds = [], []
    for _ in range(scans):
        points = rig.device.measure()
        t = time.perf_counter()
        result = estimate_bays(points, rig.mount, rig.geometry, 0.0, 0.0)
        seconds.append(time.perf_counter() - t)
        errors += [abs(s.volume_m3 - truth[s.bay]) / truth[s.bay] for s in result]
    return errors, seconds


def unchanged_scan_seconds(rig: LidarRig, scans: int) -> float:
    """Median seconds of the edge's perception with memory, once primed, while nothing moves."""
    perception = LidarPerception()
    perception.estimate(rig.device.measure(), rig.mount, rig.geometry, 0.0, 0.0)
    seconds = []
    for k in range(scans):
        points = rig.device.measure()
        t = time.perf_counter()
        perception.estimate(points, rig.mount, rig.geometry, 60.0 * (k + 1), 60.0 * (k + 1))
        seconds.append(time.perf_counter() - t)
    if perception.reused == 0:
        raise RuntimeError("the memory kept no estimate on a scene where nothing moved")
    return statistics.median(seconds)


def main() -> None:
    first = LidarRig(1)
    device = first.device
    print(f"scan pattern: {device.preset.name}, {device.mount.pan_steps} pan steps, "
          f"±{device.mount.max_off_nadir_deg:.1f}° from nadir, {len(device.directions):,} rays/scan")
    moving, static = first.moving_goods_rate(SCANS)
    print(f"LiDAR points/s with moving goods (scene rebuilt every scan): {moving / 1e6:.2f}M "
          f"(baseline: static cast {static / 1e6:.2f}M rays/s, target: >= 2M)")
    print(f"pybullet rayTestBatch rays/s: {pybullet_rate(device) / 1e6:.2f}M "
          f"(baseline: Open3D {static / 1e6:.2f}M rays/s, target: the faster is used)")
    errors, seconds = [], []
    for seed in (1, 2, 3, 4, 5):
        layout = first if seed == 1 else LidarRig(seed)
        e, s = volume_errors(layout, scans=4)
        errors += e
        seconds += s
        if layout is not first:
            layout.close()
    unchanged = unchanged_scan_seconds(first, SCANS)
    _noise_free(device)
    clean, _ = volume_errors(first, scans=1)
    print(f"volume error per bay, median (5 stock layouts x 4 scans x 12 bays, σ = 3 cm): "
          f"{100 * np.median(errors):.2f}% (baseline: σ = 0 {100 * np.median(clean):.2f}%, target: <= 1.5%)")
    print(f"volume error per bay, p90: {100 * np.percentile(errors, 90):.2f}% "
          f"(baseline: σ = 0 {100 * np.percentile(clean, 90):.2f}%, target: stockpile accounting <= 3%)")
    print(f"edge perception per scan (12 bays): {1000 * statistics.median(seconds):.0f} ms "
          f"(baseline: one scan's cast {1000 * len(device.directions) / static:.0f} ms, target: none set)")
    print(f"edge perception per scan with memory, nothing moved: {1000 * unchanged:.0f} ms "
          f"(baseline: estimated afresh {1000 * statistics.median(seconds):.0f} ms, target: none set)")


def _noise_free(device: LidarDevice) -> None:
    device.preset = VLP16.model_copy(update={"range_sigma_m": 0.0, "dropout": 0.0})


if __name__ == "__main__":
    main()
