"""Per-bay goods volume, count and coverage from one LiDAR scan, computed at the edge.

The envelope of stored goods is a set of upright prisms (coils stand eye-up, bundles and bales
stack), so its volume is the integral over height of its cross-section area A(z), a step
function that drops at each top height. For each top level L found in a bay, A(L) is measured
by ray carving on the plane z = L: a point at or above L marks its column as occupied; a ray
whose return lies below L crossed that plane in free space, so the crossing is marked free.
Every ray crosses the plane, so occupied and free samples cover it with no shadow gap, and
labelling each cell of a 5 cm raster by its nearest sample puts each edge halfway between an
occupied and a free sample: unbiased, unlike a height map, which fills a coil's far-side shadow
with its top. Volume = Σ A(L_k)·(L_k − L_{k−1}). Goods are counted as connected footprints at
the lowest level (a stack counts once: layers are not visible from above).

Open3D is not used here, though it was the plan: its `voxel_down_sample` takes ~0.25 s on a
300k-point scan on this machine where binning into the raster takes ~10 ms, and its RANSAC
`segment_plane` gave different floors in different processes with the same seed (it is
multi-threaded), which would make replayed verdicts differ. The floor is a least-squares plane
fitted near the provisioned mount height instead. DBSCAN is replaced by connected components on
the carved raster, because the far-field point spacing (~0.25 m) is too close to the 0.4 m gap
between goods for one `eps` to separate them.

Platform code: it knows the mount from provisioning and the bays from `SiteGeometry`, never the
twin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec
import numpy as np
from scipy import ndimage

from cangtwin.platform.site_geometry import Bay, SiteGeometry


MIN_RANGE_SIGMA_M = 0.005  # no time-of-flight sensor ranges better; keeps noise-free input sane


class BayScan(msgspec.Struct, frozen=True, tag="bay-scan"):
    """What one scan says about one bay. `at` is the scan's device time."""

    device: str
    bay: str
    at: float
    received_at: float
    volume_m3: float  # outer envelope of the goods
    count_estimate: int  # separate footprints (a stack is one)
    points: int  # returns whose floor position falls in the bay
    occluded_fraction: float  # share of the bay floor with no return within `max_gap_m`
    top_m: float  # highest surface level found in the bay (0 when empty)
    top_points: int  # returns on that level


class PerceptionParams(msgspec.Struct, frozen=True):
    grid_m: float = 0.05  # raster cell
    floor_band_m: float = 0.15  # returns lower than this are floor (5σ of a 3 cm range noise)
    level_bin_m: float = 0.02
    level_window_m: float = 0.05  # half-width of a top level's band of returns
    column_u: float = 4.0  # a return this many noise σ above a level struck something taller
    min_level_points: int = 25
    level_contrast: float = 2.0  # a level's band holds this many times the returns of its surroundings
    max_gap_m: float = 0.5  # raster cells farther than this from any sample are unobserved
    min_footprint_m2: float = 0.1
    floor_search_m: float = 0.3  # the floor is looked for this close to the provisioned height


@dataclass(frozen=True)
class LidarMount:
    """Where a LiDAR sits (site frame, metres) and which bays it watches, from provisioning."""

    device: str
    position: tuple[float, float, float]
    bays: tuple[str, ...]


def mount_from_attrs(device: str, attrs: dict[str, str]) -> LidarMount:
    """Parse `"position": "x,y,z"` and `"bays": "B01,B02"` from a device's provisioning attrs."""
    try:
        position = tuple(float(v) for v in attrs["position"].split(","))
        if len(position) != 3 or not all(math.isfinite(v) for v in position) or position[2] <= 0:
            raise ValueError
    except KeyError:
        raise ValueError(f"lidar {device}: provisioning attrs lack 'position'") from None
    except ValueError:
        raise ValueError(f"lidar {device}: attrs 'position' must be 'x,y,z' in metres with z above the floor, got {attrs['position']!r}") from None
    bays = tuple(b.strip() for b in attrs.get("bays", "").split(",") if b.strip())
    if not bays:
        raise ValueError(f"lidar {device}: provisioning attrs name no 'bays'")
    return LidarMount(device, position, bays)  # type: ignore[arg-type]


def decode_points(device: str, n_points: int, blob: bytes) -> np.ndarray:
    """The scan payload as (n, 3) float64 in the mount frame; refuses a length mismatch."""
    if len(blob) != 12 * n_points:
        raise ValueError(f"scan from {device}: n_points={n_points} but {len(blob)} bytes of points (want {12 * n_points})")
    points = np.frombuffer(blob, dtype="<f4").reshape(-1, 3).astype(np.float64)
    return points[np.isfinite(points).all(axis=1)]


def perceive_scan(
    device: str, clock: float, received_at: float, payload, attrs: dict[str, str], geometry: SiteGeometry,
    params: PerceptionParams = PerceptionParams(),
) -> tuple[BayScan, ...]:
    """The edge's entry point for an admitted `scan` message (payload: its validated struct)."""
    points = decode_points(device, payload.n_points, payload.points)
    return estimate_bays(points, mount_from_attrs(device, attrs), geometry, clock, received_at, params)


def estimate_bays(
    points: np.ndarray, mount: LidarMount, geometry: SiteGeometry, at: float, received_at: float,
    params: PerceptionParams = PerceptionParams(),
) -> tuple[BayScan, ...]:
    """One `BayScan` per bay the mount watches, in the order provisioned."""
    known = {b.id: b for b in geometry.bays}
    missing = [b for b in mount.bays if b not in known]
    if missing:
        raise ValueError(f"lidar {mount.device}: provisioned bays {missing} are not in site {geometry.site}")
    cloud = _Cloud(points, mount, params)
    return tuple(cloud.bay(known[b], at, received_at) for b in mount.bays)


class _Cloud:
    """One scan in site coordinates, with each return's height above the fitted floor."""

    def __init__(self, points: np.ndarray, mount: LidarMount, params: PerceptionParams) -> None:
        self.mount = mount
        self.params = params
        mx, my, mz = mount.position
        normal, offset = _floor(points, mz, params.floor_search_m)
        self.sensor_height = offset  # the sensor's height above the floor plane
        self.height = points @ normal + offset
        depth = offset - self.height  # how far below the sensor each return is
        ok = depth > 1e-3
        self.xy = points[ok, :2] + (mx, my)
        self.rel = points[ok, :2]
        self.height, self.depth = self.height[ok], depth[ok]
        # Range noise moves a return along its ray; its height moves by this share of it.
        self.steepness = self.depth / np.linalg.norm(points[ok], axis=1)

    def crossing(self, idx: np.ndarray, level: float) -> np.ndarray:
        """Where the rays of `idx` cross the plane `level` metres above the floor (site xy)."""
        scale = (self.sensor_height - level) / self.depth[idx]
        return self.rel[idx] * scale[:, None] + self.mount.position[:2]

    def bay(self, bay: Bay, at: float, received_at: float) -> BayScan:
        p, r = self.params, bay.rect
        inside = (self.xy[:, 0] >= r.x0) & (self.xy[:, 0] < r.x1) & (self.xy[:, 1] >= r.y0) & (self.xy[:, 1] < r.y1)
        raster = _Raster(r, p.grid_m)
        floor_seen = raster.counts(self.xy[inside])
        occluded = float(np.mean(raster.gap(floor_seen > 0) > p.max_gap_m / p.grid_m))
        levels = _levels(self.height[inside], self.steepness[inside], p)
        volume, count, below = 0.0, 0, 0.0
        for level, _, sigma in levels:
            occupied = self._occupancy(raster, level, sigma)
            volume += float(occupied.sum()) * p.grid_m**2 * (level - below)
            if below == 0.0:
                count = _footprints(occupied, p.grid_m, p.min_footprint_m2)
            below = level
        top, top_points, _ = levels[-1] if levels else (0.0, 0, 0.0)
        return BayScan(
            device=self.mount.device, bay=bay.id, at=at, received_at=received_at, volume_m3=round(volume, 4),
            count_estimate=count, points=int(inside.sum()), occluded_fraction=round(occluded, 4),
            top_m=round(top, 4), top_points=top_points,
        )

    def _occupancy(self, raster: "_Raster", level: float, sigma_range: float) -> np.ndarray:
        """Fraction occupied of each raster cell at height `level`, by ray carving.

        Every ray gives one sample where it crosses the level's plane, so occupied and free
        samples have the same density and the nearest-sample labelling is unbiased. A return at
        or above the level occupies its column; one clearly below it crossed in free space. A
        return a little below the level is ambiguous (the top with range noise, or a wall just
        under the top): it counts by its posterior odds of being on the top, from a normal top
        and a flat density of wall returns, both fitted to this level's residuals. The weight
        wrongly given to walls then matches, in expectation, the weight taken from noisy tops.
        """
        p, r = self.params, raster.rect
        reach = level * raster.far(self.mount.position) / self.sensor_height + p.max_gap_m
        near = np.flatnonzero(
            (self.xy[:, 0] >= r.x0 - reach) & (self.xy[:, 0] < r.x1 + reach)
            & (self.xy[:, 1] >= r.y0 - reach) & (self.xy[:, 1] < r.y1 + reach)
        )
        height = self.height[near]
        u = (height - level) / (sigma_range * self.steepness[near])  # residual in noise units
        weight = _top_odds(u)
        above = u > p.column_u  # struck something taller: its column is occupied where it struck
        xy = np.where(above[:, None], self.xy[near], self.crossing(near, level))
        seen = raster.counts(xy)
        occupied = raster.counts(xy, weight)
        fraction = np.divide(occupied, seen, out=np.zeros(seen.shape), where=seen > 0)
        distance, (ii, jj) = ndimage.distance_transform_edt(seen == 0, return_indices=True)
        fraction = fraction[ii, jj]  # each unseen cell takes its nearest sample's label
        fraction[distance > p.max_gap_m / p.grid_m] = 0.0  # unobserved: not counted as goods
        return fraction


def _top_odds(u: np.ndarray) -> np.ndarray:
    """Posterior that a return with residual `u` (noise units, relative to a level) is on the top.

    Tops give u ~ N(0, 1); walls below the top give a flat density in u, estimated from the
    band u ∈ [-6, -3] where tops contribute almost nothing; tops are what else lies in [-2, 4).
    """
    wall_density = np.count_nonzero((u >= -6) & (u < -3)) / 3.0
    n_top = max(0.0, np.count_nonzero((u >= -2) & (u < 4)) - 2.0 * wall_density) / 0.977  # N(0,1) mass there
    top_density = n_top * np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    total = top_density + wall_density
    odds = np.divide(top_density, total, out=np.zeros_like(total), where=total > 0)
    return np.where(u >= 0, 1.0, np.where(u < -4, 0.0, odds))


class _Raster:
    def __init__(self, rect, cell: float) -> None:
        self.rect, self.cell = rect, cell
        self.shape = (max(1, round((rect.x1 - rect.x0) / cell)), max(1, round((rect.y1 - rect.y0) / cell)))

    def counts(self, xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        i = np.floor((xy[:, 0] - self.rect.x0) / self.cell).astype(np.int64)
        j = np.floor((xy[:, 1] - self.rect.y0) / self.cell).astype(np.int64)
        ok = (i >= 0) & (i < self.shape[0]) & (j >= 0) & (j < self.shape[1])
        w = None if weights is None else weights[ok]
        flat = np.bincount(i[ok] * self.shape[1] + j[ok], weights=w, minlength=self.shape[0] * self.shape[1])
        return flat.reshape(self.shape).astype(np.float64)

    def gap(self, seen: np.ndarray) -> np.ndarray:
        """Distance, in cells, from each cell to the nearest seen one."""
        if not seen.any():
            return np.full(seen.shape, np.inf)
        return ndimage.distance_transform_edt(~seen)

    def far(self, position: tuple[float, float, float]) -> float:
        """Horizontal distance from the mount to the bay's farthest corner."""
        r = self.rect
        return max(math.hypot(x - position[0], y - position[1]) for x in (r.x0, r.x1) for y in (r.y0, r.y1))


def _floor(points: np.ndarray, mount_height: float, band: float) -> tuple[np.ndarray, float]:
    """Floor plane as (unit normal towards the sensor, sensor height): least squares near the
    provisioned height, refined once; the provisioned level floor if too little of it is seen."""
    normal, offset = np.array([0.0, 0.0, 1.0]), mount_height
    for width in (band, band / 3):
        near = points[np.abs(points @ normal + offset) < width]
        if len(near) < 200:
            return np.array([0.0, 0.0, 1.0]), mount_height
        centre = near.mean(axis=0)
        n = np.linalg.svd(near - centre, full_matrices=False)[2][-1]
        n = n if n[2] > 0 else -n
        normal, offset = n, float(-n @ centre)
    if normal[2] < 0.995 or abs(offset - mount_height) > band:  # a tilted "floor" is not the floor
        return np.array([0.0, 0.0, 1.0]), mount_height
    return normal, offset


def _levels(heights: np.ndarray, steepness: np.ndarray, p: PerceptionParams) -> list[tuple[float, int, float]]:
    """Top surfaces in a bay as (height, returns on it, range noise σ seen on it): height bands
    holding many more returns than their surroundings (a side wall spreads its returns over its
    whole height; a top concentrates them). The noise comes from the returns above the level,
    which only the top gives."""
    goods = heights > p.floor_band_m
    heights, steepness = heights[goods], steepness[goods]
    if len(heights) < p.min_level_points:
        return []
    w = max(1, round(p.level_window_m / p.level_bin_m))
    edges = np.arange(p.floor_band_m, heights.max() + (w + 2) * p.level_bin_m, p.level_bin_m)
    hist = np.histogram(heights, edges)[0].astype(np.float64)
    band = np.convolve(hist, np.ones(2 * w + 1), mode="same")  # returns within ±window of each bin
    around = ndimage.median_filter(band, size=10 * w + 1, mode="constant")
    peak = ndimage.maximum_filter(band, size=6 * w + 1, mode="constant")
    centres = (edges[:-1] + edges[1:]) / 2
    found: list[tuple[float, int, float]] = []
    for k in np.flatnonzero((band == peak) & (band >= p.min_level_points) & (band >= p.level_contrast * around)):
        if found and centres[k] - found[-1][0] < 3 * p.level_window_m:  # a flat-topped peak
            continue
        on = np.abs(heights - centres[k]) <= p.level_window_m
        level = float(np.median(heights[on]))
        up = on & (heights > level)
        sigma = float(np.median((heights[up] - level) / steepness[up])) / 0.6745 if up.any() else 0.0
        found.append((level, int(on.sum()), max(sigma, MIN_RANGE_SIGMA_M)))
    return found


def _footprints(occupied: np.ndarray, cell: float, min_area_m2: float) -> int:
    labels, n = ndimage.label(occupied > 0.5)
    if n == 0:
        return 0
    areas = np.bincount(labels.ravel())[1:] * cell**2
    return int((areas >= min_area_m2).sum())
