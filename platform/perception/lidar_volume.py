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

A full estimate costs ~10 ms a bay. At the edge, `LidarPerception` keeps each bay's estimate
for as long as the returns that could affect it are the same scene up to sensor noise (~10 ms
a scan to check), and estimates afresh, from that very scan, any bay a change could reach.

Platform code: it knows the mount from provisioning and the bays from `SiteGeometry`, never the
twin.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import msgspec
import numpy as np
from scipy import ndimage

from cangtwin.platform.site_geometry import Bay, SiteGeometry


MIN_RANGE_SIGMA_M = 0.005  # no time-of-flight sensor ranges better; keeps noise-free input sane
FLOOR_SAMPLE = 40_000


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
    change_cell_m: float = 0.5  # footprint raster on which a scan is compared with the reference
    change_margin_m: float = 20.0  # footprints compared this far around the bays (a 4 m truck 40 m out lands 18 m on)
    change_z: float = 6.0  # a cell changed when its count or mean depth moves this many standard errors
    change_sigma_m: float = 0.03  # range noise of a return (its depth noise is at most this)
    change_dropout: float = 0.05  # share of returns a scan may drop


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
    points = np.frombuffer(blob, dtype="<f4").reshape(-1, 3)
    finite = np.isfinite(points).all(axis=1)
    return (points if finite.all() else points[finite]).astype(np.float64)


def perceive_scan(
    device: str, clock: float, received_at: float, payload, attrs: dict[str, str], geometry: SiteGeometry,
    params: PerceptionParams = PerceptionParams(),
) -> tuple[BayScan, ...]:
    """One admitted `scan` message (payload: its validated struct) with no memory: every bay estimated."""
    return LidarPerception(params).perceive(device, clock, received_at, payload, attrs, geometry)


def estimate_bays(
    points: np.ndarray, mount: LidarMount, geometry: SiteGeometry, at: float, received_at: float,
    params: PerceptionParams = PerceptionParams(),
) -> tuple[BayScan, ...]:
    """One `BayScan` per bay the mount watches, in the order provisioned, every bay estimated afresh."""
    return LidarPerception(params).estimate(points, mount, geometry, at, received_at)


class LidarPerception:
    """The edge's LiDAR perception with memory: a bay is estimated afresh only when its returns changed.

    Range noise moves a return along its ray, never across rays, so the point where a return's
    ray meets the floor plane (its *footprint*) is noise-free: the same ray has the same
    footprint in every scan, whatever it hit. Returns are binned by footprint on a coarse raster
    (count, Σ depth, Σ depth² per cell) and each cell is compared with the device's reference:
    counts may differ by dropout, mean depths by range noise and by which returns dropped out.
    A cell beyond `change_z` standard errors on either is a change (goods put down or taken, an
    occluder, a forklift passing). A changed ray's returns, old and new, lie on its line of
    sight below the highest of them, so the bays that line of sight passes within reach of are
    estimated afresh from this scan; every other bay keeps its estimate, with this scan's time
    and return count. Changed cells take this scan's values as their reference; unchanged cells
    keep theirs, so a slow drift is measured against where it started and cannot creep past.
    A false change only costs an estimate; the error thresholds are therefore tight.
    """

    def __init__(self, params: PerceptionParams = PerceptionParams()) -> None:
        self.params = params
        self._memory: dict[str, _Memory] = {}
        self.estimated = 0  # bays estimated afresh
        self.reused = 0  # bays whose returns had not changed

    def perceive(
        self, device: str, clock: float, received_at: float, payload, attrs: dict[str, str], geometry: SiteGeometry,
    ) -> tuple[BayScan, ...]:
        """The edge's entry point for an admitted `scan` message (payload: its validated struct)."""
        points = decode_points(device, payload.n_points, payload.points)
        return self.estimate(points, mount_from_attrs(device, attrs), geometry, clock, received_at)

    def estimate(
        self, points: np.ndarray, mount: LidarMount, geometry: SiteGeometry, at: float, received_at: float,
    ) -> tuple[BayScan, ...]:
        """One `BayScan` per bay the mount watches, in the order provisioned."""
        known = {b.id: b for b in geometry.bays}
        missing = [b for b in mount.bays if b not in known]
        if missing:
            raise ValueError(f"lidar {mount.device}: provisioned bays {missing} are not in site {geometry.site}")
        bays = [known[b] for b in mount.bays]
        rays = _Rays(points, mount, self.params)
        memory = self._memory.get(mount.device)
        frame = _footprint_frame(bays, mount, self.params)
        cells = rays.footprints(frame)
        if memory is None or memory.frame != frame:
            memory = self._memory[mount.device] = _Memory(frame, cells, {})
            stale = {b.id for b in bays}
        else:
            changed = ~_same_cells(memory.cells, cells, self.params)
            stale = {b.id for b in bays if b.id not in memory.scans} | rays.reached(bays, frame, memory.cells, cells, changed, memory.scans)
            memory.cells[:, changed] = cells[:, changed]
        cloud = _Cloud(np.asarray(points, dtype=np.float64), mount, self.params) if stale else None
        out = []
        for bay in bays:
            if cloud is not None and bay.id in stale:
                self.estimated += 1
                memory.scans[bay.id] = cloud.bay(bay, at, received_at)
                out.append(memory.scans[bay.id])
            else:
                self.reused += 1
                out.append(msgspec.structs.replace(memory.scans[bay.id], at=at, received_at=received_at,
                                                   points=rays.points_in(bay.rect, frame)))
        return tuple(out)


@dataclass
class _Memory:
    frame: tuple[int, int, int, int]  # footprint cells (i0, i1, j0, j1) compared
    cells: np.ndarray  # (3, …) reference count, Σ depth, Σ depth² of each cell
    scans: dict[str, BayScan]  # each bay's last full estimate


def _footprint_frame(bays: list[Bay], mount: LidarMount, p: PerceptionParams) -> tuple[int, int, int, int]:
    """The footprint cells compared: the bays' bounding box widened by `change_margin_m`."""
    c, m = p.change_cell_m, p.change_margin_m
    return (math.floor((min(b.rect.x0 for b in bays) - m) / c), math.ceil((max(b.rect.x1 for b in bays) + m) / c),
            math.floor((min(b.rect.y0 for b in bays) - m) / c), math.ceil((max(b.rect.y1 for b in bays) + m) / c))


def _same_cells(before: np.ndarray, now: np.ndarray, p: PerceptionParams) -> np.ndarray:
    """Per cell: are two scans' returns there the same up to dropout and range noise?

    The rays are the same ones, so a count differs only by dropout (binomial, at most
    `change_dropout`), and a mean depth by each return's noise (at most `change_sigma_m`) and by
    which returns dropped out (the cell's own depth spread, at the dropout rate).
    """
    n1, s1, q1 = before
    n2, s2, q2 = now
    z, q = p.change_z, p.change_dropout
    same = np.abs(n1 - n2) <= z * np.sqrt(q * (n1 + n2)) + 2.0
    both = (n1 > 0) & (n2 > 0)
    m1 = np.divide(s1, n1, out=np.zeros_like(s1), where=both)
    m2 = np.divide(s2, n2, out=np.zeros_like(s2), where=both)
    spread = np.divide(q1 - s1 * m1 + q2 - s2 * m2, n1 + n2, out=np.zeros_like(s1), where=both)
    error2 = (p.change_sigma_m**2 + q * spread) * np.divide(1.0, n1, out=np.zeros_like(s1), where=both)
    error2 += (p.change_sigma_m**2 + q * spread) * np.divide(1.0, n2, out=np.zeros_like(s2), where=both)
    return same & ((m1 - m2) ** 2 <= z * z * error2)


class _Rays:
    """One scan's returns as the mount sees them, before any floor fit: what the memory compares.

    Depth below the sensor stands in for height (the floor does not move between two scans of
    an untampered mount; if it did, every cell changes). A return's footprint is where its ray
    meets the floor: it scales with range exactly as the return does, so range noise leaves it
    where it is and the same ray has the same footprint in every scan, whatever it hit."""

    def __init__(self, points: np.ndarray, mount: LidarMount, params: PerceptionParams) -> None:
        self.mount, self.params = mount, params
        below = points[:, 2] < -1e-3
        kept = points if below.all() else points[below]
        self.rel = kept[:, :2].astype(np.float64)  # as `_Cloud` has them, so counts agree to the return
        self.depth = -kept[:, 2].astype(np.float64)
        self._xy_counts: np.ndarray | None = None

    def _cells(self, x: np.ndarray, y: np.ndarray, frame: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, int]:
        """Flat cell index of each (x, y) inside `frame`, which of them are inside, and the cell count."""
        i0, i1, j0, j1 = frame
        c = self.params.change_cell_m
        i = np.floor(x / c).astype(np.int64) - i0
        j = np.floor(y / c).astype(np.int64) - j0
        ok = (i >= 0) & (i < i1 - i0) & (j >= 0) & (j < j1 - j0)
        return i[ok] * (j1 - j0) + j[ok], ok, (i1 - i0) * (j1 - j0)

    def footprints(self, frame: tuple[int, int, int, int]) -> np.ndarray:
        """Count, Σ depth and Σ depth² of the returns of each footprint cell of `frame`."""
        mx, my, mz = self.mount.position
        scale = mz / self.depth
        flat, ok, size = self._cells(self.rel[:, 0] * scale + mx, self.rel[:, 1] * scale + my, frame)
        d = self.depth[ok]
        shape = (3, frame[1] - frame[0], frame[3] - frame[2])
        return np.stack([
            np.bincount(flat, minlength=size).astype(np.float64),
            np.bincount(flat, d, minlength=size),
            np.bincount(flat, d * d, minlength=size),
        ]).reshape(shape)

    def reached(self, bays: list[Bay], frame: tuple[int, int, int, int], before: np.ndarray, now: np.ndarray,
                changed: np.ndarray, scans: dict[str, BayScan]) -> set[str]:
        """Bays within reach of the line of sight of a changed footprint cell, down from its highest return.

        The highest return of a cell (the least depth) is bounded from its count, mean and spread
        by Samuelson's inequality: no value is further from the mean than √(n−1) population
        deviations."""
        ci, cj = np.nonzero(changed)
        if len(ci) == 0:
            return set()
        c, (mx, my, mz) = self.params.change_cell_m, self.mount.position
        tops = np.zeros(len(ci))
        for n, s, q in (before[:, ci, cj], now[:, ci, cj]):
            mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
            var = np.divide(np.maximum(q - s * mean, 0.0), n, out=np.zeros_like(s), where=n > 0)
            tops = np.maximum(tops, np.where(n > 0, mz - mean + np.sqrt(np.maximum(n - 1, 0.0) * var), 0.0))
        share = np.clip(tops / mz, 0.0, 1.0)
        fx, fy = (ci + frame[0] + 0.5) * c, (cj + frame[2] + 0.5) * c  # footprint cell centres
        ex, ey = fx - (fx - mx) * share, fy - (fy - my) * share  # where the line of sight is that high
        lo_x, hi_x = np.minimum(fx, ex) - c / 2, np.maximum(fx, ex) + c / 2
        lo_y, hi_y = np.minimum(fy, ey) - c / 2, np.maximum(fy, ey) + c / 2
        out = set()
        for bay in bays:
            r = bay.rect
            level = np.maximum(tops, scans[bay.id].top_m) if bay.id in scans else tops
            reach = _reach(r, level, self.mount, mz, self.params)
            if np.any((hi_x >= r.x0 - reach) & (lo_x <= r.x1 + reach) & (hi_y >= r.y0 - reach) & (lo_y <= r.y1 + reach)):
                out.add(bay.id)
        return out

    def points_in(self, rect, frame: tuple[int, int, int, int]) -> int:
        """Returns whose floor position falls in `rect`: summed from cells when they tile it."""
        c, (mx, my, _) = self.params.change_cell_m, self.mount.position
        x, y = self.rel[:, 0] + mx, self.rel[:, 1] + my
        edges = [v / c for v in (rect.x0, rect.x1, rect.y0, rect.y1)]
        if not all(e.is_integer() for e in edges):
            return int(np.count_nonzero((x >= rect.x0) & (x < rect.x1) & (y >= rect.y0) & (y < rect.y1)))
        if self._xy_counts is None:
            flat, _, size = self._cells(x, y, frame)
            self._xy_counts = np.bincount(flat, minlength=size).reshape(frame[1] - frame[0], frame[3] - frame[2])
        i0, i1, j0, j1 = (int(e) for e in edges)
        return int(self._xy_counts[i0 - frame[0] : i1 - frame[0], j0 - frame[2] : j1 - frame[2]].sum())


def _reach(rect, level, mount: LidarMount, sensor_height: float, p: PerceptionParams):
    """How far outside `rect` a return can land whose ray crosses the plane `level` over it."""
    return level * _Raster(rect, p.grid_m).far(mount.position) / sensor_height + p.max_gap_m


class _Cloud:
    """One scan in site coordinates, with each return's height above the fitted floor."""

    def __init__(self, points: np.ndarray, mount: LidarMount, params: PerceptionParams) -> None:
        self.mount = mount
        self.params = params
        mx, my, mz = mount.position
        normal, offset = _floor(points, mz, params.floor_search_m)
        self.sensor_height = offset  # the sensor's height above the floor plane
        height = _heights(points, normal, offset)
        depth = offset - height  # how far below the sensor each return is
        ok = depth > 1e-3
        kept = points[ok]
        self.rel = kept[:, :2]
        self.xy = self.rel + (mx, my)
        self.height, self.depth = height[ok], depth[ok]
        self._z = kept[:, 2]

    @functools.cached_property
    def steepness(self) -> np.ndarray:
        """Range noise moves a return along its ray; its height moves by this share of it."""
        return self.depth / np.sqrt(self.rel[:, 0] ** 2 + self.rel[:, 1] ** 2 + self._z**2)

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


def _heights(points: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Signed distance of each point above the plane; by columns, so no BLAS threads and one
    summation order on every machine."""
    return points[:, 0] * normal[0] + points[:, 1] * normal[1] + points[:, 2] * normal[2] + offset


def _floor(points: np.ndarray, mount_height: float, band: float) -> tuple[np.ndarray, float]:
    """Floor plane as (unit normal towards the sensor, sensor height): least squares near the
    provisioned height, refined once; the provisioned level floor if too little of it is seen.
    The plane is the smallest principal axis of the near returns' 3×3 scatter matrix, fitted to
    every k-th return (at most `FLOOR_SAMPLE` of them): the fit's error is σ/√n, 0.2 mm there."""
    normal, offset = np.array([0.0, 0.0, 1.0]), mount_height
    sample = points[:: max(1, len(points) // FLOOR_SAMPLE)]
    for width in (band, band / 3):
        near = sample[np.abs(_heights(sample, normal, offset)) < width]
        if len(near) < 200:
            return np.array([0.0, 0.0, 1.0]), mount_height
        centre = near.mean(axis=0)
        d = near - centre
        scatter = np.array([[float(np.sum(d[:, a] * d[:, b])) for b in range(3)] for a in range(3)])
        n = np.linalg.eigh(scatter)[1][:, 0]
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
