"""Edge camera features: PNG decoding, and features that track the physics of the picture.

Frames here come from a small synthetic sensor (a textured scene × lighting gain + black level +
fresh Gaussian noise), encoded by the cameras' own PNG writer and validated by the camera's
thing model, so the extractor sees exactly what the edge admits.
"""

from __future__ import annotations

import struct
import zlib

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.devices.image_codec import PNG_SIGNATURE, encode_png
from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.perception.camera_features import CameraFeatures, FrameError, decode_png
from cangtwin.platform.thing_model import ThingModel

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
MODEL = ThingModel(thing_descriptions()["camera"])
W, H = 96, 72


def payload(pixels: np.ndarray, **override):
    fields = {"width": pixels.shape[1], "height": pixels.shape[0],
              "encoding": "png-gray8" if pixels.ndim == 2 else "png-rgb8", "data": encode_png(pixels, level=1)}
    return MODEL.decode("analysis_frame", msgspec.msgpack.encode({**fields, **override}))


def scene(seed: int, width: int = W + 24, height: int = H + 24) -> np.ndarray:
    """A warehouse-like texture: 6-pixel cells of random reflectance, 0..1."""
    cells = np.random.default_rng(seed).uniform(0.2, 1.0, (height // 6 + 1, width // 6 + 1))
    return np.kron(cells, np.ones((6, 6)))[:height, :width]


class Sensor:
    """gain × scene + black level + fresh noise, as 8-bit counts."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def frame(self, view: np.ndarray, gain: float = 1.0, sigma: float = 1.5) -> np.ndarray:
        counts = 16 + 223 * gain * view + self.rng.normal(0, sigma, view.shape)
        return np.clip(np.rint(counts), 0, 255).astype(np.uint8)


def crop(texture: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    return texture[12 + dy : 12 + dy + H, 12 + dx : 12 + dx + W]


def feed(features: CameraFeatures, frames, device: str = "cam-1", start: float = 0.0):
    return [features.observe(device, start + 2.0 * i, start + 2.0 * i + 0.01, payload(f)) for i, f in enumerate(frames)]


# --- PNG ------------------------------------------------------------------------------------------

@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.booleans(), st.sampled_from([0, 1, 6]), st.integers(0, 2**32 - 1))
def test_png_written_by_the_camera_decodes_to_the_same_pixels(width, height, rgb, level, seed):
    shape = (height, width, 3) if rgb else (height, width)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(pixels, level)), pixels)


def _filtered_png(pixels: np.ndarray, filters: list[int]) -> bytes:
    """A PNG whose rows use the given filter types, filtered forward here (RFC 2083 §6)."""
    height, width = pixels.shape[:2]
    bpp = 1 if pixels.ndim == 2 else 3
    rows = pixels.reshape(height, width * bpp).astype(np.int32)
    out = []
    for y, kind in enumerate(filters):
        x = rows[y]
        up = rows[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(x)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (left + up) // 2
        else:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        out.append(bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0 if bpp == 1 else 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b"")


@SETTINGS
@given(st.integers(1, 24), st.integers(1, 12), st.booleans(), st.data())
def test_decoder_undoes_every_png_row_filter(width, height, rgb, data):
    shape = (height, width, 3) if rgb else (height, width)
    pixels = np.random.default_rng(width * height).integers(0, 256, shape, dtype=np.uint8)
    filters = data.draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    assert np.array_equal(decode_png(_filtered_png(pixels, filters)), pixels)


def test_broken_frames_are_refused_naming_the_camera_and_the_fault():
    good = encode_png(np.full((H, W), 100, np.uint8), level=1)
    idat = good.index(b"IDAT")
    flipped = good[: idat + 10] + bytes([good[idat + 10] ^ 1]) + good[idat + 11 :]
    sixteen_bit = PNG_SIGNATURE + good[8:8 + 16] + b"\x10" + good[8 + 17:]
    cases = {
        b"GIF89a" + good[6:]: "bad signature",
        good[:40]: "truncated",
        flipped: "fails its CRC",
        sixteen_bit: "fails its CRC",  # the header's CRC no longer matches either
        PNG_SIGNATURE + good[good.index(b"IEND") - 4 :]: "no IHDR",
    }
    features = CameraFeatures()
    for data, reason in cases.items():
        with pytest.raises(FrameError, match=reason):
            decode_png(data)
    with pytest.raises(FrameError, match=r"camera cam-7, frame at 4\.000: .*fails its CRC"):
        features.observe("cam-7", 4.0, 4.0, MODEL.decode("analysis_frame", msgspec.msgpack.encode(
            {"width": W, "height": H, "encoding": "png-gray8", "data": flipped})))
    with pytest.raises(FrameError, match="declared 96x72 png-rgb8, PNG holds 96x72 with 1 channel"):
        features.observe("cam-7", 6.0, 6.0, payload(np.full((H, W), 9, np.uint8), encoding="png-rgb8"))


def test_unsupported_png_kinds_are_named():
    ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(FrameError, match="bit depth 16"):
        decode_png(PNG_SIGNATURE + chunk + data[8 + 25 :])


# --- features -----------------------------------------------------------------------------------

@SETTINGS
@given(st.floats(0.2, 1.0), st.floats(0.5, 4.0), st.integers(0, 1000))
def test_texture_survives_darkness_but_not_a_flat_cover(gain, sigma, seed):
    """Honest frames at any lighting keep their texture; a flat surface of any brightness loses it."""
    sensor, features, view = Sensor(seed), CameraFeatures(), crop(scene(seed))
    observations = feed(features, [sensor.frame(view) for _ in range(8)])
    dark = feed(features, [sensor.frame(view, gain, sigma) for _ in range(4)], start=100)
    flat = np.full_like(view, 0.05 + 0.9 * (seed % 10) / 10)
    covered = feed(features, [sensor.frame(flat, gain, sigma) for _ in range(4)], start=200)
    assert observations[-1].texture_ratio == pytest.approx(1.0, abs=0.1)
    assert all(0.6 < o.texture_ratio < 1.3 for o in dark[1:])
    assert all(o.texture_ratio < 0.15 for o in covered[1:])


@SETTINGS
@given(st.floats(0.01, 0.03), st.floats(3.0, 5.0), st.integers(0, 1000))
def test_a_dark_noisy_night_view_that_did_not_move_shows_no_shift(gain, sigma, seed):
    """At night the scene's contrast sinks towards the sensor noise, so the frame correlates with
    the daytime-learned reference at 0.5-0.8 and phase correlation finds peaks in the noise; an
    unmoved camera must still read 0 (a gate camera on the medium site alerted 'moved' at night)."""
    sensor, features, view = Sensor(seed), CameraFeatures(), crop(scene(seed))
    feed(features, [sensor.frame(view, gain, sigma) for _ in range(6)])
    night = feed(features, [sensor.frame(view, gain, sigma) for _ in range(40)], start=100)
    assert min(o.similarity for o in night) < 0.9  # below the plain gate: the noise-aware gate decides
    # None: too dark to tell. Deep in the noise a lone frame may still show a shift; `moved` needs
    # 30 in a row (60 s), so a stray frame raises nothing.
    assert sum(o.shift_px not in (0.0, None) for o in night) <= 1


@SETTINGS
@given(st.integers(-8, 8), st.integers(-8, 8), st.integers(0, 1000))
def test_shift_measures_how_far_the_view_moved(dx, dy, seed):
    sensor, features, texture = Sensor(seed), CameraFeatures(), scene(seed)
    feed(features, [sensor.frame(crop(texture)) for _ in range(6)])
    moved = feed(features, [sensor.frame(crop(texture, dx, dy)) for _ in range(2)], start=100)
    expected = float(np.hypot(dx, dy))
    if expected == 0:
        assert moved[-1].shift_px == 0.0
    else:
        assert moved[-1].shift_px == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize("seed", range(5))
def test_anchored_tells_a_turned_view_from_something_standing_in_it(seed):
    """Something parked over a third of the view leaves the rest of the reference's edges lined
    up; a view shifted by a little or a lot, or another scene altogether, leaves none."""
    sensor, features, texture = Sensor(seed), CameraFeatures(), scene(seed)
    honest = feed(features, [sensor.frame(crop(texture)) for _ in range(8)])
    view = crop(texture).copy()
    view[16:56, 24:72] = crop(scene(seed + 100))[16:56, 24:72]  # a truck-sized patch of other texture
    parked = feed(features, [sensor.frame(view) for _ in range(3)], start=100)
    shifted = feed(features, [sensor.frame(crop(texture, 5, 3)) for _ in range(3)], start=200)
    nudged = feed(features, [sensor.frame(crop(texture, 3, 0)) for _ in range(3)], start=300)
    elsewhere = feed(features, [sensor.frame(crop(scene(seed + 1))) for _ in range(3)], start=400)
    assert [o.anchored for o in honest[5:]] == [None, 1.0, 1.0]  # learned from the first frames, then lined up
    assert all(o.anchored >= 0.5 and o.shift_px < 2 for o in parked)
    assert all(o.anchored <= 0.3 and o.shift_px >= 2 for o in shifted + nudged + elsewhere)


def test_repeated_frames_score_frozen_and_fresh_noise_does_not():
    sensor, features, view = Sensor(3), CameraFeatures(), crop(scene(3))
    recorded = [sensor.frame(view) for _ in range(10)]
    honest = feed(features, recorded)
    replayed = feed(features, recorded[4:8] * 2, start=100)  # a loop of four earlier frames
    frozen = feed(features, [recorded[-1]] * 3, start=200)
    assert max(o.frozen_score for o in honest) < 0.4
    assert [o.frozen_score for o in replayed + frozen] == [1.0] * 11


def test_motion_rises_when_something_crosses_the_view_and_nothing_else_does():
    sensor, features, view = Sensor(5), CameraFeatures(), crop(scene(5))
    still = feed(features, [sensor.frame(view) for _ in range(10)])
    crossing = []
    for step in range(4):
        frame_view = view.copy()
        frame_view[20:50, 10 + 20 * step : 30 + 20 * step] = 0.95  # a forklift-sized blob
        crossing.append(sensor.frame(frame_view))
    moving = feed(features, crossing, start=100)
    assert max(o.motion for o in still[1:]) < 0.01
    assert min(o.motion for o in moving) > 0.05
    assert all(o.shift_px < 1.0 for o in moving)  # the background still anchors the view


def test_a_frame_older_than_the_newest_is_skipped_and_counted():
    sensor, features, view = Sensor(1), CameraFeatures(), crop(scene(1))
    first = features.observe("cam-1", 10.0, 10.0, payload(sensor.frame(view)))
    assert features.observe("cam-1", 8.0, 10.5, payload(sensor.frame(view))) is None
    assert features.observe("cam-2", 8.0, 10.5, payload(sensor.frame(view))) is not None
    assert first.texture is None and features.stale == 1
