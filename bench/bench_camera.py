"""Camera benchmark: analysis frames per wall second, device side and edge side, one core.

Run: python bench/bench_camera.py  (about 30 s).

Times are this process's CPU seconds (`time.process_time`), which equal wall seconds on an idle
core: the bench machine's 2 cores are shared, and wall time would count the other tenants.

The `small` site's 4 cameras and the `medium` site's 24 run their analysis streams (96×72 grey,
one frame per 2 s, PNG, signed) over a busy working half-hour from 10:00: a truck every 15
minutes, alternating an inbound and an outbound, so lots and trucks move through views, renders
are invalidated and motion sends full 640×480 frames. The frames are counted on the wire; the
edge side then runs `CameraFeatures.observe` over every analysis frame that was sent.

Prints `name: measured (baseline: X, target: Y)`:
- device analysis frames/s with the render cache and the shared noise batch: analysis frames
  over the wall time the cameras added to the half-hour (the same half-hour without cameras is
  subtracted), so it includes re-renders and motion full frames; the baseline is a raw
  `getCameraImage` (96×72, TinyRenderer) per frame with no cache, in the same world.
- edge feature extraction frames/s (decode + features); the baseline is the PNG decode alone.
- for each, the cost per frame and what it implies for 24 h of the medium site's 24 cameras
  (1.04M frames), against the twin-speed budget: a 24 h medium run in <= 120 s wall, of which
  cameras must take well under half (target: <= 60 s for devices and edge together).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from zoneinfo import ZoneInfo

import simpy

from cangtwin.devices.camera import ANALYSIS_SIZE, FULL_SIZE, CameraDevice, CameraNoiseBatch
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.perception.camera_features import CameraFeatures, decode_png
from cangtwin.platform.thing_model import ThingModel
from cangtwin.platform.wire import split
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld, pb

BUSY_S = 1800.0
FRAMES_PER_DAY_MEDIUM = 24 * 86400 / 2
TARGET_CAMERA_S_PER_DAY = 60.0
MODEL = ThingModel(thing_descriptions()["camera"])


def build(site_name: str):
    site = load_site(site_name)
    zone = ZoneInfo(site.spec.timezone)
    env = simpy.Environment(initial_time=dt.datetime(2026, 3, 3, 10, 0, tzinfo=zone).timestamp())
    streams = RandomStreams(20260303)
    world = PhysicalWorld(site)
    warehouse = Warehouse(env, site, world, streams, lambda *_: None)
    wire: list[bytes] = []
    noise = CameraNoiseBatch(streams.get("devices.camera-noise"))
    cameras = [
        CameraDevice(
            env=env, device_id=d.id, device_type="camera", key=bytes(32), rng=streams.get(f"device.{d.id}"),
            send=wire.append, tap=lambda *_: None, heartbeat_s=site.spec.rates.heartbeat_s, warehouse=warehouse,
            position=d.position, look_at=d.look_at, analysis_s=site.spec.rates.camera_analysis_s, noise=noise,
        )
        for d in site.spec.devices
        if d.type == "camera"
    ]
    return site, env, world, warehouse, cameras, wire


def busy_half_hour(env: simpy.Environment, warehouse: Warehouse) -> None:
    """A truck every 15 minutes: an inbound of 3 lots, then an outbound of 2."""
    spec = warehouse.spec
    box_bay = next(b for b in spec.bays if spec.commodities[b.commodity].shape == "box")
    leaving = [lot.id for lot in warehouse.lots.values() if lot.bay == box_bay.id][:2]
    env.timeout(60).callbacks.append(lambda _e: warehouse.inbound(box_bay.commodity, 3, box_bay.id))
    env.timeout(960).callbacks.append(lambda _e: warehouse.outbound(leaving))


def busy_wall_s(site_name: str, with_cameras: bool):
    """Wall seconds of the busy half-hour, with or without the cameras running."""
    site, env, world, warehouse, cameras, wire = build(site_name)
    if with_cameras:
        for camera in cameras:
            camera.start()
    busy_half_hour(env, warehouse)
    started = time.process_time()
    env.run(env.now + BUSY_S)
    return time.process_time() - started, world, cameras, wire


def device_side(site_name: str) -> tuple[float, float, list[bytes], dict[str, int]]:
    """(frames/s of camera work with the cache, frames/s rendering every frame, wire, counts).

    The camera work is the busy half-hour's wall time minus the same half-hour without cameras
    (trucks, forklifts and weighings cost the same in both)."""
    twin_only, world, _, _ = busy_wall_s(site_name, with_cameras=False)
    world.close()
    with_cameras, world, cameras, wire = busy_wall_s(site_name, with_cameras=True)
    kinds = {"analysis_frame": 0, "full_frame": 0, "heartbeat": 0}
    for frame in wire:
        kinds[split(frame)[0].kind] += 1
    counts = {
        "cameras": len(cameras),
        "analysis": kinds["analysis_frame"],
        "full": kinds["full_frame"],
        "renders": sum(c.renders for c in cameras),
        "full_renders": sum(c.full_renders for c in cameras),
    }
    # Baseline: what each analysis frame would cost rendered afresh, in the same (final) world.
    width, height = ANALYSIS_SIZE
    n = 60 * len(cameras) // 4
    started = time.process_time()
    for i in range(n):
        lens = cameras[i % len(cameras)].lens
        pb.getCameraImage(width, height, lens.view, lens.projection, renderer=pb.ER_TINY_RENDERER,
                          physicsClientId=world.client)
    raw_rate = n / (time.process_time() - started)
    # The full-resolution share: the same renders again, timed alone.
    started = time.process_time()
    for camera in cameras[: max(1, counts["full_renders"] // 4)]:
        camera._render(FULL_SIZE)
    full_s = (time.process_time() - started) / max(1, counts["full_renders"] // 4) * counts["full_renders"]
    counts["full_s"] = full_s
    world.close()
    return counts["analysis"] / max(with_cameras - twin_only, 1e-9), raw_rate, wire, counts


def edge_side(wire: list[bytes]) -> tuple[float, float, int]:
    """(frames/s through CameraFeatures.observe, frames/s of PNG decode alone, frames)."""
    frames = []
    for data in wire:
        envelope, _, _ = split(data)
        if envelope.kind == "analysis_frame":
            frames.append((envelope.device, envelope.clock, MODEL.decode(envelope.kind, envelope.payload)))
    features = CameraFeatures()
    started = time.process_time()
    for device, clock, payload in frames:
        features.observe(device, clock, clock, payload)
    rate = len(frames) / (time.process_time() - started)
    started = time.process_time()
    for _, _, payload in frames:
        decode_png(payload.data)
    decode_rate = len(frames) / (time.process_time() - started)
    return rate, decode_rate, len(frames)


def day_cost(rate: float) -> float:
    return FRAMES_PER_DAY_MEDIUM / rate


def main() -> int:
    total = {}
    for site_name in ("small", "medium"):
        rate, raw, wire, c = device_side(site_name)
        print(
            f"{site_name} device analysis frames/s ({c['cameras']} cameras, busy {BUSY_S / 60:.0f} min: "
            f"{c['analysis']:,} frames, {c['renders']} renders, {c['full']} full frames of which "
            f"{c['full_renders']} rendered ~{c['full_s']:.1f} s): {rate:,.0f} "
            f"(baseline: {raw:,.0f} raw getCameraImage per frame, target: >= {FRAMES_PER_DAY_MEDIUM / 30:,.0f}"
            f" i.e. <= 30 s per medium day)"
        )
        edge_rate, decode_rate, n = edge_side(wire)
        print(
            f"{site_name} edge feature frames/s ({n:,} frames): {edge_rate:,.0f} "
            f"(baseline: {decode_rate:,.0f} PNG decode alone, target: >= {FRAMES_PER_DAY_MEDIUM / 30:,.0f})"
        )
        total[site_name] = (rate, edge_rate, raw)
    rate, edge_rate, raw = total["medium"]
    print(
        f"medium per-frame cost: device {1e6 / rate:.1f} us, edge {1e6 / edge_rate:.1f} us; "
        f"implied 24 h ({FRAMES_PER_DAY_MEDIUM / 1e6:.2f}M frames): device {day_cost(rate):.1f} s + "
        f"edge {day_cost(edge_rate):.1f} s = {day_cost(rate) + day_cost(edge_rate):.1f} s "
        f"(baseline: {day_cost(raw):,.0f} s rendering every frame, "
        f"target: <= {TARGET_CAMERA_S_PER_DAY:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
