"""The camera device: renders of the pybullet world, its render cache, lighting, tamper hooks.

Frames are taken off the wire the way the edge takes them (HMAC, sequence, thing model) and
decoded with the edge's PNG decoder, so the assertions are about what a camera really sends.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import simpy

from cangtwin.devices.camera import CameraDevice, CameraNoiseBatch
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.edge.auth import DeviceAuthenticator, DeviceRecord
from cangtwin.platform.perception.camera_features import CameraFeatures, decode_png
from cangtwin.platform.thing_model import ThingModel
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import load_site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld, Shape, pb

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10H = dt.datetime(2025, 3, 3, 10, 0, tzinfo=SHANGHAI).timestamp()  # the small site works 8–18
MONDAY_17H59 = dt.datetime(2025, 3, 3, 17, 59, tzinfo=SHANGHAI).timestamp()
MONDAY_22H = dt.datetime(2025, 3, 3, 22, 0, tzinfo=SHANGHAI).timestamp()
FORKLIFT = Shape("box", (2.5, 1.2, 2.2))


class CameraRig:
    """The small site's world and its four cameras, sending to an edge-style admission and
    feature extractor. `frames[camera]` holds (clock, kind, payload) of everything admitted."""

    def __init__(self, seed: int = 1, start: float = MONDAY_10H) -> None:
        self.site = load_site("small")
        self.env = simpy.Environment(initial_time=start)
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
        models = {"camera": ThingModel(thing_descriptions()["camera"])}
        self.auth = DeviceAuthenticator(records, models, max_clock_skew_s=5.0, replay_window=256)
        self.features = CameraFeatures()
        self.frames: dict[str, list] = {camera: [] for camera in self.cameras}
        self.observations: list = []
        self.listeners: list = []
        for camera in self.cameras.values():
            camera.start()

    def _receive(self, frame: bytes) -> None:
        envelope, payload = self.auth.admit(frame, self.env.now)
        self.frames[envelope.device].append((envelope.clock, envelope.kind, payload))
        if envelope.kind == "analysis_frame":
            observation = self.features.observe(envelope.device, envelope.clock, self.env.now, payload)
            self.observations.append(observation)
            for listener in self.listeners:
                listener(observation)

    def run(self, seconds: float) -> None:
        self.env.run(self.env.now + seconds)

    def analysis(self, camera: str, since: float = float("-inf")) -> list[np.ndarray]:
        return [decode_png(p.data) for t, kind, p in self.frames[camera] if kind == "analysis_frame" and t >= since]

    def cross_view(self, path: list[tuple[float, float]], every_s: float = 2.0) -> None:
        """A forklift-sized body driven along `path`, one waypoint per `every_s`."""
        body = self.world.add_goods(FORKLIFT, 3000.0, (*path[0], 0.0))
        for x, y in path[1:]:
            self.run(every_s)
            self.world.place(body, (x, y, 0.0))
        self.run(every_s)
        self.world.remove(body)

    def close(self) -> None:
        self.world.close()


@pytest.fixture
def rig():
    built = CameraRig()
    yield built
    built.close()


def renders(rig: CameraRig) -> dict[str, int]:
    return {name: camera.renders for name, camera in rig.cameras.items()}


def test_a_static_scene_is_rendered_once_and_every_frame_still_carries_fresh_noise(rig):
    rig.run(60)
    frames = rig.analysis("cam-store-w")
    assert renders(rig) == {name: 1 for name in rig.cameras}
    assert len(frames) >= 29
    differences = [np.mean(a.astype(int) - b) for a, b in zip(frames, frames[1:])]
    spreads = [np.std(a.astype(int) - b) for a, b in zip(frames, frames[1:])]
    assert all(abs(d) < 0.2 for d in differences)  # the same scene...
    assert all(1.7 < s < 2.6 for s in spreads)  # ...with independent σ≈1.5 noise on each frame (√2·σ)


def test_a_lot_placed_in_view_invalidates_that_cameras_render_and_no_other(rig):
    rig.run(10)
    before = renders(rig)
    lot = rig.warehouse.lots["B06-01"]  # an aluminium bundle in the west hall, far right of cam-scale's view
    rig.world.place(lot.body, (50.0, 35.0, 0.0))
    t_moved = rig.env.now
    rig.run(10)
    after = renders(rig)
    assert after["cam-store-w"] == before["cam-store-w"] + 1
    assert {k: after[k] for k in ("cam-gate", "cam-scale")} == {k: before[k] for k in ("cam-gate", "cam-scale")}
    old, new = rig.analysis("cam-store-w")[0], rig.analysis("cam-store-w", since=t_moved)[0]
    changed = np.abs(old.astype(int) - new) > 12  # far beyond noise
    assert changed.sum() >= 10


def test_physics_settling_and_moves_outside_the_view_cost_no_render(rig):
    rig.run(10)
    before = renders(rig)
    rig.world.settle(0.5)  # a weighing steps physics: resting lots do not move
    far = rig.world.add_goods(Shape("box", (1.0, 1.0, 1.0)), 1000.0, (79.0, 1.0, 0.0))  # behind every camera
    rig.world.place(far, (79.0, 2.0, 0.0))
    rig.run(10)
    assert renders(rig) == before
    rig.world.remove(rig.warehouse.lots["B02-03"].body)  # a lot only cam-store-w sees vanishes
    rig.run(4)
    assert renders(rig) == {**before, "cam-store-w": before["cam-store-w"] + 1}


def test_lights_off_after_working_hours_darken_the_same_honest_picture():
    rig = CameraRig(start=MONDAY_17H59)
    try:
        rig.run(120)
        frames = rig.analysis("cam-store-e")
        times = [t for t, kind, _ in rig.frames["cam-store-e"] if kind == "analysis_frame"]
        six_pm = MONDAY_17H59 + 60
        day = [f for t, f in zip(times, frames) if t < six_pm - 1]
        night = [f for t, f in zip(times, frames) if t > six_pm + 1]
        assert day and night and rig.cameras["cam-store-e"].renders == 1  # lighting is not a re-render
        day_mean, night_mean = np.mean(day[-1]), np.mean(night[-1])
        assert night_mean < 0.5 * day_mean
        a, b = day[-1].astype(float), night[-1].astype(float)
        correlation = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert correlation > 0.9  # the same scene, only dimmer
        assert np.std(night[-1].astype(int) - night[-2]) > 1.5 * np.std(day[-1].astype(int) - day[-2])  # IR gain noise
    finally:
        rig.close()


def test_cover_puts_an_occluder_on_the_lens_in_the_world(rig):
    rig.run(10)
    camera = rig.cameras["cam-gate"]
    camera.cover()
    eye = camera.lens.position
    target = tuple(np.add(eye, 5 * camera.lens.direction))
    hit = pb.rayTest(eye, target, physicsClientId=rig.world.client)[0]
    assert hit[0] not in (-1, rig.world.floor) and hit[2] < 0.1  # a body within centimetres of the lens
    t_cover = rig.env.now
    rig.run(10)
    covered = rig.analysis("cam-gate", since=t_cover)
    honest = rig.analysis("cam-gate")[0]
    assert np.mean(covered[-1]) < 0.3 * np.mean(honest)
    assert np.std(covered[-1].astype(float)) < 2.5 < np.std(honest.astype(float))  # only noise is left
    camera.uncover()
    t_uncover = rig.env.now
    rig.run(6)
    assert np.mean(rig.analysis("cam-gate", since=t_uncover)[-1]) == pytest.approx(np.mean(honest), abs=2)


def test_replay_loops_earlier_frames_byte_for_byte(rig):
    rig.run(30)
    camera = rig.cameras["cam-scale"]
    recorded = [(t, p.data) for t, kind, p in rig.frames["cam-scale"] if kind == "analysis_frame"]
    since = recorded[-4][0] - 0.5
    loop = [data for t, data in recorded if t >= since]
    t_replay = rig.env.now
    camera.replay(since)
    rig.run(20)
    sent = [p.data for t, kind, p in rig.frames["cam-scale"] if kind == "analysis_frame" and t >= t_replay]
    assert len(sent) >= 9 and sent == [loop[i % len(loop)] for i in range(len(sent))]
    camera.stop_replay()
    rig.run(4)
    assert rig.frames["cam-scale"][-1][2].data not in loop


def test_a_turned_mount_sees_another_picture(rig):
    rig.run(10)
    camera = rig.cameras["cam-store-w"]
    camera.move((52.0, 30.0, 0.0))
    t_moved = rig.env.now
    rig.run(6)
    before, after = rig.analysis("cam-store-w")[0], rig.analysis("cam-store-w", since=t_moved)[-1]
    assert camera.renders == 2
    assert np.mean(np.abs(before.astype(int) - after)) > 5


def test_evidence_command_and_motion_send_full_frames_spaced_by_the_gap(rig):
    rig.run(10)
    camera = rig.cameras["cam-store-w"]
    camera.capture_evidence()
    full = [p for _, kind, p in rig.frames["cam-store-w"] if kind == "full_frame"]
    assert len(full) == 1 and (full[0].width, full[0].height, full[0].encoding) == (640, 480, "png-rgb8")
    assert decode_png(full[0].data).shape == (480, 640, 3)
    rig.run(60)  # past the gap since that full frame
    rig.cross_view([(34.0 + 4 * i, 28.0) for i in range(5)])  # a forklift down the aisle in view
    motion_frames = [t for t, kind, _ in rig.frames["cam-store-w"] if kind == "full_frame"][1:]
    assert len(motion_frames) == 1  # the first motion sends one; the rest fall inside the 60 s gap
    assert camera.full_renders == 2


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    def run(seed: int) -> list[bytes]:
        rig = CameraRig(seed=seed)
        try:
            rig.run(20)
            rig.cameras["cam-gate"].cover()
            rig.run(10)
            return [p.data for name in sorted(rig.frames) for _, _, p in rig.frames[name] if hasattr(p, "data")]
        finally:
            rig.close()

    first = run(11)
    assert first == run(11)
    assert first != run(12)


def test_noise_lanes_never_reuse_a_cut_within_their_period():
    batch = CameraNoiseBatch(np.random.default_rng(0), refresh_every=1 << 30)
    lanes = [batch.register() for _ in range(3)]
    starts: dict[int, set[bytes]] = {lane: set() for lane in lanes}
    for _ in range(5000):
        for lane in lanes:
            starts[lane].add(batch.take(lane, 32, night=False).tobytes())
    assert all(len(s) == 5000 for s in starts.values())
    sample = batch.take(lanes[0], 200_000, night=True).view(np.int8)
    assert np.std(sample) == pytest.approx(3.0, rel=0.05) and abs(np.mean(sample)) < 0.05
