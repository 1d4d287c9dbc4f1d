"""Camera fidelity: how often the edge's camera-tamper rule catches each tamper, and false alarms.

Each trial is a fresh `small` site (stock laid out from the trial's seed) whose four cameras
render the pybullet world and send their analysis stream through the edge's admission
(HMAC, sequence, Thing Description) into `CameraFeatures` and the default rule file's
`camera-tamper` entry. A tamper is applied to one camera the way `fraud/camera.py` applies it
(a cover body in the world, a looped feed, a turned mount); it counts as detected when the rule
raises that condition on that camera within the trial. Honest trials run a working-day stretch
and the lights going off at 18:00; every alert in them is a false alarm.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np
import simpy

from cangtwin.devices.camera import CameraDevice, CameraNoiseBatch
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.fraud.camera import REPLAY_HISTORY_S
from cangtwin.platform.edge.auth import DeviceAuthenticator, DeviceRecord
from cangtwin.platform.perception.camera_features import CameraFeatures, decode_png
from cangtwin.platform.rules.base import BookView
from cangtwin.platform.rules.context import EdgeContext
from cangtwin.platform.rules.engine import RuleEngine
from cangtwin.platform.rules.ruleset import RuleSet, load_ruleset
from cangtwin.platform.thing_model import ThingModel
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld

TAMPERS = ("cover", "replay", "move")
CONDITION = {"cover": "covered", "replay": "frozen", "move": "moved"}
MOVE_DEG = 8.0  # a mount turned by a few degrees: the smallest turn that hides a bay edge
WARMUP_S = 120.0  # the rule learns each camera's baseline first


def _local(site, day: int, hour: int, minute: int = 0) -> float:
    zone = ZoneInfo(site.spec.timezone)
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=zone).timestamp()  # 2026-03-02 is a Monday


class CameraRig:
    """The small site's cameras sending to an edge admission, feature extractor and camera-tamper rule."""

    def __init__(self, seed: int, start: float | None = None) -> None:
        self.site = load_site("small")
        self.env = simpy.Environment(initial_time=start if start is not None else _local(self.site, 3, 10))
        streams = RandomStreams(seed)
        self.world = PhysicalWorld(self.site)
        self.warehouse = Warehouse(self.env, self.site, self.world, streams, lambda *_: None)
        noise = CameraNoiseBatch(streams.get("devices.camera-noise"))
        keys = streams.get("devices.keys")
        self.cameras: dict[str, CameraDevice] = {}
        records = {}
        for entry in self.site.spec.devices:
            if entry.type != "camera":
                continue
            key = keys.bytes(32)
            records[entry.id] = DeviceRecord(entry.id, "camera", key)
            self.cameras[entry.id] = CameraDevice(
                env=self.env, device_id=entry.id, device_type="camera", key=key, rng=streams.get(f"device.{entry.id}"),
                send=self._receive, tap=lambda *_: None, heartbeat_s=self.site.spec.rates.heartbeat_s,
                warehouse=self.warehouse, position=entry.position, look_at=entry.look_at,
                analysis_s=self.site.spec.rates.camera_analysis_s, noise=noise,
            )
        self.auth = DeviceAuthenticator(records, {"camera": ThingModel(thing_descriptions()["camera"])},
                                        max_clock_skew_s=5.0, replay_window=256)
        self.features = CameraFeatures()
        entry = next(r for r in load_ruleset().entries if r.kind == "camera-tamper")
        self.engine = RuleEngine(RuleSet("fidelity", 1, "0" * 64, "<default camera-tamper>", (entry,)),
                                 self.site.id, where="edge")
        self.context = EdgeContext(self.site.id, BookView(), {})
        self.alerts: list = []
        self.analysis_frames: dict[str, list[tuple[float, bytes]]] = {c: [] for c in self.cameras}
        for camera in self.cameras.values():
            camera.start()

    def _receive(self, frame: bytes) -> None:
        envelope, payload = self.auth.admit(frame, self.env.now)
        if envelope.kind != "analysis_frame":
            return
        self.analysis_frames[envelope.device].append((envelope.clock, payload.data))
        observation = self.features.observe(envelope.device, envelope.clock, self.env.now, payload)
        if observation is not None:
            self.alerts += self.engine.evaluate(observation, self.context, raised_at=observation.received_at)

    def run(self, seconds: float) -> None:
        self.env.run(self.env.now + seconds)

    def mean_brightness(self, camera: str, since: float) -> float:
        frames = [decode_png(data) for t, data in self.analysis_frames[camera] if t >= since]
        return float(np.mean([f.mean() for f in frames]))

    def tamper(self, camera: str, mode: str) -> None:
        device = self.cameras[camera]
        if mode == "cover":
            device.cover()
        elif mode == "replay":
            device.replay(self.env.now - REPLAY_HISTORY_S)
        else:
            x, y, z = device.lens.position
            tx, ty, tz = device.lens.look_at
            c, s = math.cos(math.radians(MOVE_DEG)), math.sin(math.radians(MOVE_DEG))
            device.move((x + c * (tx - x) - s * (ty - y), y + s * (tx - x) + c * (ty - y), tz))

    def close(self) -> None:
        self.world.close()


@dataclass(frozen=True)
class TamperTrial:
    mode: str  # cover / replay / move, or "honest day" / "honest night"
    camera: str
    seed: int
    detected: bool  # the expected condition on the expected camera (always False for honest trials)
    latency_s: float | None  # from the tamper to the alert, when detected
    false_alarms: int  # alerts no tamper explains
    camera_hours: float  # honest camera time observed, for false alarms per camera-hour
    frames: int
    wall_s: float


def tamper_trial(mode: str, seed: int, after_s: float) -> TamperTrial:
    rig = CameraRig(seed)
    try:
        names = sorted(rig.cameras)
        camera = names[seed % len(names)]
        started = time.process_time()
        rig.run(WARMUP_S)
        at = rig.env.now
        rig.tamper(camera, mode)
        rig.run(after_s)
        hits = [a for a in rig.alerts if a.targets == (f"device:{camera}",) and a.detail.get("condition") == CONDITION[mode]]
        others = [a for a in rig.alerts if a not in hits]
        frames = sum(len(f) for f in rig.analysis_frames.values())
        honest_hours = (WARMUP_S * len(names) + after_s * (len(names) - 1)) / 3600
        return TamperTrial(mode, camera, seed, bool(hits), hits[0].raised_at - at if hits else None, len(others),
                           honest_hours, frames, time.process_time() - started)
    finally:
        rig.close()


def honest_trial(night: bool, seed: int, seconds: float) -> TamperTrial:
    """A working stretch from 10:00, or the lights going off at 18:00 (starting just before)."""
    site = load_site("small")
    start = _local(site, 3, 17, 58) if night else _local(site, 3, 10)
    rig = CameraRig(seed, start=start)
    try:
        started = time.process_time()
        rig.run(seconds)
        frames = sum(len(f) for f in rig.analysis_frames.values())
        return TamperTrial("honest night" if night else "honest day", "all", seed, False, None,
                           len(rig.alerts), seconds * len(rig.cameras) / 3600, frames, time.process_time() - started)
    finally:
        rig.close()


def camera_study(trials: int = 4, after_s: float = 120.0, honest_s: float = 600.0,
                 progress: Callable[[float], None] = lambda _f: None) -> list[TamperTrial]:
    """`trials` seeds of each tamper (rotating over the cameras) and of each honest stretch."""
    jobs: list[Callable[[], TamperTrial]] = []
    for seed in range(1, trials + 1):
        jobs += [lambda m=mode, s=seed: tamper_trial(m, s, after_s) for mode in TAMPERS]
        jobs += [lambda n=night, s=seed: honest_trial(n, s, honest_s) for night in (False, True)]
    out = []
    for i, job in enumerate(jobs):
        out.append(job())
        progress((i + 1) / len(jobs))
    return out
