"""LiDAR sensor presets modelled on real spinning sensors, and how one is mounted for stock scans.

Figures come from the makers' datasheets (Velodyne VLP-16 "Puck" 63-9229 rev. D; HDL-32E
97-0038 rev. N): channel elevations, horizontal resolution at the nominal 10 Hz, range and the
typical range accuracy, which we use as the 1-σ Gaussian range noise. Dropout (no return: dark
or specular surfaces, grazing incidence) is not in the datasheets; ~1 % is what indoor logs of
these sensors typically show, and it is a parameter.

Validated with pydantic, so an impossible preset names its field.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pydantic

from cangtwin.platform.config_file import StrictModel

Elevations = Annotated[tuple[float, ...], pydantic.Strict(False)]


class LidarPreset(StrictModel):
    """One spinning multi-beam sensor: beams at fixed elevations, fired around the spin axis."""

    name: str
    elevations_deg: Elevations  # beam angles from the spin plane, one per channel
    azimuth_resolution_deg: float = pydantic.Field(gt=0, le=10)
    rotation_hz: float = pydantic.Field(gt=0, le=100)
    min_range_m: float = pydantic.Field(ge=0)
    max_range_m: float = pydantic.Field(gt=0, le=2000)
    range_sigma_m: float = pydantic.Field(ge=0, le=1)
    dropout: float = pydantic.Field(ge=0, lt=1)

    @pydantic.field_validator("elevations_deg")
    @classmethod
    def _beams(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("a sensor needs at least one channel")
        bad = [e for e in value if not -90 < e < 90]
        if bad:
            raise ValueError(f"elevations must lie strictly between -90 and 90 degrees, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("two channels share an elevation")
        return value

    @pydantic.model_validator(mode="after")
    def _ranges(self) -> LidarPreset:
        if self.min_range_m >= self.max_range_m:
            raise ValueError(f"min_range_m ({self.min_range_m}) must be below max_range_m ({self.max_range_m})")
        return self

    @property
    def channels(self) -> int:
        return len(self.elevations_deg)

    @property
    def points_per_s(self) -> float:
        """Single-return point rate over a full turn (the datasheets' ~300k/s and ~695k/s)."""
        return self.channels * (360.0 / self.azimuth_resolution_deg) * self.rotation_hz


# VLP-16: 16 beams, -15°..+15° in 2° steps; 0.2° at 10 Hz; 100 m; ±3 cm typical accuracy.
VLP16 = LidarPreset(
    name="vlp16",
    elevations_deg=tuple(float(e) for e in range(-15, 16, 2)),
    azimuth_resolution_deg=0.2,
    rotation_hz=10.0,
    min_range_m=0.5,
    max_range_m=100.0,
    range_sigma_m=0.03,
    dropout=0.01,
)

# HDL-32E: 32 beams, +10.67°..-30.67° (1.33° steps); 0.16° at 10 Hz; 100 m; <2 cm typical accuracy.
HDL32E = LidarPreset(
    name="hdl32e",
    elevations_deg=tuple(round(10.67 - 1.3333 * i, 4) for i in range(32)),
    azimuth_resolution_deg=0.16,
    rotation_hz=10.0,
    min_range_m=1.0,
    max_range_m=100.0,
    range_sigma_m=0.02,
    dropout=0.01,
)

PRESETS = {p.name: p for p in (VLP16, HDL32E)}


def preset(name: str) -> LidarPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown LiDAR preset {name!r}; known: {sorted(PRESETS)}") from None


class PanMount(StrictModel):
    """A ceiling pan unit that turns a spinning sensor lying on its side.

    The sensor's spin axis is horizontal, so each turn sweeps a vertical fan through the nadir;
    the pan unit turns that axis about the vertical by 180° in `pan_steps` even steps per scan
    (one sensor turn per step), which covers the floor all around the mount. Only firings within
    `max_off_nadir_deg` of straight down are kept (the sensor's azimuth FOV window), so no point
    is spent on the roof. The points are reported in the mount frame: origin at the optical
    centre, axes parallel to the site's (x east, y north, z up), as the pan unit's driver
    registers them; the integrator levels and aligns the unit at installation.
    """

    pan_steps: int = pydantic.Field(ge=1, le=3600)
    max_off_nadir_deg: float = pydantic.Field(gt=0, lt=90)
    pan_offset_deg: float = pydantic.Field(default=0.0, ge=0, lt=180)


def scan_directions(sensor: LidarPreset, mount: PanMount) -> np.ndarray:
    """Unit ray directions (n, 3) of one scan in the mount frame, pan step by pan step."""
    half = mount.max_off_nadir_deg
    alphas = np.deg2rad(np.arange(-half, half + 1e-9, sensor.azimuth_resolution_deg))  # from nadir, in the fan
    eps = np.deg2rad(np.asarray(sensor.elevations_deg))
    pans = np.deg2rad(mount.pan_offset_deg + np.arange(mount.pan_steps) * 180.0 / mount.pan_steps)
    a, e = np.meshgrid(alphas, eps, indexing="ij")
    down, across, along = -np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)  # fan frame, axis = "along"
    out = []
    for phi in pans:
        axis = np.array([math.cos(phi), math.sin(phi)])
        side = np.array([-math.sin(phi), math.cos(phi)])
        xy = across[..., None] * side + along[..., None] * axis
        out.append(np.concatenate([xy, down[..., None]], axis=-1).reshape(-1, 3))
    directions = np.concatenate(out)
    # Beams off the spin plane can point further from nadir than the window; the FOV drops them.
    keep = directions[:, 2] <= -math.cos(math.radians(half)) + 1e-12
    return np.ascontiguousarray(directions[keep], dtype=np.float64)
