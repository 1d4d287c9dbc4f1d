"""Surveillance cameras: pybullet renders from the mount, sensor noise, lighting, tamper hooks.

A camera sends a 96×72 grey analysis frame every `analysis_s` (what edge boxes really analyse)
and a 640×480 colour frame on motion or on an evidence command. Rendering (`getCameraImage`,
TinyRenderer) costs ~3 ms at 96×72 and ~150 ms at 640×480, so a camera re-renders only when
something in its view moved and otherwise reuses the cached render: a `SceneWatch` tells it which
bodies changed, and it checks those against its view (a pose signature of the bodies it saw, a
frustum test for the others). Each frame then gets fresh temporal noise from a `CameraNoiseBatch`
shared by the fleet. The segmentation mask is used here only (which bodies are in view, where
the background is); it never leaves the device.

Lighting: outside working hours the warehouse lights are off and the camera runs on its IR
illuminator: the image is darker (gain 0.3) and noisier (σ 3 instead of 1.5 grey levels), but
it is the same honest scene.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from datetime import datetime
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

import numpy as np
import simpy

from cangtwin.devices.device import Device
from cangtwin.devices.image_codec import PngWriter
from cangtwin.twin.site import SiteFile
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld, pb

ANALYSIS_SIZE = (96, 72)
FULL_SIZE = (640, 480)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255  # ITU-R BT.601, to 0..1
BACKGROUND = 0.3  # walls and roof beyond the modelled floor (the renderer leaves them white)
BLACK_LEVEL, SPAN = 16, 223  # sensor output stays in 16..239, so ±16 noise never clips
NIGHT_GAIN = 0.3
NOISE_LIMIT = 16
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def working_hours_lights(spec: SiteFile) -> Callable[[float], bool]:
    """lights_on(t) for a site: on during its working hours, in its time zone (t: epoch seconds)."""
    zone, hours = ZoneInfo(spec.timezone), spec.working_hours
    days = set(hours.days)

    def lights_on(t: float) -> bool:
        local = datetime.fromtimestamp(t, zone)
        return WEEKDAYS[local.weekday()] in days and hours.start_hour <= local.hour < hours.end_hour

    return lights_on


class SceneWatch:
    """Which bodies of a world changed, in order, so a camera whose view is static reads no poses.

    It listens to the world's changes: (body, "add" | "place" | "remove"), and (None, "step") for a
    physics step, since anything awake may have moved. pybullet reuses the ids of removed bodies,
    so an add is a new body even where an old one stood. Changes made straight through pybullet
    must be reported with `note`. One watch per world.
    """

    _watches: "weakref.WeakKeyDictionary[PhysicalWorld, SceneWatch]" = weakref.WeakKeyDictionary()

    @classmethod
    def attach(cls, world: PhysicalWorld) -> "SceneWatch":
        watch = cls._watches.get(world)
        if watch is None:
            watch = cls._watches[world] = cls(world)
        return watch

    def __init__(self, world: PhysicalWorld, capacity: int = 4096) -> None:
        self.version = 0
        self._log: deque[tuple[int, int | None, str]] = deque(maxlen=capacity)
        world.listeners.append(self.note)

    def note(self, body: int | None, kind: str) -> None:
        self.version += 1
        self._log.append((self.version, body, kind))

    def changes_since(self, version: int) -> list[tuple[int | None, str]] | None:
        """(body, kind) changed after `version`, newest first; None when the log no longer reaches."""
        if self._log and self._log[0][0] > version + 1:
            return None
        changed = []
        for seen, body, kind in reversed(self._log):
            if seen <= version:
                break
            changed.append((body, kind))
        return changed


class CameraNoiseBatch:
    """Temporal sensor noise for a fleet of cameras, generated in one vectorised batch.

    Drawing 6,912 fresh normals per frame costs ~90 µs here, more than everything else a frame
    costs. As in AV1 film-grain synthesis, noise is cut from a shared pre-generated grain pool
    instead: each camera walks the pool with its own start and a large odd stride, so it never
    sees the same cut twice within 2^19 frames, and the whole pool (both lighting levels) is
    redrawn in one call every `refresh_every` frames.
    """

    SPAN = 1 << 19  # distinct start positions; a power of two, so any odd stride visits all
    STRIDE = 0x9E3779B1 % SPAN | 1

    def __init__(self, rng: np.random.Generator, sigma_day: float = 1.5, sigma_night: float = 3.0,
                 refresh_every: int = 1 << 16) -> None:
        self.rng = rng
        self.sigmas = np.array([[sigma_day], [sigma_night]], dtype=np.float32)
        self.refresh_every = refresh_every
        self.max_size = FULL_SIZE[0] * FULL_SIZE[1]
        self._positions: list[int] = []
        self._taken = 0
        self._refresh()

    def _refresh(self) -> None:
        draws = self.rng.standard_normal((2, self.SPAN + self.max_size), dtype=np.float32) * self.sigmas
        self._pool = np.clip(np.rint(draws), -NOISE_LIMIT, NOISE_LIMIT).astype(np.int8).view(np.uint8)

    def register(self) -> int:
        """A lane for one more camera."""
        self._positions.append(int(self.rng.integers(0, self.SPAN)))
        return len(self._positions) - 1

    def take(self, lane: int, size: int, night: bool) -> np.ndarray:
        """`size` noise values as uint8 two's complement (add with uint8 wrap-around)."""
        if size > self.max_size:
            raise ValueError(f"noise for {size} pixels asked; the pool serves frames up to {self.max_size}")
        self._taken += 1
        if self._taken % self.refresh_every == 0:
            self._refresh()
        start = self._positions[lane]
        self._positions[lane] = (start + self.STRIDE) % self.SPAN
        return self._pool[int(night), start : start + size]


class _Lens:
    """Where a camera looks: its view and projection matrices and a frustum test."""

    def __init__(self, position: tuple, look_at: tuple, fov_deg: float) -> None:
        self.position = tuple(position)
        self.look_at = tuple(look_at)
        direction = np.subtract(look_at, position)
        self.direction = direction / np.linalg.norm(direction)
        up = (0, 0, 1) if abs(self.direction[2]) < 0.99 else (0, 1, 0)
        self.view = pb.computeViewMatrix(self.position, self.look_at, up)
        aspect = ANALYSIS_SIZE[0] / ANALYSIS_SIZE[1]
        self.projection = pb.computeProjectionMatrixFOV(fov_deg, aspect, 0.05, 250.0)
        # pybullet matrices are column-major (OpenGL); clip = P · V · [x, y, z, 1]
        p = np.array(self.projection).reshape(4, 4).T
        v = np.array(self.view).reshape(4, 4).T
        self._clip = p @ v

    def sees_box(self, lo: tuple, hi: tuple) -> bool:
        """Conservative frustum test of an axis-aligned box (false positives only cost a render)."""
        corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        clip = corners @ self._clip.T
        w = clip[:, 3]
        for axis in range(3):
            if np.all(clip[:, axis] < -w) or np.all(clip[:, axis] > w):
                return False
        return True


class CameraDevice(Device):
    def __init__(
        self,
        *args,
        warehouse: Warehouse,
        position: tuple[float, float, float],
        look_at: tuple[float, float, float],
        analysis_s: float,
        noise: CameraNoiseBatch | None = None,
        lights_on: Callable[[float], bool] | None = None,
        fov_deg: float = 50.0,
        full_frame_gap_s: float = 60.0,
        replay_capacity: int = 900,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.world = warehouse.world
        self.client = warehouse.world.client
        self.watch = SceneWatch.attach(warehouse.world)
        self.analysis_s = analysis_s
        self.noise = noise or CameraNoiseBatch(self.rng)
        self._lane = self.noise.register()
        self.lights_on = lights_on or working_hours_lights(warehouse.spec)
        self.fov_deg = fov_deg
        self.full_frame_gap_s = full_frame_gap_s
        self.lens = _Lens(position, look_at, fov_deg)
        self.renders = 0  # analysis-resolution renders (the rest came from the cache)
        self.full_renders = 0
        self._writer = PngWriter(*ANALYSIS_SIZE, channels=1, level=0)
        self._full_writer = PngWriter(*FULL_SIZE, channels=3, level=1)
        self._seen_version = -1
        self._stale = True  # no render yet, or the lens moved
        self._lum: np.ndarray | None = None
        self._signature: dict[int, tuple | None] = {}
        self._bases: dict[bool, np.ndarray] = {}
        self._full: np.ndarray | None = None  # cached full-resolution render, RGB 0..1
        self._last_full_at = -math.inf
        self._last_full_payload: dict | None = None
        self._lights_minute, self._lights_state = None, True
        self._recent: deque[tuple[float, bytes]] = deque(maxlen=replay_capacity)
        self._replay: list[bytes] | None = None
        self._replay_next = 0
        self._occluder: int | None = None

    # --- schedule ------------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self.env.process(self._analysis_stream())

    def _analysis_stream(self) -> Iterator[simpy.Event]:
        yield self.env.timeout(float(self.rng.uniform(0, self.analysis_s)))
        while True:
            self.analysis_frame()
            yield self.env.timeout(self.analysis_s)

    def analysis_frame(self) -> None:
        """Take and send one analysis frame now (the stream calls this every `analysis_s`)."""
        night, changed = self._night(), False
        if self._replay is not None:
            data = self._replay[self._replay_next % len(self._replay)]
            self._replay_next += 1
        else:
            changed = self._refresh_view()
            base = self._base(night)
            np.add(base, self.noise.take(self._lane, base.size, night).reshape(base.shape), out=self._writer.pixels)
            data = self._writer.encode()
            self._recent.append((self.env.now, data))
        width, height = ANALYSIS_SIZE
        self.emit("analysis_frame", {"width": width, "height": height, "encoding": "png-gray8", "data": data})
        if changed and self.env.now - self._last_full_at >= self.full_frame_gap_s:
            self._send_full(night)

    def capture_evidence(self) -> None:
        """The evidence command (取证指令): one full-resolution frame now."""
        if self._replay is not None:
            if self._last_full_payload is not None:  # a tampered device replays what it has
                self.emit("full_frame", self._last_full_payload)
            return
        self._refresh_view()
        self._send_full(self._night())

    # --- rendering ------------------------------------------------------------------------------
    def _night(self) -> bool:
        minute = int(self.env.now // 60)  # zone offsets are whole minutes, so lights switch on one
        if minute != self._lights_minute:
            self._lights_minute, self._lights_state = minute, self.lights_on(self.env.now)
        return not self._lights_state

    def _render(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        width, height = size
        projection = self.lens.projection
        _, _, rgba, _, seg = pb.getCameraImage(
            width, height, self.lens.view, projection, renderer=pb.ER_TINY_RENDERER, physicsClientId=self.client
        )
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)
        return rgba[..., :3], np.asarray(seg).reshape(height, width)

    def _refresh_view(self) -> bool:
        """Re-render if something in view changed; True when the picture changed (motion)."""
        if self._seen_version == self.watch.version and not self._stale:
            return False
        changes = None if self._stale else self.watch.changes_since(self._seen_version)
        self._seen_version = self.watch.version
        if changes is not None and not self._affects_view(changes):
            return False
        self._stale = False
        rgb, seg = self._render(ANALYSIS_SIZE)
        self.renders += 1
        lum = rgb.astype(np.float32) @ LUMA
        lum[seg < 0] = BACKGROUND
        objects = np.unique(seg[seg >= 0] & 0xFFFFFF)
        self._signature = {int(body): self._pose(int(body)) for body in objects}
        previous, self._lum = self._lum, lum
        self._bases.clear()
        self._full = None
        return previous is not None and np.count_nonzero(np.abs(lum - previous) > 0.03) >= 12

    def _pose(self, body: int) -> tuple | None:
        """Position to 1 cm and orientation to 0.01: settling jitter is not a change."""
        try:
            position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=self.client)
        except pb.error:  # removed
            return None
        return tuple(round(v, 2) for v in position) + tuple(round(v, 2) for v in orientation)

    def _affects_view(self, changes: list[tuple[int | None, str]]) -> bool:
        """Does any change touch the view? Seen bodies by their pose signature, others by frustum."""
        latest: dict[int, str] = {}
        replaced: set[int] = set()  # added or removed: a different body now, or none
        stepped = False
        for body, kind in changes:  # newest first
            if body is None:
                stepped = True
                continue
            latest.setdefault(body, kind)
            if kind != "place":
                replaced.add(body)
        for body, kind in latest.items():
            if body in self._signature:
                if body in replaced or self._pose(body) != self._signature[body]:
                    return True
            elif kind != "remove":
                lo, hi = pb.getAABB(body, physicsClientId=self.client)
                if self.lens.sees_box(lo, hi):
                    return True
        return stepped and any(
            self._pose(b) != pose for b, pose in self._signature.items() if b not in latest
        )

    def _base(self, night: bool) -> np.ndarray:
        """The lit, noise-free analysis image as sensor counts."""
        base = self._bases.get(night)
        if base is None:
            gain = NIGHT_GAIN if night else 1.0
            base = self._bases[night] = (BLACK_LEVEL + 0.5 + SPAN * gain * self._lum).astype(np.uint8)
        return base

    def _send_full(self, night: bool) -> None:
        if self._full is None:
            rgb, seg = self._render(FULL_SIZE)
            self.full_renders += 1
            colour = rgb.astype(np.float32) / 255
            colour[seg < 0] = BACKGROUND
            self._full = colour
        gain = NIGHT_GAIN if night else 1.0
        base = (BLACK_LEVEL + 0.5 + SPAN * gain * self._full).astype(np.uint8)
        width, height = FULL_SIZE
        noise = self.noise.take(self._lane, width * height, night).reshape(height, width, 1)
        np.add(base, noise, out=self._full_writer.pixels)
        payload = {"width": width, "height": height, "encoding": "png-rgb8", "data": self._full_writer.encode()}
        self._last_full_at = self.env.now
        self._last_full_payload = payload
        self.emit("full_frame", payload)

    # --- tamper hooks -------------------------------------------------------------------------
    def cover(self) -> None:
        """Someone tapes or bags the lens: an opaque plate right in front of it, in the world."""
        if self._occluder is not None:
            return
        d = self.lens.direction
        centre = np.asarray(self.lens.position) + 0.12 * d
        axis = np.cross((0.0, 0.0, 1.0), d)
        angle = math.acos(float(np.clip(d[2], -1.0, 1.0)))
        orientation = (
            pb.getQuaternionFromAxisAngle(axis.tolist(), angle) if np.linalg.norm(axis) > 1e-9 else (0, 0, 0, 1)
        )
        half = [0.3, 0.3, 0.005]  # a plate across the view axis, far wider than the field of view
        visual = pb.createVisualShape(
            pb.GEOM_BOX, halfExtents=half, rgbaColor=[0.08, 0.08, 0.08, 1], physicsClientId=self.client
        )
        collision = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        self._occluder = pb.createMultiBody(
            0, collision, visual, basePosition=centre.tolist(), baseOrientation=orientation,
            physicsClientId=self.client,
        )
        self.watch.note(self._occluder, "add")

    def uncover(self) -> None:
        if self._occluder is None:
            return
        pb.removeBody(self._occluder, physicsClientId=self.client)
        self.watch.note(self._occluder, "remove")
        self._occluder = None

    def replay(self, start_at: float) -> None:
        """Device tampering: from now on the output loops the frames it captured since `start_at`."""
        frames = [data for t, data in self._recent if t >= start_at]
        if not frames:
            raise ValueError(f"camera {self.id} holds no frame captured since {start_at}")
        self._replay, self._replay_next = frames, 0

    def freeze(self) -> None:
        """Device tampering: the output repeats the last frame (a replay of one frame)."""
        if not self._recent:
            raise ValueError(f"camera {self.id} has captured no frame to freeze on")
        self._replay, self._replay_next = [self._recent[-1][1]], 0

    def stop_replay(self) -> None:
        self._replay = None

    def move(self, new_look_at: tuple[float, float, float]) -> None:
        """The mount is turned: the camera now looks at `new_look_at`."""
        self.lens = _Lens(self.lens.position, new_look_at, self.fov_deg)
        self._stale = True
