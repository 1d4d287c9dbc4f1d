"""Camera analysis frames → per-frame features that camera rules read instead of pixels.

The edge decodes each admitted `analysis_frame` (PNG) and keeps a little state per camera:

- **brightness**: mean grey level.
- **texture**: edge contrast without the sensor noise, divided by brightness, so it does not
  care how bright the scene is: a dark but honest night keeps its texture (dimmer edges, dimmer
  mean), a covered lens loses it (a flat surface, only noise). The noise is taken out by
  correlating this frame's neighbour differences with the previous frame's: temporal noise is
  independent between frames, so only the scene's structure survives the product (no noise
  level to estimate, and at night, where noise is large against the structure, that matters).
  Compared with the camera's own baseline (`texture_ratio`), learned from its first frames.
- **frozen_score**: real frames carry fresh temporal noise, so no two are ever identical. 1.0
  when a frame exactly repeats one of the last `repeat_window` frames (a CRC-32 per frame),
  otherwise the share of pixels unchanged since the previous frame (~0.1–0.2 for honest noise).
- **shift_px**: global translation against the camera's reference frame (the mean of its first
  frames) by phase correlation (Kuglin & Hines 1975) on 2×2-binned frames, with a parabolic
  sub-pixel peak. Phase correlation costs ~70 µs here, so it only runs when a cheap zero-shift
  correlation with the reference (`similarity`) drops below `similarity_gate` times the
  similarity the frame's own sensor noise allows an unmoved view; above it the view has not
  moved and the shift is 0 (in a dark, noisy scene phase correlation locks onto noise). When
  even an unmoved view could not correlate above `VISIBLE_SIMILARITY`, the scene is lost in the
  noise and the shift is unknown (None).
- **anchored**: the share of the reference's edges (neighbour differences, per tile of a 4×4
  grid, weighted by the reference's edge contrast there) that still line up where they were: a
  tile is lined up when the zero-shift correlation of its edges with the reference's reaches
  half what its own noise allows, and the reference moved by the measured shift fits it no
  better. Edges, not grey levels: smooth shading (a floor's falloff) looks alike shifted or not.
  Something parked in the view hides some tiles and leaves the rest lined up; a turned camera
  leaves none, whether the new view is the old one shifted or another scene altogether (where
  the shift is a meaningless peak). Only computed when the similarity gate trips (1.0
  otherwise); tiles whose edges are under the noise are left out, and None when no tile can be
  told from noise.
- **motion**: RMS frame-to-frame change beyond sensor noise, relative to brightness: something
  moved in the view (a forklift crossing), which is not tamper.

For motion, the sensor noise level is estimated from the frames themselves: the median, over
the last few frames, of the mean squared frame difference (a moving object touches few frames,
so the median ignores it).
"""

from __future__ import annotations

import statistics
import struct
import zlib
from collections import deque
from typing import Protocol

import msgspec
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Below this expected similarity of an unmoved view, the frame's structure is under its noise.
VISIBLE_SIMILARITY = 0.3
TILES = (4, 4)  # rows × columns of the grid that `anchored` judges
CHANNELS = {0: 1, 2: 3}  # PNG colour type → channels
ENCODING_CHANNELS = {"png-gray8": 1, "png-rgb8": 3}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


class FrameError(ValueError):
    """A frame the edge cannot analyse; names the camera and what is wrong with the frame."""


class CameraObservation(msgspec.Struct, frozen=True, tag="camera-obs"):
    """Features of one analysis frame. `at` is the frame's device clock (event time)."""

    device: str
    at: float
    received_at: float
    brightness: float  # mean grey level, 0–255
    texture: float | None  # noise-free edge contrast / brightness; None on a stream's first frame
    texture_ratio: float | None  # texture / this camera's baseline; None while it is learned
    frozen_score: float  # 1.0 = exact repeat of a recent frame
    similarity: float | None  # zero-shift correlation with the reference frame; None while learning
    shift_px: float | None  # global shift against the reference, analysis pixels; None while learning
    motion: float | None  # RMS change beyond noise / brightness; None on a stream's first frame
    anchored: float | None = None  # share of the reference's edges still lined up; None: can't tell


class FramePayload(Protocol):
    """The `analysis_frame` payload as the camera Thing Description declares it."""

    width: int
    height: int
    encoding: str
    data: bytes


# --- PNG -----------------------------------------------------------------------------------------

def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit grey or RGB PNG → (h, w) or (h, w, 3) uint8. Raises FrameError on anything else."""
    if data[:8] != PNG_SIGNATURE:
        raise FrameError("not a PNG (bad signature)")
    view = memoryview(data)  # chunk bodies are checked and inflated without copies
    pos, header, idat = 8, None, []
    while True:
        if pos + 12 > len(data):
            raise FrameError(f"truncated PNG: chunk header at byte {pos} runs past the end")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise FrameError(f"truncated PNG: chunk {kind!r} at byte {pos} runs past the end")
        body = view[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise FrameError(f"PNG chunk {kind!r} at byte {pos} fails its CRC")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body) if length == 13 else None
            if header is None:
                raise FrameError("PNG IHDR is not 13 bytes")
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos = end
    if header is None or not idat:
        raise FrameError("PNG has no IHDR or no IDAT")
    width, height, depth, color, _compression, _filter, interlace = header
    if depth != 8 or color not in CHANNELS or interlace:
        raise FrameError(f"unsupported PNG: bit depth {depth}, colour type {color}, interlace {interlace}")
    if not (0 < width <= 4096 and 0 < height <= 4096):
        raise FrameError(f"PNG size {width}x{height} is outside 1..4096")
    bpp = CHANNELS[color]
    stride = width * bpp
    try:
        raw = zlib.decompress(idat[0] if len(idat) == 1 else b"".join(idat), bufsize=height * (stride + 1))
    except zlib.error as exc:
        raise FrameError(f"PNG image data does not inflate: {exc}") from None
    if len(raw) != height * (stride + 1):
        raise FrameError(f"PNG image data is {len(raw)} bytes, expected {height * (stride + 1)}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    filters = rows[:, 0]
    if filters.any():
        pixels = _unfilter(rows, bpp)
    else:
        pixels = rows[:, 1:]
    return pixels.reshape(height, width) if bpp == 1 else pixels.reshape(height, width, bpp)


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters (RFC 2083 §6). Sub and Up are vectorised; Average and Paeth
    depend on the pixel just decoded, so they run per byte (our cameras never use them)."""
    height, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            out[y] = line
        elif kind == 1:
            out[y] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            out[y] = line + prior
        elif kind in (3, 4):
            out[y] = _unfilter_sequential(kind, line.tolist(), prior.tolist(), bpp)
        else:
            raise FrameError(f"PNG row {y} has unknown filter type {kind}")
        prior = out[y]
    return out


def _unfilter_sequential(kind: int, line: list[int], prior: list[int], bpp: int) -> list[int]:
    recon = [0] * len(line)
    for i, value in enumerate(line):
        a = recon[i - bpp] if i >= bpp else 0
        b = prior[i]
        if kind == 3:
            predictor = (a + b) >> 1
        else:
            c = prior[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        recon[i] = (value + predictor) & 0xFF
    return recon


# --- features ------------------------------------------------------------------------------------

def _binned(grey: np.ndarray) -> np.ndarray:
    """2×2 sums as float32: quarter the pixels, half the noise, cheap."""
    h, w = grey.shape[0] & ~1, grey.shape[1] & ~1
    a = grey[:h, :w].astype(np.float32)
    rows = a[0::2] + a[1::2]
    return rows[:, 0::2] + rows[:, 1::2]


def _gradients(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical neighbour differences."""
    return b[:, 1:] - b[:, :-1], b[1:] - b[:-1]


def _edge_tiles(b: np.ndarray) -> np.ndarray:
    """A frame's neighbour differences (both directions, on a common grid) cut into the `TILES`
    grid: (rows, cols, 2, tile h, tile w). Edges, unlike smooth shading, say where a view points."""
    gx, gy = _gradients(b)
    h, w = gy.shape[0], gx.shape[1]
    rows, cols = TILES
    th, tw = h // rows, w // cols
    pair = np.stack([gx[: rows * th, : cols * tw], gy[: rows * th, : cols * tw]])
    return pair.reshape(2, rows, th, cols, tw).transpose(1, 3, 0, 2, 4)


def _tile_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ijklm,ijklm->ij", a, b)


class _Reference:
    """A camera's reference view: zero-mean, unit-norm for the gate; its spectrum for the shift."""

    def __init__(self, mean_frame: np.ndarray, noise: float) -> None:
        """`noise`: the variance of sensor noise left in the mean frame."""
        h, w = mean_frame.shape
        self.window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
        centred = mean_frame - mean_frame.mean()
        self.unit = centred / max(float(np.linalg.norm(centred)), 1e-6)
        self.spectrum_conj = np.conj(np.fft.rfft2(centred * self.window))
        self.mean_frame = mean_frame
        self.edges = _edge_tiles(mean_frame)
        self.edge_energy = _tile_dot(self.edges, self.edges)
        per_value = self.edge_energy / self.edges[0, 0].size
        self.edge_weight = np.maximum(0.0, per_value - 2.0 * noise)  # the edge contrast each tile holds

    def anchored(self, frame: np.ndarray, offset: tuple[int, int], noise: float) -> float | None:
        """The share of the reference's edges that still line up where they were (see module doc).
        `offset`: the measured shift in binned pixels; `noise`: the frame's noise variance."""
        edges = _edge_tiles(frame)
        energy = _tile_dot(edges, edges)
        per_value = energy / edges[0, 0].size
        signal = np.maximum(0.0, per_value - 2.0 * noise)  # a difference carries two pixels' noise
        allowed = np.sqrt(signal / np.maximum(per_value, 1e-9))  # an unmoved tile's correlation through noise
        weight = np.where(allowed >= VISIBLE_SIMILARITY, self.edge_weight, 0.0)
        total = float(weight.sum())
        if total <= 0.0:
            return None
        here = _tile_dot(edges, self.edges) / np.sqrt(np.maximum(energy * self.edge_energy, 1e-9))
        lined_up = here >= 0.5 * allowed
        if offset != (0, 0):
            moved = _edge_tiles(np.roll(self.mean_frame, offset, axis=(0, 1)))
            there = _tile_dot(edges, moved) / np.sqrt(np.maximum(energy * _tile_dot(moved, moved), 1e-9))
            lined_up &= here >= there
        return float((weight * lined_up).sum()) / total

    def similarity(self, centred: np.ndarray) -> float:
        return float(np.vdot(centred, self.unit)) / max(float(np.vdot(centred, centred)) ** 0.5, 1e-6)

    def shift(self, centred: np.ndarray, verify: bool) -> tuple[float, tuple[int, int]]:
        """Phase correlation peak, with a parabolic sub-pixel fit on each axis: (analysis pixels,
        the nearest whole (dy, dx) in binned pixels). With `verify` (the view still resembles the
        reference), 0 when the reference moved by that much matches the frame no better than
        where it was: a peak that noise made."""
        cross = np.fft.rfft2(centred * self.window) * self.spectrum_conj
        cross /= np.abs(cross) + 1e-9
        surface = np.fft.irfft2(cross, s=centred.shape)
        h, w = surface.shape
        py, px = divmod(int(np.argmax(surface)), w)

        def refine(m: float, c: float, p: float) -> float:
            denom = m - 2 * c + p
            return 0.0 if denom == 0 else 0.5 * (m - p) / denom

        dy = py + refine(surface[(py - 1) % h, px], surface[py, px], surface[(py + 1) % h, px])
        dx = px + refine(surface[py, (px - 1) % w], surface[py, px], surface[py, (px + 1) % w])
        dy = dy - h if dy > h / 2 else dy
        dx = dx - w if dx > w / 2 else dx
        offset = (round(dy), round(dx))
        if verify and np.vdot(centred, np.roll(self.unit, offset, axis=(0, 1))) <= np.vdot(centred, self.unit):
            return 0.0, (0, 0)
        return 2.0 * float(np.hypot(dx, dy)), offset  # binned pixels → analysis pixels


class CameraStream:
    """The feature state of one camera."""

    def __init__(self, device: str, warmup: int, repeat_window: int, similarity_gate: float) -> None:
        self.device = device
        self.warmup = warmup
        self.similarity_gate = similarity_gate
        self.last_at = float("-inf")
        self._shape: tuple[int, ...] | None = None
        self._prev: np.ndarray | None = None
        self._prev_binned: np.ndarray | None = None
        self._prev_gradients: tuple[np.ndarray, np.ndarray] | None = None
        self._noise = deque(maxlen=9)  # recent mean squared frame differences (binned units)
        self._learning: list[tuple[np.ndarray, float]] = []
        self._reference: _Reference | None = None
        self._baseline: float | None = None
        self._hashes: deque[int] = deque(maxlen=repeat_window)
        self._hash_counts: dict[int, int] = {}

    def observe(self, at: float, received_at: float, grey: np.ndarray) -> CameraObservation:
        if self._shape is not None and grey.shape != self._shape:
            raise FrameError(f"camera {self.device}: frame size changed from {self._shape} to {grey.shape}")
        self._shape = grey.shape
        self.last_at = at
        b = _binned(grey)
        mean_b = float(b.sum()) / b.size
        frozen = self._frozen_score(grey)
        gx, gy = _gradients(b)
        texture = motion = None
        if self._prev_binned is not None:
            d = b - self._prev_binned
            energy = float(np.vdot(d, d)) / d.size
            self._noise.append(energy)
            motion = float(np.sqrt(max(0.0, energy - statistics.median(self._noise)))) / max(mean_b, 1.0)
            px, py = self._prev_gradients
            structure = float(np.vdot(gx, px)) / gx.size + float(np.vdot(gy, py)) / gy.size
            texture = float(np.sqrt(max(0.0, structure))) / max(mean_b, 1.0)
        similarity = shift = ratio = anchored = None
        centred = b - mean_b
        if self._reference is None:
            if texture is not None:
                self._learning.append((b, texture))
            if len(self._learning) >= self.warmup:
                noise = statistics.median(self._noise) / 2 / self.warmup  # what averaging left of it
                self._reference = _Reference(np.mean([f for f, _ in self._learning], axis=0), noise)
                self._baseline = statistics.median(t for _, t in self._learning)
                self._learning = []
        else:
            similarity = self._reference.similarity(centred)
            unmoved = self._unmoved_similarity(centred)
            if unmoved < VISIBLE_SIMILARITY:
                shift = None  # the scene is lost in the noise: no telling where the view points
            elif similarity >= self.similarity_gate * unmoved:
                shift, anchored = 0.0, 1.0
            else:
                shift, offset = self._reference.shift(centred, verify=similarity >= 0.5 * unmoved)
                anchored = self._reference.anchored(b, offset, statistics.median(self._noise) / 2)
            if texture is not None and self._baseline > 0:
                ratio = texture / self._baseline
        self._prev, self._prev_binned, self._prev_gradients = grey, b, (gx, gy)
        def plain(value):  # numpy scalars would not survive the uplink's encoder
            return None if value is None else float(value)

        return CameraObservation(
            self.device, at, received_at, float(mean_b) / 4, plain(texture), plain(ratio), float(frozen),
            plain(similarity), plain(shift), plain(motion), plain(anchored),
        )

    def _unmoved_similarity(self, centred: np.ndarray) -> float:
        """The similarity an unmoved view would show through sensor noise.

        With scene variance S and noise variance N per frame, a frame correlates with the noise-free
        scene at √(S/(S+N)), and the reference, a mean of `warmup` frames, carries N/warmup of
        its own: √(S/(S+N/warmup)). A dark night scene may sit at 0.6 without having moved. N is
        half the median squared frame difference (two frames' noise); S is what the frame has more."""
        if not self._noise:
            return 1.0
        variance = float(np.vdot(centred, centred)) / centred.size
        noise = statistics.median(self._noise) / 2
        signal = max(0.0, variance - noise)
        if signal == 0.0:
            return 0.0
        return float(np.sqrt(signal / variance * signal / (signal + noise / self.warmup)))

    def _frozen_score(self, grey: np.ndarray) -> float:
        digest = zlib.crc32(np.ascontiguousarray(grey))
        repeat = digest in self._hash_counts
        if len(self._hashes) == self._hashes.maxlen:
            oldest = self._hashes[0]
            left = self._hash_counts[oldest] - 1
            if left:
                self._hash_counts[oldest] = left
            else:
                del self._hash_counts[oldest]
        self._hashes.append(digest)
        self._hash_counts[digest] = self._hash_counts.get(digest, 0) + 1
        if repeat:
            return 1.0
        if self._prev is None:
            return 0.0
        return np.count_nonzero(grey == self._prev) / grey.size


class CameraFeatures:
    """Feature extraction for all cameras of one edge. Call `observe` for each admitted frame."""

    def __init__(self, warmup: int = 5, repeat_window: int = 1800, similarity_gate: float = 0.9) -> None:
        self.warmup = warmup
        self.repeat_window = repeat_window
        self.similarity_gate = similarity_gate
        self.streams: dict[str, CameraStream] = {}
        self.stale = 0  # frames older than their camera's newest, skipped

    def observe(self, device: str, at: float, received_at: float, payload: FramePayload) -> CameraObservation | None:
        """Features of one `analysis_frame` (at = its device clock), or None for a stale frame.

        Frames are analysed in each camera's clock order (the features compare a frame with
        the previous one); one older than the newest already analysed is skipped and counted.
        """
        stream = self.streams.get(device)
        if stream is None:
            stream = self.streams[device] = CameraStream(device, self.warmup, self.repeat_window, self.similarity_gate)
        if at <= stream.last_at:
            self.stale += 1
            return None
        try:
            pixels = decode_png(payload.data)
        except FrameError as exc:
            raise FrameError(f"camera {device}, frame at {at:.3f}: {exc}") from None
        expected = ENCODING_CHANNELS.get(payload.encoding)
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        if (pixels.shape[1], pixels.shape[0], channels) != (payload.width, payload.height, expected):
            raise FrameError(
                f"camera {device}, frame at {at:.3f}: declared {payload.width}x{payload.height} "
                f"{payload.encoding}, PNG holds {pixels.shape[1]}x{pixels.shape[0]} with {channels} channel(s)"
            )
        grey = pixels if channels == 1 else (pixels.astype(np.float32) @ LUMA).astype(np.uint8)
        return stream.observe(at, received_at, grey)
