"""Device-level faults and tampering: failure, clock drift, replayed messages, a rigged scale.

Each acts inside the device (its power, its clock, its radio, its circuit) and the platform
only sees the consequences in the bytes: silence, skewed clocks, repeated sequence numbers,
or readings that never return to zero.
"""

from __future__ import annotations

from typing import Callable

import simpy

from cangtwin.devices.device import Device
from cangtwin.devices.weighbridge import WeighbridgeDevice
from cangtwin.fraud.label import Label


def _label(label_id: str, kind: str, device: str, at: float, magnitude: float, unit: str, rules: list[str],
           fault: bool) -> Label:
    return Label(id=label_id, kind=kind, fault=fault, targets=[f"device:{device}"], injected_at=at, onset=at,
                 magnitude=magnitude, magnitude_unit=unit, primary_rules=rules, window_s=3600.0)


def inject_device_failure(env: simpy.Environment, device: Device, label_id: str, at: float,
                          record: Callable[[Label], None]) -> Label:
    """The device dies: no more messages, not even heartbeats."""
    label = _label(label_id, "device-failure", device.id, at, 1, "device", ["device-offline"], fault=True)

    def fail(_e: simpy.Event) -> None:
        device.alive = False
        record(label)

    env.timeout(at - env.now).callbacks.append(fail)
    return label


def inject_clock_drift(env: simpy.Environment, device: Device, label_id: str, at: float, offset_s: float,
                       record: Callable[[Label], None]) -> Label:
    """The device's clock jumps by `offset_s` (a lost NTP sync, a flat RTC battery)."""
    label = _label(label_id, "clock-drift", device.id, at, abs(offset_s), "s", ["message-integrity"], fault=True)
    label.secondary_rules = ["device-offline"]  # every frame is refused, so the edge stops hearing it

    def drift(_e: simpy.Event) -> None:
        device.clock_offset_s += offset_s
        record(label)

    env.timeout(at - env.now).callbacks.append(drift)
    return label


def inject_replay(env: simpy.Environment, device: Device, label_id: str, at: float, count: int,
                  send: Callable[[bytes], None], record: Callable[[Label], None]) -> Label:
    """An attacker records the device's frames off the air and plays them back later."""
    label = _label(label_id, "replayed-messages", device.id, at, count, "messages", ["message-integrity"],
                   fault=False)
    captured: list[bytes] = []
    honest_send = device.send

    def tap(frame: bytes) -> None:
        captured.append(frame)
        del captured[:-count]
        honest_send(frame)

    device.send = tap

    def play(_e: simpy.Event) -> None:
        record(label)
        for frame in list(captured):
            send(frame)

    env.timeout(at - env.now).callbacks.append(play)
    return label


def inject_scale_offset(env: simpy.Environment, scale: WeighbridgeDevice, label_id: str, at: float,
                        offset_kg: float, record: Callable[[Label], None]) -> Label:
    """A remote-control circuit in the scale adds `offset_kg` to every reading (遥控作弊)."""
    label = _label(label_id, "scale-remote-offset", scale.id, at, abs(offset_kg), "kg", ["weighbridge-anomaly"],
                   fault=False)
    label.secondary_rules = ["substitution-or-hollow"]

    def rig(_e: simpy.Event) -> None:
        scale.indicator.remote_offset_kg = offset_kg
        scale.wake()  # the indicator reports again: it no longer reads zero
        record(label)

    env.timeout(at - env.now).callbacks.append(rig)
    return label
