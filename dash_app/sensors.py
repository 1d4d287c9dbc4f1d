"""The sensor views: what the devices really sent, from a run's recorded edge inputs.

A run made with `--record-inputs` keeps every frame that reached the edge (`inputs.msgpack`).
These are the wire bytes themselves, so the point clouds, camera frames, weighbridge readings
and forklift positions shown are exactly what the platform saw. Point clouds are thinned here,
on the server (a voxel grid, then a stride), so the browser never gets a full scan.
"""

from __future__ import annotations

import base64
import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from cangtwin.dash_app.results import ResultsError
from cangtwin.platform.wire import WireError, split
from cangtwin.twin.site import Site

MAX_POINTS = 20_000


@dataclass
class Sensors:
    positions: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # forklift -> (t, x, y)
    scale: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)  # device -> t, kg, stable
    frames: dict[str, list[tuple[float, str, bytes]]] = field(default_factory=dict)  # camera -> (t, kind, png)
    scans: dict[str, list[tuple[float, bytes]]] = field(default_factory=dict)  # lidar -> (t, points <f4)
    mounts: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def frame_at(self, camera: str, t: float) -> tuple[float, str, bytes] | None:
        """The last frame `camera` sent at or before `t` (its first frame before that), or None."""
        frames = self.frames.get(camera, [])
        if not frames:
            return None
        return frames[max(bisect.bisect_right(frames, t, key=lambda f: f[0]) - 1, 0)]

    def scan_at(self, lidar: str, t: float) -> tuple[float, np.ndarray] | None:
        """The last scan of `lidar` at or before `t` (the first if none yet), in site coordinates."""
        scans = self.scans.get(lidar, [])
        if not scans:
            return None
        i = max(bisect.bisect_right(scans, t, key=lambda s: s[0]) - 1, 0)
        at, blob = scans[i]
        points = np.frombuffer(blob, dtype="<f4").reshape(-1, 3).astype(np.float64)
        points = points[np.isfinite(points).all(axis=1)]
        return at, points + np.asarray(self.mounts.get(lidar, (0.0, 0.0, 0.0)))


def load_sensors(run_dir: Path, site: Site) -> Sensors | None:
    """The decoded recorded inputs of a run, or None when it did not record them."""
    path = run_dir / "inputs.msgpack"
    if not path.is_file():
        return None
    try:
        frames = msgspec.msgpack.decode(path.read_bytes(), type=list[tuple[float, bytes]])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResultsError(f"{path}: recorded inputs do not decode ({exc}); the file is truncated or damaged") from None
    devices = {d.id: d for d in site.spec.devices}
    sensors = Sensors(mounts={d.id: tuple(d.position) for d in site.spec.devices if d.type == "lidar"})
    scale: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
    positions: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    frames_by: dict[str, list] = defaultdict(list)
    scans: dict[str, list] = defaultdict(list)
    for arrived, frame in frames:
        try:
            env, _body, _tag = split(frame)
            if env.kind not in ("position", "reading", "analysis_frame", "full_frame", "scan"):
                continue
            payload = msgspec.msgpack.decode(env.payload)
        except (WireError, msgspec.DecodeError):
            continue  # a forged or broken frame: the edge refused it too, nothing to draw
        device = devices.get(env.device)
        if device is None or not isinstance(payload, dict):
            continue
        if env.kind == "position" and device.forklift:
            positions[device.forklift].append((arrived, payload["x_m"], payload["y_m"]))
        elif env.kind == "reading":
            scale[env.device].append((arrived, payload["mass_kg"], bool(payload.get("stable"))))
        elif env.kind in ("analysis_frame", "full_frame"):
            frames_by[env.device].append((arrived, env.kind, payload["data"]))
        elif env.kind == "scan":
            scans[env.device].append((arrived, payload["points"]))
    sensors.positions = dict(positions)
    sensors.scale = {d: tuple(np.asarray(col) for col in zip(*rows)) for d, rows in scale.items()}
    sensors.frames = dict(frames_by)
    sensors.scans = dict(scans)
    return sensors


def downsample(points: np.ndarray, max_points: int = MAX_POINTS, voxel_m: float = 0.1) -> np.ndarray:
    """At most `max_points` points: one per `voxel_m` voxel (the first seen), then an even stride."""
    if len(points) == 0:
        return points.reshape(0, 3)
    keys = np.floor(points / voxel_m).astype(np.int64)
    keys -= keys.min(axis=0)
    span = keys.max(axis=0) + 1
    flat = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
    _, first = np.unique(flat, return_index=True)
    kept = points[np.sort(first)]
    if len(kept) > max_points:
        kept = kept[np.linspace(0, len(kept) - 1, max_points).astype(np.int64)]
    return kept


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
