"""Build a site's devices, each with its own key, wired to its link towards the edge."""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.devices.camera import CameraDevice, CameraNoiseBatch
from cangtwin.devices.climate import ClimateSensor
from cangtwin.devices.device import Device, Tap
from cangtwin.devices.gate_devices import LoopDetector, RfidReader
from cangtwin.devices.lidar import LidarDevice
from cangtwin.devices.positioning import PositioningTag
from cangtwin.devices.weighbridge import WeighbridgeDevice
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.warehouse import Warehouse

SendFactory = Callable[[str], Callable[[bytes], None]]


def build_fleet(
    env: simpy.Environment, warehouse: Warehouse, streams: RandomStreams, send_for: SendFactory, tap: Tap,
    lidar_scans: bool = True,
) -> dict[str, Device]:
    """One device per site entry; `send_for(device_id)` gives the link that device sends on.

    With `lidar_scans` off, LiDARs only send heartbeats: a scan and its edge perception cost
    ~0.3 s of wall time each, so scenarios that are not about stock levels may switch them off.
    """
    spec = warehouse.spec
    rates = spec.rates
    keys = streams.get("devices.keys")
    camera_noise = CameraNoiseBatch(streams.get("devices.camera-noise"))  # one batch for all cameras
    fleet: dict[str, Device] = {}
    for entry in spec.devices:
        common = dict(
            env=env,
            device_id=entry.id,
            device_type=entry.type,
            key=keys.bytes(32),
            rng=streams.get(f"device.{entry.id}"),
            send=send_for(entry.id),
            tap=tap,
            heartbeat_s=rates.heartbeat_s,
        )
        if entry.type == "weighbridge":
            device: Device = WeighbridgeDevice(**common, warehouse=warehouse, scale_id=entry.weighbridge, rate_hz=rates.scale_hz)
        elif entry.type == "rfid-reader":
            device = RfidReader(**common, warehouse=warehouse, gate_id=entry.gate)
        elif entry.type == "gate-sensor":
            device = LoopDetector(**common, warehouse=warehouse, gate_id=entry.gate)
        elif entry.type == "positioning-tag":
            device = PositioningTag(**common, warehouse=warehouse, forklift_id=entry.forklift, rate_hz=rates.positioning_hz)
        elif entry.type == "climate-sensor":
            device = ClimateSensor(**common, warehouse=warehouse, period_s=rates.climate_s)
        elif entry.type == "lidar" and lidar_scans:
            device = LidarDevice(**common, warehouse=warehouse, period_s=rates.lidar_scan_s)
        elif entry.type == "camera":
            device = CameraDevice(**common, warehouse=warehouse, position=tuple(entry.position),
                                  look_at=tuple(entry.look_at), analysis_s=rates.camera_analysis_s, noise=camera_noise)
        else:
            device = Device(**common)
        fleet[entry.id] = device
    return fleet
